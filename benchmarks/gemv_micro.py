"""Small-batch (decode) linear layers on CUDA: cuBLAS against a Triton GEMV, per Llama-3-8B shape.

At batch 1 a linear layer reads its whole weight once, so the rate to beat is the copy
bandwidth. Prints, per shape and batch size, each variant's time and achieved weight GB/s.

    python3 benchmarks/gemv_micro.py
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
import triton
import triton.testing

from sglang.kernels.gemv import gemv

SHAPES = {  # name: (out_features N, in_features K)
    "qkv": (6144, 4096),
    "o": (4096, 4096),
    "gate_up": (28672, 4096),
    "down": (4096, 14336),
    "lm_head": (128256, 4096),
}
CONFIGS = list(itertools.product((16, 32, 64), (256, 512), (4, 8), (3,)))


def main() -> None:
    torch.manual_seed(0)
    for m in (1, 4):
        for name, (n, k) in SHAPES.items():
            w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            gb = w.numel() * 2 / 1e9
            ref = F.linear(x, w)
            t_cublas = triton.testing.do_bench(
                lambda: F.linear(x, w), return_mode="median"  # noqa: B023 - called right here
            )
            best = None
            for bn, bk, warps, stages in CONFIGS:
                try:
                    y = gemv(x, w, block_n=bn, block_k=bk, num_warps=warps, num_stages=stages)
                    err = ((y.float() - ref.float()).norm() / ref.float().norm()).item()
                    if err > 1e-2:
                        continue
                    def call() -> torch.Tensor:
                        return gemv(x, w, block_n=bn, block_k=bk,  # noqa: B023 - called right here
                                    num_warps=warps, num_stages=stages)  # noqa: B023

                    t = triton.testing.do_bench(call, return_mode="median")
                except Exception as e:  # a config that does not compile: skip it
                    print(f"  config {bn, bk, warps, stages} failed: {type(e).__name__}")
                    continue
                if best is None or t < best[0]:
                    best = (t, (bn, bk, warps, stages), err)
            line = f"M={m} {name:8s} cuBLAS {t_cublas * 1e3:7.1f} us ({gb / t_cublas * 1e3:6.0f} GB/s)"
            if best is not None:
                t, cfg, err = best
                line += f" | triton {t * 1e3:7.1f} us ({gb / t * 1e3:6.0f} GB/s) cfg={cfg} err={err:.1e}"
            print(line, flush=True)


if __name__ == "__main__":
    main()

"""How fast the interleaved 4-bit weight can be read in the GPU kernels' access pattern, with no
math: the ceiling a one-row quantized GEMV could reach on this device.

Each program reads [BLOCK_N rows x W words] per step (the interleaved layout puts a row's words
in a row, so a step reads W * 4 bytes of each of BLOCK_N rows 2 KiB apart, as the kernels do
with W = 16), XORs them and stores one word per row. `TILED` reads the same tiles laid out
contiguously instead (one block of BLOCK_N * W words): the layout a kernel could ask for if the
strided rows were the limit. Timed in CUDA graphs over copies past the L2
(`sglang.kernels.graph_timing`). Prints the best launch per (W, layout) and shape.

    python3 benchmarks/quant_read_pattern.py [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch
import triton
import triton.language as tl

from sglang.kernels.graph_timing import copies_past_l2, graph_us

SHAPES = [(28672, 4096), (4096, 14336)]  # Llama-3-8B gate/up and down: (N, K)


@triton.jit
def _read_rows(q_ptr, out_ptr, N, words_per_split, stride_qn,
               BLOCK_N: tl.constexpr, W: tl.constexpr, TILED: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    lane = tl.arange(0, W)
    acc = tl.zeros((BLOCK_N, W), tl.int32)
    w_start = pid_k * words_per_split
    for w0 in range(w_start, w_start + words_per_split, W):
        if TILED:  # tile (pid_n, w0 // W) of [BLOCK_N, W] words stored contiguously
            base = (pid_n * (stride_qn // W) + w0 // W) * (BLOCK_N * W)
            ptr = q_ptr + base + tl.arange(0, BLOCK_N)[:, None] * W + lane[None, :]
        else:
            ptr = q_ptr + rn.to(tl.int64)[:, None] * stride_qn + w0 + lane[None, :]
        acc ^= tl.load(ptr, eviction_policy="evict_first")
    tl.store(out_ptr + pid_k * N + rn, tl.xor_sum(acc, axis=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="also write every timing here")
    args = p.parse_args()
    rows = []
    for n, k in SHAPES:
        words = k // 8  # 4-bit: 8 values per int32
        q = torch.randint(-2**31, 2**31 - 1, (n, words), dtype=torch.int32, device="cuda")
        nbytes = q.numel() * 4
        copies = [q] + [q.clone() for _ in range(copies_past_l2(nbytes) - 1)]
        best: dict[tuple[int, int], dict] = {}
        for w, bn, split, tiled in itertools.product((16, 32, 64), (32, 64, 128, 256), (2, 8),
                                                     (0, 1)):
            if words % (split * w) or bn * w > 16384:
                continue
            out = torch.empty(split, n, dtype=torch.int32, device="cuda")
            launch = _read_rows[(n // bn, split)]
            consts = dict(BLOCK_N=bn, W=w, TILED=tiled, num_warps=4)
            args = (out, n, words // split, words)
            us = graph_us([lambda t=t, launch=launch, args=args, consts=consts:
                           launch(t, *args, **consts) for t in copies])
            row = dict(n=n, k=k, words_per_row_step=w, block_n=bn, split=split, tiled=tiled,
                       us=us, tb_per_s=nbytes / us / 1e6)
            rows.append(row)
            if (w, tiled) not in best or us < best[(w, tiled)]["us"]:
                best[(w, tiled)] = row
        for key in sorted(best):
            print(json.dumps(best[key]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "timings": rows}, f, indent=1)


if __name__ == "__main__":
    main()

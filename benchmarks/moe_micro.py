"""Fused MoE kernel (sglang-kernels) on Mixtral-8x7B expert shapes against its bounds.

- batch 1: the kernel must stream the active experts' weights (top-2 of 8, 3 x 4096 x 14336 bf16
  each): time against bytes / HBM bandwidth (`--bw`, H200: 4.8 TB/s);
- batch 512: every expert is busy; time against FLOPs / peak bf16 matmul rate (`--tflops`).

Also timed: the runtime's CPU-style grouped path (one cuBLAS pair per expert) on the same GPU,
and every result checked against the torch reference. Prints one JSON object per case.

    python3 benchmarks/moe_micro.py [--batches 1 512] [--json out.json]
    python3 benchmarks/moe_micro.py --tiny     # CPU, Triton interpreter, tiny shapes: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from gpu_suite_common import kernel_seconds

MIXTRAL = dict(hidden=4096, inter=14336, experts=8, top_k=2)
TINY = dict(hidden=64, inter=96, experts=4, top_k=2)


def _case(shape: dict[str, int], tokens: int, device: str, dtype: Any, args: Any) -> dict[str, Any]:
    import torch

    from sglang.kernels import fused_moe
    from sglang.runtime.layers.moe import RouterSpec, grouped_experts, route

    h, i, e, k = shape["hidden"], shape["inter"], shape["experts"], shape["top_k"]
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(tokens, h, device=device, dtype=dtype, generator=g)
    w13 = torch.randn(e, 2 * i, h, device=device, dtype=dtype, generator=g) * h**-0.5
    w2 = torch.randn(e, h, i, device=device, dtype=dtype, generator=g) * i**-0.5
    logits = torch.randn(tokens, e, device=device, generator=g)
    weights, ids = route(logits, RouterSpec(top_k=k))
    cuda = device == "cuda"
    fused = kernel_seconds(lambda: fused_moe(x, w13, w2, weights, ids), cuda)
    grouped = kernel_seconds(lambda: grouped_experts(x, w13, w2, weights, ids), cuda)
    got = fused_moe(x, w13, w2, weights, ids).float()
    want = grouped_experts(x.float(), w13.float(), w2.float(), weights, ids)
    err = float((got - want).abs().max() / want.abs().max())
    active = int(torch.unique(ids).numel())
    weight_bytes = active * 3 * h * i * x.element_size()
    flops = 2 * tokens * k * 3 * h * i
    bw_bound = weight_bytes / args.bw
    mm_bound = flops / (args.tflops * 1e12)
    bound = max(bw_bound, mm_bound)
    return {
        "tokens": tokens, "device": device, "dtype": str(dtype).removeprefix("torch."),
        "active_experts": active, "fused_us": fused * 1e6, "grouped_torch_us": grouped * 1e6,
        "bandwidth_bound_us": bw_bound * 1e6, "matmul_bound_us": mm_bound * 1e6,
        "fraction_of_bound": bound / fused, "achieved_TBps": weight_bytes / fused / 1e12,
        "achieved_TFLOPs": flops / fused / 1e12, "max_rel_err": err,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test in the interpreter")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 512])
    parser.add_argument("--bw", type=float, default=4.8e12, help="HBM bytes/s (H200: 4.8e12)")
    parser.add_argument("--tflops", type=float, default=989.0, help="dense bf16 TFLOP/s")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.tiny:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    import torch

    if args.tiny:
        device, dtype, shape, batches = "cpu", torch.float32, TINY, [1, 33]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("needs a CUDA GPU (or --tiny for the CPU smoke test)")
        device, dtype, shape, batches = "cuda", torch.bfloat16, MIXTRAL, args.batches
    results = []
    for tokens in batches:
        row = _case(shape, tokens, device, dtype, args)
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": shape, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

"""4/8-bit `quant_gemm` (sglang-kernels) on Llama-3-8B's linear layers against bf16 and its bound.

For each layer (fused qkv, o, fused gate/up, down) and row count M (default 1, 16, 256):
- the bf16 cuBLAS matmul `x @ w` on the same shape, timed in the same run;
- the bandwidth bound: the bytes the kernel must read (packed weight, scales, zeros, x) and
  write (y) over the copy bandwidth measured in the same run (a device-to-device copy of 1 GiB),
  and over the nominal HBM bandwidth (`--bw`, H200: 4.8 TB/s);
- every output checked against `quant_gemm_ref`.
Each kernel is timed as a decode step runs it (`sglang.kernels.graph_timing`): calls replayed in
a CUDA graph, each on its own copy of the weight (copies past the L2), so no host launch work is
counted and each call reads its weight from HBM. The issue's batch-1
targets: >= 2.5x faster than bf16 and >= 70% of the 4-bit roofline. Prints one JSON object per
case, then the per-M totals over one decoder layer's four GEMMs.

    python3 benchmarks/quant_gemm_micro.py [--rows 1 16 256] [--bits 4] [--json out.json]
    python3 benchmarks/quant_gemm_micro.py --layout interleaved   # the runtime's GPU path
    python3 benchmarks/quant_gemm_micro.py --tiny   # CPU, Triton interpreter, tiny shapes
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from typing import Any

from gpu_suite_common import kernel_seconds

LLAMA3_8B = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096),
             "down": (4096, 14336)}  # name: (N, K)
TINY = {"qkv": (48, 64), "down": (40, 96)}
TINY_INTERLEAVED = {"qkv": (48, 128), "down": (40, 256)}  # K in whole 128-value blocks


def copy_bandwidth(cuda: bool) -> float:
    """Bytes per second of a device-to-device copy (read + write), the practical HBM ceiling."""
    import torch

    if not cuda:
        return float("nan")
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = kernel_seconds(lambda: dst.copy_(src), cuda)
    return 2 * src.numel() / seconds


def _seconds(call: Any, tensors: tuple[Any, ...], cuda: bool) -> float:
    """Seconds per call: on CUDA replayed in a CUDA graph, each call on its own copy of
    `tensors` (copies past the L2), as a decode step runs its layers; else one timed call."""
    if not cuda:
        return kernel_seconds(lambda: call(tensors), cuda)
    from sglang.kernels.graph_timing import copies_past_l2, graph_us

    size = sum(t.numel() * t.element_size() for t in tensors)
    copies = [tensors] + [tuple(t.clone() for t in tensors)
                          for _ in range(copies_past_l2(size) - 1)]
    return graph_us([lambda c=c: call(c) for c in copies]) / 1e6


def _case(name: str, n: int, k: int, m: int, args: Any, device: str, dtype: Any,
          copy_bw: float) -> dict[str, Any]:
    import torch

    from sglang.kernels import quant_gemm, quant_gemm_interleaved
    from sglang.kernels.quant_layout import interleave_quant_weight
    from sglang.kernels.reference import pack_quant_weight, quant_gemm_ref

    cuda = device == "cuda"
    bits, group = args.bits, min(args.group_size, k)
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randint(0, 1 << bits, (k, n), device=device, generator=g)
    qweight = pack_quant_weight(q, bits)
    scales = (torch.rand(k // group, n, device=device, generator=g) * 0.02 / (1 << bits)).to(dtype)
    zeros = torch.full((k // group, n), float(1 << (bits - 1)), device=device, dtype=dtype)
    x = torch.randn(m, k, device=device, generator=g).to(dtype)
    w_dense = torch.randn(k, n, device=device, generator=g).to(dtype) * k**-0.5

    want = quant_gemm_ref(x, qweight, scales, zeros, bits, group)
    if args.layout == "interleaved":
        weight = (interleave_quant_weight(qweight, bits), scales, zeros)
        # The zeros here are whole numbers, as AWQ's and GPTQ's: timed as those layers run.
        kernel = functools.partial(quant_gemm_interleaved, integer_zeros=True)
    else:
        weight, kernel = (qweight, scales, zeros), quant_gemm
    got = kernel(x, *weight, bits, group)
    err = ((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-9))
    quant_s = _seconds(lambda w: kernel(x, *w, bits, group), weight, cuda)
    dense_s = _seconds(lambda w: x @ w[0], (w_dense,), cuda)
    elt = x.element_size()
    moved = (qweight.numel() * 4 + 2 * scales.numel() * scales.element_size()
             + x.numel() * elt + m * n * elt)
    return {
        "layer": name, "layout": args.layout, "n": n, "k": k, "m": m, "bits": bits, "group_size": group,
        "quant_us": quant_s * 1e6, "bf16_us": dense_s * 1e6,
        "speedup_vs_bf16": dense_s / quant_s,
        "bound_copy_us": moved / copy_bw * 1e6,
        "bound_nominal_us": moved / args.bw * 1e6,
        "of_copy_bound": moved / copy_bw / quant_s,
        "of_nominal_bound": moved / args.bw / quant_s,
        "tflops": 2 * m * n * k / quant_s / 1e12,
        "max_rel_err": float(err),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--bits", type=int, default=4, choices=[4, 8])
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--bw", type=float, default=4.8e12, help="nominal HBM bytes/s")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test in the interpreter")
    parser.add_argument("--layout", choices=["canonical", "interleaved"], default="canonical",
                        help="quant_gemm on the canonical layout, or quant_gemm_interleaved")
    args = parser.parse_args()
    if args.tiny:
        # Before anything imports triton: the interpreter is chosen when kernels are defined.
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    if args.tiny:
        device, dtype, shapes, args.group_size = "cpu", torch.float32, TINY, 32
        if args.layout == "interleaved":
            shapes = TINY_INTERLEAVED
        args.rows = sorted({min(r, 20) for r in args.rows})  # 20: the tiled path, still small
    else:
        if not torch.cuda.is_available():
            raise SystemExit("needs a CUDA GPU (or --tiny for the CPU smoke test)")
        device, dtype, shapes = "cuda", torch.bfloat16, LLAMA3_8B
    copy_bw = copy_bandwidth(device == "cuda")
    print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                      "copy_gbps": copy_bw / 1e9}), flush=True)
    results = []
    for m in args.rows:
        for name, (n, k) in shapes.items():
            results.append(row := _case(name, n, k, m, args, device, dtype, copy_bw))
            print(json.dumps(row), flush=True)
    totals = []
    for m in args.rows:
        rows = [r for r in results if r["m"] == m]
        quant = sum(r["quant_us"] for r in rows)
        totals.append({"m": m, "layer_quant_us": quant,
                       "layer_bf16_us": sum(r["bf16_us"] for r in rows),
                       "speedup_vs_bf16": sum(r["bf16_us"] for r in rows) / quant,
                       "of_copy_bound": sum(r["bound_copy_us"] for r in rows) / quant})
        print(json.dumps(totals[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"copy_gbps": copy_bw / 1e9, "cases": results, "totals": totals}, f,
                      indent=1)


if __name__ == "__main__":
    main()

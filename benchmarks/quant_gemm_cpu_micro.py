"""`quant_gemm_cpu` (sglang-kernels' C kernel) at SmolLM2-135M's linear shapes on the CPU.

For each (K, N) and row count M, microseconds per call (the fastest of repeated calls) of:
- ``b4_fused`` / ``b8_fused``: the fused fp32 dequantize-in-the-dot kernel (bits 4 / 8, group
  32; in blocks of 8 rows, each streaming the weight), whatever the default thresholds;
- ``b4_mm`` / ``b8_mm``: the chunked dequantize + torch.mm path, at every M;
- ``b4_int8`` / ``b8_int8``: int8 activations with integer dot products (AVX-512 VNNI or AVX2,
  where supported: `int8_isa`);
- ``b4`` / ``b8``: what `quant_gemm_cpu` runs by default (`choose_path`);
- ``fp32``: F.linear on the dense fp32 weight [N, K];
- ``ref``: `quant_gemm_ref` (dequantizes the whole weight every call; bits 4).
Every kernel output is checked against the fp64 product of the dequantized weight (the int8
path within its activation rounding: 3% relative L2).

    python3 benchmarks/quant_gemm_cpu_micro.py [--rows 1 4 8 16 32 64] [--threads N] [--json f]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

# (K, N): o_proj, k/v, fused q/k/v, fused gate/up, down, the LM head
SMOLLM2_135M = [(576, 576), (576, 192), (576, 960), (576, 3072), (1536, 576), (576, 49152)]


def _time_us(fn: Callable[[], Any], budget_s: float) -> float:
    """Microseconds per call: the fastest of the calls filling `budget_s` (3 to 200 calls). The
    fastest rather than the median: on a shared machine the median measures the neighbours."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < 200 and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e6


def _quant_cases(x: Any, k: int, n: int, bits: int, budget_s: float, g: Any) -> dict[str, Any]:
    import torch

    import sglang.kernels.cpu.quant_gemm as cpu_gemm
    from sglang.kernels.quant_layout import dequantize_weight, pack_quant_weight
    from sglang.kernels.reference import quant_gemm_ref

    group = 32
    q = torch.randint(0, 1 << bits, (k, n), generator=g)
    qweight = pack_quant_weight(q, bits)
    scales = (torch.rand(k // group, n, generator=g) + 0.5) * (2.0 / (1 << bits)) * k**-0.5
    zeros = torch.randint(0, 1 << bits, (k // group, n), generator=g).float()
    want = x.double() @ dequantize_weight(qweight, scales, zeros, bits, group).double()

    def run(path: str) -> torch.Tensor:
        return cpu_gemm.quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path=path)

    row: dict[str, Any] = {}
    paths = ["auto", "mm", "fused"] + (["int8"] if cpu_gemm.int8_supported() else [])
    for path in paths:
        name = f"b{bits}" if path == "auto" else f"b{bits}_{path}"
        diff = run(path).double() - want
        int8 = cpu_gemm.choose_path(x.shape[0]) == "int8" if path == "auto" else path == "int8"
        bad = (diff.norm() > 3e-2 * want.norm() if int8
               else diff.abs().max() > 1e-3 * max(1.0, want.abs().max().item()))
        if bad:
            raise AssertionError(f"{name} K={k} N={n} M={x.shape[0]}: error {diff.abs().max()}")
        row[name] = _time_us(lambda path=path: run(path), budget_s)
    if bits == 4:
        row["ref"] = _time_us(lambda: quant_gemm_ref(x, qweight, scales, zeros, bits, group),
                              budget_s)
    return row


def _case(k: int, n: int, m: int, budget_s: float) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g)
    row: dict[str, Any] = {"k": k, "n": n, "m": m}
    dense = torch.randn(n, k, generator=g) * k**-0.5
    row["fp32"] = _time_us(lambda: F.linear(x, dense), budget_s)
    for bits in (4, 8):
        row.update(_quant_cases(x, k, n, bits, budget_s, g))
    row["b4_vs_fp32"] = row["fp32"] / row["b4"]
    row["b8_vs_fp32"] = row["fp32"] / row["b8"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of calls per timing")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    import torch

    from sglang.kernels.cpu.loader import load_library

    if args.threads:
        torch.set_num_threads(args.threads)
    if load_library() is None:
        raise SystemExit("the C kernel did not build; nothing to measure")
    import sglang.kernels.cpu.quant_gemm as cpu_gemm

    print(json.dumps({"threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
                      "torch": torch.__version__, "int8_isa": cpu_gemm.int8_isa()}), flush=True)
    rows = []
    for k, n in SMOLLM2_135M:
        for m in args.rows:
            rows.append(row := _case(k, n, m, args.budget))
            print(json.dumps({key: round(v, 2) if isinstance(v, float) else v
                              for key, v in row.items()}), flush=True)
    print(json.dumps({"loadavg_end": os.getloadavg()}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

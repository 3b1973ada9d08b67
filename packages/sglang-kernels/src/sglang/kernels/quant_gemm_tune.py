"""Measure `quant_gemm`'s launch shapes on this GPU and write the table it reads
(`--layout interleaved`: those of `quant_gemm_interleaved`, the runtime's GPU path).

For each weight shape (N, K), bit width, group size and row count M, every candidate launch is
timed as a decode step runs it (`graph_timing`: calls captured in a CUDA graph, each on its own
copy of the weight, copies past the L2) and the fastest is stored with its time and its
achieved weight bandwidth. Small M (<= 16) sweeps narrow column blocks and split-K (the
streaming regime); larger M sweeps tiled GEMM shapes.

    python -m sglang.kernels.quant_gemm_tune --out DIR            # Candidates are kept to ~120-140 per row count, so that the default sweep (4 shapes x 7 row
# counts) should fit one 10-minute run on an H200 (not yet timed: split it with --shape/--rows).
# Llama-3-8B's layers, 4-bit
    python -m sglang.kernels.quant_gemm_tune --shape 4096x4096 --bits 4 8 --out DIR
    # then: SGLANG_KERNEL_TUNING_DIR=DIR to use it, or copy DIR/*.json into sglang/kernels/tuned/
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import triton

from sglang.kernels import quant_interleaved, tuning
from sglang.kernels.graph_timing import copies_past_l2, graph_us
from sglang.kernels.quant_interleaved import IlConfig, quant_gemm_interleaved
from sglang.kernels.quant_layout import interleave_quant_weight, pack_quant_weight
from sglang.kernels.quant_matmul import (
    FMA_MAX_M,
    SMALL_M,
    TUNING_KERNEL,
    QuantGemmConfig,
    quant_gemm,
    tuning_key,
)

# Candidates are kept to ~100-190 per row count, so that the default sweep (4 shapes x 7 row
# counts) should fit one 10-minute run on an H200 (not yet timed: split it with --shape/--rows).
# Llama-3-8B's linear layers as (N, K): fused qkv, o, fused gate/up, down.
LLAMA3_8B = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
ROWS = [1, 4, 16, 64, 256, 1024, 4096]


def small_m_launches(group_size: int, m: int = SMALL_M) -> Iterator[QuantGemmConfig]:
    """The dot kernel's streaming shapes, and for <= FMA_MAX_M rows the FMA kernel's."""
    kernels = [(16, True)]
    if m <= FMA_MAX_M:
        kernels.append((triton.next_power_of_2(m), False))
    for (bm, use_dot), bn, bk, split, stages in itertools.product(
        kernels, (16, 32, 64, 128), (64, 128, 256), (1, 2, 4, 8), (3, 4)
    ):
        # The FMA kernel keeps bm x bn x bk fp32 products: <= 128 per thread of 4 warps.
        if (bk <= group_size or bk % group_size == 0) and (use_dot or bm * bn * bk <= 1 << 14):
            yield QuantGemmConfig(bm, bn, bk, split, 4, stages, use_dot)


def tiled_launches(m: int) -> Iterator[QuantGemmConfig]:
    for bm, bn, bk, split, stages in itertools.product(
        (16, 32, 64, 128), (64, 128, 256), (64, 128), (1, 2, 4), (3, 4)
    ):
        if bm <= max(16, 2 * m):
            # Warps follow the tile size: a 128x128 fp32 accumulator needs 8 to avoid spills.
            yield QuantGemmConfig(bm, bn, bk, split, 8 if bm * bn >= 128 * 128 else 4, stages)


def interleaved_launches(m: int) -> Iterator[IlConfig]:
    """One row: the FMA kernel's rows per program, warps, prefetch and split-K; up to
    SMALL_M rows: the dot kernel's streaming shapes; more: its tiles, and dense weight +
    cuBLAS. Up to SMALL_M rows also the tensor-core kernel's (`mma`; where it does not apply,
    its launches run the dot kernel)."""
    if m <= SMALL_M:
        for bn, warps, stages, split in itertools.product(
            (32, 64, 128, 256), (1, 2, 4, 8), (2, 3, 4), (1, 2, 4, 8, 16)
        ):
            # Whole warp groups (wgmma; 256 rows on 4 spill), or one or two warps of
            # 32 or 64 rows each (mma.sync: no warp-group fences, more programs per SM).
            if 16 * warps <= bn <= 32 * warps if warps >= 4 else bn in (32 * warps, 64 * warps):
                yield IlConfig(16, bn, split, num_warps=warps, num_stages=stages, mma=True)
    if m == 1:
        for bn, warps, prefetch, split in itertools.product(
            (32, 64, 128, 256), (4, 8), (False, True), (1, 2, 4, 8, 16, 32)
        ):
            yield IlConfig(1, bn, split, prefetch, warps, 2)
        return
    if m <= SMALL_M:
        shapes = itertools.product((16,), (32, 64, 128), (1, 2, 4, 8), (4, 8), (2, 3))
    else:
        shapes = itertools.product((16, 64, 128), (64, 128), (1, 4), (4, 8), (3,))
    for bm, bn, split, warps, stages in shapes:
        if bm <= max(16, 2 * m):
            yield IlConfig(bm, bn, split, num_warps=warps, num_stages=stages)
    if m > SMALL_M:
        yield IlConfig(dequant=True)


@dataclass(frozen=True)
class Layout:
    """What the sweep times for one weight layout."""

    kernel: str  # the tuning table's kernel name
    launches: Callable[[int, int], Iterator[Any]]  # (rows, group size) -> configs
    run: Callable[..., torch.Tensor]  # (x, qweight, scales, zeros, bits, group, config=)
    prepare: Callable[[torch.Tensor, int], torch.Tensor]  # canonical qweight, bits -> its own


LAYOUTS = {
    "canonical": Layout(TUNING_KERNEL, lambda m, g: _launches(m, g), quant_gemm,
                        lambda q, bits: q),
    # Timed as AWQ/GPTQ layers run it: whole zero points (`random_weight`'s are).
    "interleaved": Layout(quant_interleaved.TUNING_KERNEL,
                          lambda m, g: interleaved_launches(m),
                          functools.partial(quant_gemm_interleaved, integer_zeros=True),
                          interleave_quant_weight),
}


def _time_us(calls: list[Callable[[], Any]]) -> float:
    """Microseconds per call, the calls replayed in a CUDA graph (`graph_timing`)."""
    return graph_us(calls)


def tune_rows(m: int, weights: list[tuple[torch.Tensor, ...]], bits: int, group_size: int,
              layout: Layout = LAYOUTS["canonical"]) -> dict:
    """The fastest launch for `m` rows; each timed call reads the next copy of the weight in
    `weights` (copies past the L2, as a decode step's layers are)."""
    qweight, scales, zeros = weights[0]
    k = scales.shape[0] * group_size
    x = torch.randn(m, k, device=qweight.device, dtype=scales.dtype)
    best: tuple[float, Any] = (math.inf, None)
    for config in layout.launches(m, group_size):
        calls = [lambda c=config, w=w: layout.run(x, *w, bits, group_size, config=c)
                 for w in weights]
        try:
            us = _time_us(calls)
        except Exception:  # noqa: BLE001 - a shape past shared memory or registers fails; skip
            continue
        best = min(best, (us, config), key=lambda t: t[0])
    us, config = best
    if config is None:
        return {}
    weight_bytes = qweight.numel() * 4 + scales.numel() * scales.element_size() * 2
    return {**asdict(config), "us": us, "weight_gbps": weight_bytes / us / 1e3}


def random_weight(
    n: int, k: int, bits: int, group_size: int, dtype: torch.dtype, device: str = "cuda"
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randint(0, 1 << bits, (k, n), device=device, generator=g)
    groups = k // group_size
    scales = torch.rand(groups, n, device=device, generator=g).to(dtype) * 0.01
    zeros = torch.full((groups, n), float(1 << (bits - 1)), device=device, dtype=dtype)
    return pack_quant_weight(q, bits), scales, zeros


def _launches(m: int, group_size: int) -> Iterator[QuantGemmConfig]:
    return small_m_launches(group_size, m) if m <= SMALL_M else tiled_launches(m)


def _compile(jobs: list[tuple[int, int, int, int, int, str, str, Any]]) -> None:
    # Fills Triton's on-disk cache so the timing process only loads binaries.
    for n, k, m, bits, group_size, dtype, layout_name, config in jobs:
        layout = LAYOUTS[layout_name]
        qweight, scales, zeros = random_weight(n, k, bits, group_size, getattr(torch, dtype))
        x = torch.randn(m, k, device="cuda", dtype=scales.dtype)
        try:
            layout.run(x, layout.prepare(qweight, bits), scales, zeros, bits, group_size,
                       config=config)
        except Exception:  # noqa: BLE001 - skipped again when timed
            pass
    torch.cuda.synchronize()


def precompile(shapes: list[tuple[int, int]], bits_list: list[int], group_sizes: list[int],
               rows: list[int], dtype: torch.dtype, procs: int, layout_name: str) -> None:
    """Compile every candidate launch in `procs` processes first (a launch compiles per K,
    row count and config; a narrow N gives the same binary)."""
    import multiprocessing as mp

    name = str(dtype).removeprefix("torch.")
    launches = LAYOUTS[layout_name].launches
    keys = {(k, m, b, g, c) for _, k in shapes for m in rows for b in bits_list
            for g in group_sizes for c in launches(m, g)}
    jobs = [(256, k, m, b, g, name, layout_name, c) for k, m, b, g, c in sorted(keys, key=str)]
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_compile, [jobs[i::procs] for i in range(procs)])


def sweep(
    shapes: list[tuple[int, int]], bits_list: list[int], group_sizes: list[int],
    rows: list[int], dtype: torch.dtype, out: Path, device: str = "cuda", procs: int = 1,
    layout_name: str = "canonical",
) -> Path:
    """Tune every (shape, bits, group size) over `rows`; merge into the device's table in
    `out`, written after each shape so a sweep cut short keeps what it measured."""
    layout = LAYOUTS[layout_name]
    if procs > 1:
        precompile(shapes, bits_list, group_sizes, rows, dtype, procs, layout_name)
    out.mkdir(parents=True, exist_ok=True)
    path = out / tuning.table_name(layout.kernel, tuning.device_key())
    table = json.loads(path.read_text()) if path.is_file() else {}
    for (n, k), bits, group_size in itertools.product(shapes, bits_list, group_sizes):
        qweight, scales, zeros = random_weight(n, k, bits, group_size, dtype, device)
        weight = (layout.prepare(qweight, bits), scales, zeros)
        size = sum(t.numel() * t.element_size() for t in weight)
        copies = copies_past_l2(size) if torch.device(device).type == "cuda" else 1
        weights = [weight] + [tuple(t.clone() for t in weight) for _ in range(copies - 1)]
        buckets: dict[str, dict] = {}
        for m in rows:
            start = time.perf_counter()
            entry = tune_rows(m, weights, bits, group_size, layout)
            if entry:  # no candidate ran: leave the bucket to the heuristic
                buckets[str(m)] = entry
            print(json.dumps({"n": n, "k": k, "bits": bits, "group_size": group_size, "m": m,
                              **entry, "tune_s": round(time.perf_counter() - start, 1)}),
                  flush=True)
        # Merged: a sweep of some row counts keeps the buckets measured before for others.
        table.setdefault(tuning_key(n, k, bits, group_size), {}).update(buckets)
        path.write_text(json.dumps(table, indent=1, sort_keys=True))
    return path


def _shape(text: str) -> tuple[int, int]:
    n, k = text.lower().split("x")
    return int(n), int(k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=_shape, nargs="+", default=LLAMA3_8B, help="NxK ...")
    p.add_argument("--bits", type=int, nargs="+", default=[4])
    p.add_argument("--group-size", type=int, nargs="+", default=[128])
    p.add_argument("--rows", type=int, nargs="+", default=ROWS)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--out", required=True, help="folder for the table (merged into one there)")
    p.add_argument("--procs", type=int, default=12, help="processes compiling the candidates")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="canonical")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("quant_gemm_tune measures a CUDA GPU; none is visible")
    path = sweep(args.shape, args.bits, args.group_size, args.rows, getattr(torch, args.dtype),
                 Path(args.out), procs=args.procs, layout_name=args.layout)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

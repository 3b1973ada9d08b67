"""Measure the GEMV's launch shapes against cuBLAS on this GPU and write the table it reads.

For each weight shape (N, K) and row count M (1..8), every candidate `GemvConfig` and cuBLAS
(`F.linear`) are timed as a decode step runs them (`graph_timing`): calls captured back to back
in a CUDA graph, each reading its own copy of the weight (copies past the L2, so weights stream
from HBM), with programmatic dependent launch where the step uses it. `do_bench`, used before,
put the host's launch work into the time of a 10 us kernel and picked shapes by it. The bucket
stores the fastest GEMV launch with its time, cuBLAS's time, and `"gemv": null` when cuBLAS
wins: the runtime then keeps cuBLAS for that shape and row count (`skinny_gemm.tuned_plan`).

    python -m sglang.kernels.gemv_tune --out DIR                 # Llama-3-8B's layers
    python -m sglang.kernels.gemv_tune --config path/config.json --rows 1 2 --out DIR
    # then: SGLANG_KERNEL_TUNING_DIR=DIR to use it, or copy DIR/*.json into sglang/kernels/tuned/
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from sglang.kernels import tuning
from sglang.kernels.graph_timing import copies_past_l2, graph_us
from sglang.kernels.skinny_gemm import MAX_ROWS, TUNING_KERNEL, GemvConfig, gemv, tuning_key

# Llama-3-8B as (N, K): fused qkv, o, fused gate/up, down, LM head.
LLAMA3_8B = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)]
ROWS = [1, 2, 4, 8]


def shapes_of(config: dict) -> list[tuple[int, int]]:
    """A Llama-shaped config's linear layers as (N, K)."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads") or heads)
    dim = int(config.get("head_dim") or hidden // heads)
    inter, vocab = int(config["intermediate_size"]), int(config["vocab_size"])
    return [((heads + 2 * kv) * dim, hidden), (hidden, heads * dim), (2 * inter, hidden),
            (hidden, inter), (vocab, hidden)]


def candidates(rows: int) -> list[GemvConfig]:
    out = []
    for bn, bk, warps, stages in itertools.product(
        (1, 2, 4, 8, 16), (256, 512, 1024, 2048, 4096), (2, 4, 8), (1, 2, 3)
    ):
        # fp32 products held per thread: past 128 they spill.
        if triton_rows(rows) * bn * bk / (32 * warps) <= 128:
            out.append(GemvConfig(bn, bk, warps, stages))
    return out


def triton_rows(rows: int) -> int:
    return 1 << max(rows - 1, 0).bit_length()


def _inputs(n: int, k: int, rows: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(rows, k, device="cuda", dtype=dtype, generator=g)
    w = torch.randn(n, k, device="cuda", dtype=dtype, generator=g) * 0.02
    return x, w


def _weight_copies(w: torch.Tensor) -> list[torch.Tensor]:
    return [w] + [w.clone() for _ in range(copies_past_l2(w.numel() * w.element_size()) - 1)]


def _compile(jobs: list[tuple[int, int, int, str, GemvConfig]]) -> None:
    # Fills Triton's on-disk cache so the timing process only loads binaries.
    for n, k, rows, dtype, cfg in jobs:
        try:
            gemv(*_inputs(n, k, rows, getattr(torch, dtype)), config=cfg)
        except Exception:  # noqa: BLE001 - a launch that does not compile is skipped later
            pass
    torch.cuda.synchronize()


def tune(n: int, k: int, rows: int, dtype: torch.dtype) -> dict:
    x, w = _inputs(n, k, rows, dtype)
    weights = _weight_copies(w)
    want = F.linear(x, w).float()
    cublas = graph_us([lambda w=w: F.linear(x, w) for w in weights])
    best: tuple[float, GemvConfig | None] = (math.inf, None)
    for cfg in candidates(rows):
        try:
            got = gemv(x, w, config=cfg).float()
            if not float((got - want).norm() / want.norm()) < 1e-2:
                continue
            us = graph_us([lambda c=cfg, w=w: gemv(x, w, config=c) for w in weights])
        except Exception:  # noqa: BLE001 - registers or shared memory exceeded: skip
            continue
        best = min(best, (us, cfg), key=lambda t: t[0])
    us, cfg = best
    wins = cfg is not None and us < cublas
    gbps = n * k * w.element_size() / 1e3
    return {"gemv": asdict(cfg) if wins and cfg else None, "gemv_us": us, "cublas_us": cublas,
            "best_gemv": asdict(cfg) if cfg else None,
            "gemv_weight_gbps": gbps / us if cfg else None, "cublas_weight_gbps": gbps / cublas}


def sweep(shapes: list[tuple[int, int]], rows: list[int], dtype: torch.dtype, out: Path,
          procs: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / tuning.table_name(TUNING_KERNEL, tuning.device_key())
    table = json.loads(path.read_text()) if path.is_file() else {}
    if procs > 1:
        name = str(dtype).removeprefix("torch.")
        # Launches compile per (K, rows, config); a narrow N compiles the same binary.
        keys = {(k, m, c) for _, k in shapes for m in rows for c in candidates(m)}
        jobs = [(256, k, m, name, c) for k, m, c in sorted(keys, key=str)]
        with mp.get_context("spawn").Pool(procs) as pool:
            pool.map(_compile, [jobs[i::procs] for i in range(procs)])
    for n, k in shapes:
        buckets = table.setdefault(tuning_key(n, k, dtype), {})
        for m in rows:
            buckets[str(m)] = entry = tune(n, k, m, dtype)
            print(json.dumps({"n": n, "k": k, "m": m, **entry}), flush=True)
        path.write_text(json.dumps(table, indent=1, sort_keys=True))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="a Llama-shaped config.json (default 8B)")
    p.add_argument("--rows", type=int, nargs="+", default=ROWS)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--procs", type=int, default=12, help="processes compiling the candidates")
    p.add_argument("--out", required=True, help="folder for the table (merged into one there)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gemv_tune measures a CUDA GPU; none is visible")
    if any(not 1 <= r <= MAX_ROWS for r in args.rows):
        raise SystemExit(f"--rows must be in 1..{MAX_ROWS}")
    shapes = shapes_of(json.loads(Path(args.config).read_text())) if args.config else LLAMA3_8B
    path = sweep(shapes, args.rows, getattr(torch, args.dtype), Path(args.out), args.procs)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

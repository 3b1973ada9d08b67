"""Measure the greedy argmax kernel's launches against torch.argmax on this GPU and write the
table `greedy_argmax` reads.

Each (vocabulary, row count) times torch's argmax and every candidate `ArgmaxLaunch` as a decode
step runs them (`graph_timing`: calls back to back in a CUDA graph). The logits stay the same
buffer, as in a step, where the LM head has just written them into the L2. A bucket stores the
fastest launch with its time and torch's, and `"launch": null` where torch wins.

    python -m sglang.kernels.greedy_tune --out DIR
    # then: SGLANG_KERNEL_TUNING_DIR=DIR to use it, or copy DIR/*.json into sglang/kernels/tuned/
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict
from pathlib import Path

import torch

from sglang.kernels import tuning
from sglang.kernels.graph_timing import graph_us
from sglang.kernels.greedy import TUNING_KERNEL, ArgmaxLaunch, argmax, tuning_key

# Llama-3, Llama-2 / Mistral, SmolLM2, Qwen2 vocabularies.
VOCABS = [128256, 32000, 49152, 151936]
ROWS = [1, 4, 16, 64, 256]
CALLS = 20


def candidates(sms: int) -> list[ArgmaxLaunch]:
    return [ArgmaxLaunch(block, warps, programs) for block, warps, programs in
            itertools.product((1024, 2048, 4096), (4, 8), (sms, 2 * sms, 4 * sms))]


def tune(n: int, rows: int, dtype: torch.dtype) -> dict:
    x = torch.randn(rows, n, device="cuda").to(dtype)
    torch_us = graph_us([lambda: x.argmax(dim=-1)] * CALLS)
    want = x.argmax(dim=-1)
    best: tuple[float, ArgmaxLaunch | None] = (float("inf"), None)
    for cfg in candidates(torch.cuda.get_device_properties(0).multi_processor_count):
        if not torch.equal(argmax(x, cfg), want):
            raise AssertionError(f"argmax {cfg} disagrees with torch at {rows} x {n}")
        us = graph_us([lambda c=cfg: argmax(x, c)] * CALLS)
        best = min(best, (us, cfg), key=lambda t: t[0])
    us, cfg = best
    wins = cfg is not None and us < torch_us
    return {"launch": asdict(cfg) if wins and cfg else None, "kernel_us": us,
            "torch_us": torch_us, "best": asdict(cfg) if cfg else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, nargs="+", default=VOCABS)
    p.add_argument("--rows", type=int, nargs="+", default=ROWS)
    p.add_argument("--dtype", default="float32", help="the logits' dtype (the runtime's: fp32)")
    p.add_argument("--out", required=True, help="folder for the table (merged into one there)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("greedy_tune measures a CUDA GPU; none is visible")
    dtype = getattr(torch, args.dtype)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / tuning.table_name(TUNING_KERNEL, tuning.device_key())
    table = json.loads(path.read_text()) if path.is_file() else {}
    for n in args.vocab:
        buckets = table.setdefault(tuning_key(n, dtype), {})
        for rows in args.rows:
            buckets[str(rows)] = entry = tune(n, rows, dtype)
            print(json.dumps({"n": n, "rows": rows, **entry}), flush=True)
        path.write_text(json.dumps(table, indent=1, sort_keys=True))
    print(path)


if __name__ == "__main__":
    main()

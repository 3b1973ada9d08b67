"""Measure the fused MoE kernel's launch shapes on this GPU and write the table it reads.

For each token count, each candidate `block_m` (the padding unit; bounded by the pairs an
expert gets on average) and each candidate launch (block_n, block_k, warps, stages), the gate/up
GEMM and the down GEMM are timed on their own; a `block_m` scores the sum of its two best, and
the winner's pair is stored. Routing is uniform at random, as a trained router's load roughly is.

    python -m sglang.kernels.moe_tune --experts 8 --hidden 4096 --inter 14336 --out DIR
    # then: SGLANG_KERNEL_TUNING_DIR=DIR to use it, or copy DIR/*.json into sglang/kernels/tuned/
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sglang.kernels import tuning
from sglang.kernels.moe import (
    TUNING_KERNEL,
    MoeConfig,
    _grouped_gemm,
    align_by_expert,
    tuning_key,
)

TOKENS = [1, 4, 16, 64, 256, 1024, 4096]
BLOCK_M = [16, 32, 64, 128]
# (block_n, block_k, num_warps, num_stages): narrow-and-deep shapes stream weights at small M,
# wide ones reuse them at large M.
LAUNCHES = [
    (16, 256, 4, 4), (32, 128, 4, 4), (32, 256, 4, 3), (64, 64, 4, 4), (64, 128, 4, 3),
    (64, 128, 8, 4), (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 3), (256, 64, 8, 3),
]


def block_m_candidates(pairs_per_expert: float) -> list[int]:
    fit = [m for m in BLOCK_M if pairs_per_expert / 8 <= m <= max(16.0, 2 * pairs_per_expert)]
    return fit or [BLOCK_M[0]]


def _time_ms(fn) -> float:  # noqa: ANN001
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=5, rep=30, return_mode="median"))


def _best(run, block_m: int) -> tuple[float, MoeConfig | None]:  # noqa: ANN001
    best: tuple[float, MoeConfig | None] = (math.inf, None)
    for bn, bk, warps, stages in LAUNCHES:
        config = MoeConfig(block_m, bn, bk, warps, stages)
        try:
            ms = _time_ms(lambda c=config: run(c))
        except Exception:  # noqa: BLE001 - a shape past shared memory fails to compile; skip it
            continue
        best = min(best, (ms, config), key=lambda t: t[0])
    return best


def tune_tokens(tokens: int, w13: torch.Tensor, w2: torch.Tensor, top_k: int) -> dict:
    experts, two_i, hidden = w13.shape
    inter = two_i // 2
    g = torch.Generator(device=w13.device).manual_seed(tokens)
    x = torch.randn(tokens, hidden, device=w13.device, dtype=w13.dtype, generator=g)
    logits = torch.randn(tokens, experts, device=w13.device, generator=g)
    weights, ids = logits.softmax(-1).topk(top_k, dim=-1)
    flat_weights = weights.reshape(-1).contiguous()
    h = x.new_empty(tokens * top_k, inter)
    y = x.new_empty(tokens * top_k, hidden)
    choice: tuple[float, dict] = (math.inf, {})
    for block_m in block_m_candidates(tokens * top_k / experts):
        align = align_by_expert(ids, experts, block_m)
        up_ms, up = _best(
            lambda c, a=align: _grouped_gemm(x, w13, h, None, a, inter, top_k, True, c), block_m)
        down_ms, down = _best(
            lambda c, a=align: _grouped_gemm(h, w2, y, flat_weights, a, hidden, 1, False, c),
            block_m)
        if up is None or down is None:
            continue
        entry = {"up": asdict(up), "down": asdict(down), "up_us": up_ms * 1e3,
                 "down_us": down_ms * 1e3}
        choice = min(choice, (up_ms + down_ms, entry), key=lambda t: t[0])
    return choice[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--inter", type=int, default=14336, help="one expert's intermediate size")
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--tokens", type=int, nargs="+", default=TOKENS)
    p.add_argument("--out", required=True, help="folder for the table (merged into one there)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("moe_tune measures a CUDA GPU; none is visible")
    dtype = getattr(torch, args.dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    e, h, i = args.experts, args.hidden, args.inter
    w13 = torch.randn(e, 2 * i, h, device="cuda", dtype=dtype, generator=g) * h**-0.5
    w2 = torch.randn(e, h, i, device="cuda", dtype=dtype, generator=g) * i**-0.5
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / tuning.table_name(TUNING_KERNEL, tuning.device_key())
    table = json.loads(path.read_text()) if path.is_file() else {}
    buckets: dict[str, dict] = {}
    for tokens in args.tokens:
        start = time.perf_counter()
        buckets[str(tokens)] = entry = tune_tokens(tokens, w13, w2, args.top_k)
        print(json.dumps({"tokens": tokens, **entry, "tune_s": time.perf_counter() - start}),
              flush=True)
    table[tuning_key(e, h, i, dtype)] = buckets
    path.write_text(json.dumps(table, indent=1, sort_keys=True))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

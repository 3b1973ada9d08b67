"""Batch-1 decode attention over short contexts (the suite's batch-1 run: 32-288 keys), every
launch shape: one program per KV head (`one_split_keys` above the context) and split launches
(`num_kv_splits` spans merged in the last program). Timed as a decode step runs it
(`sglang.kernels.graph_timing`: a CUDA graph, each call on its own KV pool past the L2).
Check a choice in the engine too (`gpu_suite.py --phases ceilings,decode`): on the H200 the
fastest launch here (128-key blocks, 3 stages) made batch-1 decode slower, the same blocks with
one stage faster (docs/benchmarks.md).

    python3 benchmarks/decode_attention_short.py [--contexts 64 160 288] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from sglang.kernels.attention.decode import decode_attention
from sglang.kernels.attention.decode_launch import (
    DecodeLaunch,
    decode_launch,
    default_num_kv_splits,
)
from sglang.kernels.attention.decode_workspace import DecodeWorkspace
from sglang.kernels.graph_timing import copies_past_l2, graph_us

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def sweep(ctx: int, top: int) -> dict:
    dtype, dev = torch.bfloat16, torch.device("cuda")
    pool_bytes = 2 * ctx * KV_HEADS * HEAD_DIM * 2
    pools = [(torch.randn(ctx, KV_HEADS, HEAD_DIM, device=dev, dtype=dtype),
              torch.randn(ctx, KV_HEADS, HEAD_DIM, device=dev, dtype=dtype))
             for _ in range(max(copies_past_l2(pool_bytes), 32))]
    table = torch.arange(ctx, device=dev, dtype=torch.int32).view(1, ctx)
    rows = torch.zeros(1, device=dev, dtype=torch.int64)
    seq = torch.full((1,), ctx, device=dev, dtype=torch.int64)
    q = torch.randn(1, HEADS, HEAD_DIM, device=dev, dtype=dtype)
    ws = DecodeWorkspace.allocate(1, HEADS, HEAD_DIM, 64, dev)
    out = torch.empty_like(q)
    timed = []
    ref = None
    for splits, bn, warps, stages in itertools.product(
            (1, 2, 4, 8, 16, 64), (16, 32, 64, 128, 256), (2, 4, 8), (1, 2, 3)):
        if splits > 1 and bn * splits > 2 * max(ctx, 64) * 2:
            continue  # most spans empty
        launch = DecodeLaunch(bn, warps, stages, one_split_keys=1 << 20 if splits == 1 else 0)

        def call(k, v, launch=launch, splits=splits):
            return decode_attention(q, k, v, table, rows, seq, out, sm_scale=HEAD_DIM**-0.5,
                                    num_kv_splits=splits, workspace=ws, launch=launch)
        try:
            us = graph_us([lambda kv=kv: call(*kv) for kv in pools])
        except Exception as e:  # noqa: BLE001 - past shared memory or registers: skip
            print(f"skip {splits} {launch}: {type(e).__name__}", flush=True)
            continue
        got = call(*pools[0]).float().clone()
        ref = got if ref is None else ref
        timed.append({"splits": splits, "block_n": bn, "warps": warps, "stages": stages,
                      "us": round(us, 2), "err": float((got - ref).abs().max())})
    timed.sort(key=lambda r: r["us"])
    # What the runtime launches today: the device's table and the default split count.
    now_splits = default_num_kv_splits(1, KV_HEADS, dev)
    now = decode_launch(1, HEADS, KV_HEADS, HEAD_DIM, dtype, dev)
    now_us = graph_us([lambda kv=kv: decode_attention(
        q, *kv, table, rows, seq, out, sm_scale=HEAD_DIM**-0.5, num_kv_splits=now_splits,
        workspace=ws, launch=now) for kv in pools])
    return {"ctx": ctx, "current_us": round(now_us, 2), "current": str(now),
            "best": timed[:top], "count": len(timed)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[64, 160, 288])
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    res = [sweep(c, args.top) for c in args.contexts]
    for r in res:
        print(json.dumps(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

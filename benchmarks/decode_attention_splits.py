"""Decode attention against the one-program threshold (`DecodeLaunch.one_split_keys`): Llama-3-8B
heads (32 query, 8 KV, head_dim 128, bf16) at batch 1 and 8 over growing contexts.

Each call is timed as a decode step runs it (`sglang.kernels.graph_timing`): captured in a CUDA
graph, each call on its own KV pool (copies past the L2). Every threshold's output is compared
with the first column's (`err*`: the largest absolute difference). Threshold 0 is the split
kernel without the one-program path.

    python3 benchmarks/decode_attention_splits.py [--thresholds 0 128 256 384 512] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from sglang.kernels.attention.decode import decode_attention
from sglang.kernels.attention.decode_launch import decode_launch, default_num_kv_splits
from sglang.kernels.attention.decode_workspace import DecodeWorkspace
from sglang.kernels.graph_timing import copies_past_l2, graph_us

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def run_case(batch: int, ctx: int, thresholds: list[int]) -> dict:
    dtype, dev = torch.bfloat16, torch.device("cuda")
    slots = batch * ctx
    pool_bytes = 2 * slots * KV_HEADS * HEAD_DIM * 2
    pools = [(torch.randn(slots, KV_HEADS, HEAD_DIM, device=dev, dtype=dtype),
              torch.randn(slots, KV_HEADS, HEAD_DIM, device=dev, dtype=dtype))
             for _ in range(min(copies_past_l2(pool_bytes), 16))]
    table = torch.arange(slots, device=dev, dtype=torch.int32).view(batch, ctx)
    rows = torch.arange(batch, device=dev, dtype=torch.int64)
    seq = torch.full((batch,), ctx, device=dev, dtype=torch.int64)
    q = torch.randn(batch, HEADS, HEAD_DIM, device=dev, dtype=dtype)
    splits = default_num_kv_splits(batch, KV_HEADS, dev)
    ws = DecodeWorkspace.allocate(batch, HEADS, HEAD_DIM, splits, dev)
    base = decode_launch(batch, HEADS, KV_HEADS, HEAD_DIM, dtype, dev)
    out = torch.empty_like(q)
    row: dict = {"batch": batch, "ctx": ctx, "splits": splits}
    first = None
    for keys in thresholds:
        launch = dataclasses.replace(base, one_split_keys=keys)

        def call(k: torch.Tensor, v: torch.Tensor, launch=launch) -> torch.Tensor:
            return decode_attention(q, k, v, table, rows, seq, out, sm_scale=HEAD_DIM**-0.5,
                                    num_kv_splits=splits, workspace=ws, launch=launch)

        row[f"us{keys}"] = round(graph_us([lambda kv=kv: call(*kv) for kv in pools]), 2)
        got = call(*pools[0]).float().clone()
        first = got if first is None else first
        row[f"err{keys}"] = float((got - first).abs().max())
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--thresholds", type=int, nargs="+", default=[0, 128, 256, 384, 512])
    p.add_argument("--contexts", type=int, nargs="+", default=[160, 512, 1024, 4096, 16384])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_attention_splits measures a CUDA GPU; none is visible")
    rows = []
    for batch in args.batches:
        for ctx in args.contexts:
            rows.append(run_case(batch, ctx, args.thresholds))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

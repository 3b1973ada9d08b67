"""Sort (token, slot) pairs by expert, each expert's run padded to whole blocks, in ONE launch.

The fused MoE GEMMs need every block of `block_m` sorted rows to belong to one expert. Built
from torch ops this took about fifteen small kernels, which at decode (two pairs, a GEMM pair
of ~200 us per layer) cost more than a third of the MoE layer on an H200 inside a CUDA graph.
One program does it all: counts per expert, padded offsets (cumsum), then each chunk of pairs
is scattered to `start[e] + earlier pairs of e` (a cumsum over the chunk's one-hot rows keeps
the order stable), and every block is given the expert whose padded run covers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import check_device, next_pow2


@dataclass(frozen=True)
class ExpertAlignment:
    """Pairs sorted by expert: `sorted_ids` [max_padded] holds flat pair indices (token * top_k
    + slot), `num_pairs` in padding slots; `expert_ids` [max_blocks] the expert of each block;
    `num_padded` [1] the used length of `sorted_ids` (on the device)."""

    sorted_ids: torch.Tensor
    expert_ids: torch.Tensor
    num_padded: torch.Tensor
    block_m: int


@triton.jit
def _align_kernel(
    ids_ptr, sorted_ptr, expert_ids_ptr, num_padded_ptr,
    num_pairs, max_padded, max_blocks,
    NUM_EXPERTS: tl.constexpr, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr, CHUNK: tl.constexpr,
):
    experts = tl.arange(0, E_PAD)
    lanes = tl.arange(0, CHUNK)
    counts = tl.zeros((E_PAD,), dtype=tl.int32)
    for p0 in range(0, num_pairs, CHUNK):
        p = p0 + lanes
        # E_PAD as the masked-off id matches no expert lane.
        ids = tl.load(ids_ptr + p, mask=p < num_pairs, other=E_PAD)
        counts += tl.sum((ids[:, None] == experts[None, :]).to(tl.int32), axis=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    for q0 in range(0, max_padded, CHUNK):
        q = q0 + lanes
        tl.store(sorted_ptr + q, tl.zeros((CHUNK,), dtype=tl.int32) + num_pairs, mask=q < max_padded)
    # The scatter below overwrites some of those padding slots from other threads.
    tl.debug_barrier()
    seen = tl.zeros((E_PAD,), dtype=tl.int32)
    for p0 in range(0, num_pairs, CHUNK):
        p = p0 + lanes
        ok = p < num_pairs
        ids = tl.load(ids_ptr + p, mask=ok, other=E_PAD)
        onehot = (ids[:, None] == experts[None, :]).to(tl.int32)
        before = tl.cumsum(onehot, axis=0) - onehot
        pos = tl.sum(onehot * (before + (starts + seen)[None, :]), axis=1)
        tl.store(sorted_ptr + pos, p.to(tl.int32), mask=ok)
        seen += tl.sum(onehot, axis=0)
    tl.store(num_padded_ptr, tl.sum(padded, axis=0))
    for b0 in range(0, max_blocks, CHUNK):
        b = b0 + lanes
        # The expert of a block: how many padded runs end at or before its first row.
        covered = tl.sum((ends[None, :] <= (b * BLOCK_M)[:, None]).to(tl.int32), axis=1)
        tl.store(expert_ids_ptr + b, tl.minimum(covered, NUM_EXPERTS - 1), mask=b < max_blocks)


def align_by_expert(topk_ids: torch.Tensor, num_experts: int, block_m: int) -> ExpertAlignment:
    check_device(topk_ids)
    flat = topk_ids.reshape(-1)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    num_pairs = flat.numel()
    # Worst case: every expert's run ends one row into a fresh block.
    max_padded = triton.cdiv(num_pairs + num_experts * (block_m - 1), block_m) * block_m
    max_blocks = max_padded // block_m
    sorted_ids = torch.empty(max_padded, dtype=torch.int32, device=flat.device)
    expert_ids = torch.empty(max_blocks, dtype=torch.int32, device=flat.device)
    num_padded = torch.empty(1, dtype=torch.int32, device=flat.device)
    e_pad = next_pow2(num_experts, 16)
    _align_kernel[(1,)](
        flat, sorted_ids, expert_ids, num_padded, num_pairs, max_padded, max_blocks,
        NUM_EXPERTS=num_experts, E_PAD=e_pad, BLOCK_M=block_m,
        CHUNK=max(16, min(128, 8192 // e_pad)),
    )
    return ExpertAlignment(sorted_ids, expert_ids, num_padded, block_m)

"""Split-K for the quantized GEMMs: how many splits, where the partials go, and their sum.

A launch cut into `split` slices of K writes fp32 partials [split, M, N]. They are added in split
order (deterministic, unlike fp32 atomics), either by a second launch (`sum_splits`) or inside
the kernel (`store_or_sum`): the last program of each output tile to finish, counted on an int32
arrival counter (`split_counters`), adds the partials and writes the result, which saves the
second launch. Both give the same bits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def heuristic_split(tiles: int, chunks: int, programs: int) -> int:
    """Split-K doubling until `tiles` x split reaches `programs`, keeping >= 4 of the K
    `chunks` a split (shared by the quantized kernels' heuristics)."""
    split = 1
    while tiles * split < programs and chunks // (split * 2) >= 4:
        split *= 2
    return split


def split_output(chunks: int, split_k: int, m: int, n: int,
                 x: torch.Tensor) -> tuple[int, int, torch.Tensor]:
    """(chunks per split, splits, output): no empty split; one split writes [M, N] in x's
    dtype, more write fp32 partials [split, M, N] for `sum_splits`."""
    per_split = triton.cdiv(chunks, min(max(split_k, 1), chunks))
    split = triton.cdiv(chunks, per_split)
    if split == 1:
        return per_split, split, torch.empty((m, n), dtype=x.dtype, device=x.device)
    return per_split, split, torch.empty((split, m, n), dtype=torch.float32, device=x.device)


def sum_splits(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`split_output`'s result: as it is for one split, else the partials summed in split
    order (deterministic) and cast, in one launch."""
    if out.dim() == 2:
        return out
    split, m, n = out.shape
    y = torch.empty((m, n), dtype=dtype, device=out.device)
    block = 1024
    _sum_splits_kernel[(triton.cdiv(m * n, block),)](out, y, split, m * n, BLOCK=block)
    return y


# Arrival counters for split-K sums in the kernel, per device: zero between launches (the
# last program of each tile clears its own), so one buffer serves every launch in stream order.
_COUNTERS: dict[torch.device, torch.Tensor] = {}
COUNTER_SLOTS = 1 << 16


def split_counters(device: torch.device, tiles: int) -> torch.Tensor | None:
    """The device's zeroed int32 tile counters, or None (the partials are then summed by a
    second launch): more tiles than slots, or first needed while a CUDA graph is captured,
    where an allocation would come from the graph's private pool and not outlive it."""
    counters = _COUNTERS.get(device)
    if counters is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return None
        counters = _COUNTERS[device] = torch.zeros(COUNTER_SLOTS, dtype=torch.int32,
                                                   device=device)
    return counters if tiles <= counters.numel() else None


@triton.jit
def _sum_splits_kernel(part_ptr, y_ptr, SPLIT, MN, BLOCK: tl.constexpr):
    """y = sum over splits of the fp32 partials, in split order (deterministic), cast to y's
    dtype: one launch instead of torch's sum and cast."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < MN
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    part = part_ptr + offs  # advanced as a pointer: split x M x N may pass 2**31
    for _ in range(SPLIT):
        acc += tl.load(part, mask=ok, other=0.0)
        part += MN
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit
def store_or_sum(y, out_ptr, part_ptr, cnt_ptr, offs, ok, tile, pid_k, split, stride_os,
                  SUM_IN_KERNEL: tl.constexpr):
    """One split's result y at `offs`. Without SUM_IN_KERNEL: stored (in out's dtype) at
    split pid_k of out. With it: stored as an fp32 partial; the last of the tile's `split`
    programs to arrive (an acq_rel counter per tile) adds the partials in split order,
    writes out and clears the counter for the next launch (no second launch)."""
    if SUM_IN_KERNEL:
        tl.store(part_ptr + pid_k * stride_os + offs, y, mask=ok)
        tl.debug_barrier()  # every thread's partial is stored before the release below
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == split - 1:
            # .cg: read through the L2, not an L1 line this SM may hold from a past launch.
            total = tl.load(part_ptr + offs, mask=ok, other=0.0, cache_modifier=".cg")
            for s in range(1, split):
                total += tl.load(part_ptr + s * stride_os + offs, mask=ok, other=0.0,
                                 cache_modifier=".cg")
            tl.store(out_ptr + offs, total.to(out_ptr.dtype.element_ty), mask=ok)
            tl.atomic_xchg(cnt_ptr + tile, 0)
    else:
        tl.store(out_ptr + pid_k * stride_os + offs, y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def gemm_tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """A program's rows and output features, their masks, its output tile's index and its
    split, in the split-K grid (row block, column block, split) of the quantized GEMMs."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    tile = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
    return rm, rn, rm < M, rn < N, tile, tl.program_id(2)

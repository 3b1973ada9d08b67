"""Row-wise argmax over a vocabulary, for greedy sampling.

torch's reduction gives a single row of 128K logits to few thread blocks (a profile of batch-1
decode on the H200 put ``argmax`` at 28 us a step, more than a layer's attention). Here each
row is cut into chunks, one program per (row, chunk) finds its chunk's largest value and first
index, and a second small kernel picks each row's first best chunk. Ties go to the lowest
index, as in ``torch.argmax``; NaN counts as +inf (torch ranks NaN above +inf, so a row holding
both may differ).

`greedy_argmax` uses the kernel only where this device's table (`argmax_tune`) measured it
faster than torch, at the nearest row count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels import tuning
from sglang.kernels._triton import (
    check_device,
    interpreting,
    next_pow2,
    num_sms,
    pdl_args,
    pdl_enter,
)

TUNING_KERNEL = "argmax"


@dataclass(frozen=True)
class ArgmaxLaunch:
    """Values per block, warps, and programs per row aimed at for one row (more rows take
    proportionally fewer chunks each; 0: two per SM)."""

    block: int = 2048
    num_warps: int = 4
    programs: int = 0


@triton.jit
def _chunk_argmax_kernel(X, Val, Idx, N, stride_x, stride_p, CHUNK: tl.constexpr,
                         BLOCK: tl.constexpr, USE_PDL: tl.constexpr):
    pdl_enter(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    start = chunk * CHUNK
    best_v = tl.full([], -float("inf"), tl.float32)
    best_i = tl.full([], 0, tl.int32) + start
    for off in range(start, tl.minimum(start + CHUNK, N), BLOCK):
        cols = off + tl.arange(0, BLOCK)
        x = tl.load(X + row * stride_x + cols, mask=cols < N, other=-float("inf")).to(tl.float32)
        x = tl.where(x != x, float("inf"), x)
        m = tl.max(x, 0)
        # Strictly greater: an equal value later in the row never replaces an earlier one.
        better = m > best_v
        best_i = tl.where(better, off + tl.argmax(x, 0, tie_break_left=True), best_i)
        best_v = tl.where(better, m, best_v)
    tl.store(Val + row * stride_p + chunk, best_v)
    tl.store(Idx + row * stride_p + chunk, best_i)


@triton.jit
def _pick_chunk_kernel(Val, Idx, Out, CHUNKS, stride_p, BLOCK_C: tl.constexpr,
                       USE_PDL: tl.constexpr):
    pdl_enter(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_C)
    mask = offs < CHUNKS
    vals = tl.load(Val + row * stride_p + offs, mask=mask, other=-float("inf"))
    idx = tl.load(Idx + row * stride_p + offs, mask=mask, other=0)
    first = tl.argmax(vals, 0, tie_break_left=True)
    tl.store(Out + row, tl.sum(tl.where(offs == first, idx, 0), 0).to(tl.int64))


def argmax(x: torch.Tensor, launch: ArgmaxLaunch | None = None) -> torch.Tensor:
    """``x.argmax(dim=-1)`` for a 2-D ``[rows, n]`` float tensor (rows may be strided, the last
    dim contiguous), as int64 ``[rows]``. No host synchronisation: graph-capturable."""
    if x.dim() != 2 or x.stride(-1) != 1 or not x.dtype.is_floating_point:
        raise ValueError(f"argmax takes a [rows, n] float tensor with a contiguous last dim, "
                         f"got {x.dtype} {tuple(x.shape)} strides {x.stride()}")
    rows, n = x.shape
    if n == 0:
        raise ValueError("argmax of an empty row")
    check_device(x)
    out = torch.empty(rows, dtype=torch.int64, device=x.device)
    if rows == 0:
        return out
    cfg = launch or ArgmaxLaunch(block=64 if interpreting() else 2048)
    want = cfg.programs or 2 * num_sms(x.device)
    chunks = max(1, min(triton.cdiv(want, rows), triton.cdiv(n, cfg.block)))
    chunk = triton.cdiv(triton.cdiv(n, chunks), cfg.block) * cfg.block
    chunks = triton.cdiv(n, chunk)
    val = torch.empty((rows, chunks), dtype=torch.float32, device=x.device)
    idx = torch.empty((rows, chunks), dtype=torch.int32, device=x.device)
    warps = 1 if interpreting() else cfg.num_warps
    _chunk_argmax_kernel[(rows, chunks)](x, val, idx, n, x.stride(0), chunks, CHUNK=chunk,
                                         BLOCK=cfg.block, **pdl_args(x), num_warps=warps)
    _pick_chunk_kernel[(rows,)](val, idx, out, chunks, chunks, BLOCK_C=next_pow2(chunks),
                                **pdl_args(x), num_warps=1)
    return out


def tuning_key(n: int, dtype: torch.dtype) -> str:
    return f"N{n}_{str(dtype).removeprefix('torch.')}"


def measured_launch(rows: int, n: int, dtype: torch.dtype,
                    device: torch.device) -> ArgmaxLaunch | None:
    """The launch this device's table found faster than torch at the nearest row count; None
    where torch won or nothing was measured (the interpreter reads "cpu" tables, which only
    tests write)."""
    entry = tuning.measured_entry(TUNING_KERNEL, tuning_key(n, dtype), rows, device)
    if not entry or not entry.get("launch"):
        return None
    return ArgmaxLaunch(**entry["launch"])


def greedy_argmax(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(dim=-1)`` of ``[rows, n]`` logits: the Triton kernel where it was measured
    faster on this device, torch's reduction otherwise (and off CUDA outside the interpreter)."""
    if not (x.is_cuda or interpreting()) or x.dim() != 2 or x.stride(-1) != 1:
        return x.argmax(dim=-1)
    launch = measured_launch(x.shape[0], x.shape[1], x.dtype, x.device)
    return x.argmax(dim=-1) if launch is None else argmax(x, launch)

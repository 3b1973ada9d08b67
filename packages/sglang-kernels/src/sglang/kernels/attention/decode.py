"""Decode attention over a token-level KV pool: split-KV flash-decoding in one launch.

One program per (request, KV head, split) attends the query heads that share the KV head to one
contiguous span of the request's keys (read through ``req_to_token``) and writes the span's
normalised partial output and log-sum-exp into a scratch workspace. Then it counts itself in on
a per-(request, KV head) counter; the program that arrives last merges the splits with the
log-sum-exp rule and resets the counter. Merging in the last program instead of a second launch
saves a kernel boundary per layer, which is most of the merge's cost at small batches. Given a
`DecodeRope` (`decode_rope.py`), the programs also rotate the query and the program of the last
span rotates and stores the current token's K/V first: the rope kernel's launch saved too.
Launch shapes and split counts come from `decode_launch.py`.

Graph capture: the grids depend only on tensor shapes and the fixed ``num_kv_splits``; sequence
lengths are read on the device (each request cuts its own keys into ``num_kv_splits`` spans, so
short requests leave trailing splits empty), and a preallocated ``DecodeWorkspace``
(`decode_workspace.py`) plus ``out`` make the call allocation-free.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import (
    check_device,
    dot_precision,
    kv_compute_dtype,
    next_pow2,
    pdl_args,
    pdl_enter,
)
from sglang.kernels.attention.block import attend_block
from sglang.kernels.attention.decode_launch import DecodeLaunch, decode_launch
from sglang.kernels.attention.decode_rope import DecodeRope, no_rope_args, rope_load, store_new_kv
from sglang.kernels.attention.decode_workspace import DEFAULT_NUM_KV_SPLITS, DecodeWorkspace


@triton.jit
def _decode_kernel(
    Q, K, V, MidO, MidLse, Out, Arrivals, ReqToToken, ReqPoolIdx, SeqLens,
    sm_scale, logit_cap, window, v_scale,
    stride_qb, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_outb, stride_outh,
    stride_ab, stride_req,
    Pos, CosSin, KNew, VNew, Loc, stride_cs, stride_knt, stride_knh, stride_vnt, stride_vnh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr, ONE_SPLIT_KEYS: tl.constexpr,
    ONE_BLOCK_N: tl.constexpr, ONE_STAGES: tl.constexpr,
    USE_WINDOW: tl.constexpr, USE_CAP: tl.constexpr, PRECISION: tl.constexpr,
    KV_FP8: tl.constexpr, ROPE: tl.constexpr, ROT_HALF: tl.constexpr, IS_NEOX: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(SeqLens + req).to(tl.int32)
    row = tl.load(ReqPoolIdx + req).to(tl.int64)
    kv_lo = 0
    if USE_WINDOW:
        kv_lo = tl.maximum(seq_len - window, 0)
    # Spans are whole key blocks, so a short request fills its first `active` splits and the
    # rest exit at once. Up to ONE_SPLIT_KEYS keys one program takes them all: it writes the
    # output directly, with no partials to merge.
    keys = seq_len - kv_lo
    span = tl.cdiv(tl.cdiv(keys, NUM_SPLITS), BLOCK_N) * BLOCK_N
    span = tl.where(keys <= ONE_SPLIT_KEYS, tl.maximum(keys, 1), span)
    active = tl.maximum(tl.cdiv(keys, span), 1)
    if split >= active:
        return
    start = kv_lo + split * span
    end = tl.minimum(start + span, seq_len)

    offs_g = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    heads = kv_head * GROUP + offs_g
    mask_h = offs_g < GROUP
    mask_d = offs_d < HEAD_DIM
    mask_hd = mask_h[:, None] & mask_d[None, :]
    q_rows = Q + req * stride_qb + heads[:, None] * stride_qh
    if ROPE:
        cos_sin = CosSin + tl.load(Pos + req).to(tl.int64) * stride_cs
        q = rope_load(q_rows, offs_d[None, :], mask_hd, cos_sin, ROT_HALF, IS_NEOX)
        q = q.to(Q.dtype.element_ty)
        if split == active - 1:  # the span holding the current token
            slot = tl.load(Loc + req).to(tl.int64)
            store_new_kv(KNew + req * stride_knt + kv_head * stride_knh,
                         VNew + req * stride_vnt + kv_head * stride_vnh,
                         K + slot * stride_kt + kv_head * stride_kh,
                         V + slot * stride_vt + kv_head * stride_vh,
                         offs_d, mask_d, cos_sin, ROT_HALF, IS_NEOX)
    else:
        q = tl.load(q_rows + offs_d[None, :], mask=mask_hd, other=0.0)

    m_i = tl.full([BLOCK_H], -1e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], dtype=tl.float32)
    k_base = K + kv_head * stride_kh
    v_base = V + kv_head * stride_vh
    slot_row = ReqToToken + row * stride_req
    if ONE_BLOCK_N == BLOCK_N and ONE_STAGES == 0:
        m_i, l_i, acc = _attend_span(
            q, m_i, l_i, acc, slot_row, k_base, v_base, start, end, offs_d, mask_d,
            stride_kt, stride_vt, sm_scale, logit_cap, BLOCK_N, USE_CAP, PRECISION, KV_FP8, 0)
    elif keys <= ONE_SPLIT_KEYS:
        # A short request's one program may take bigger blocks: fewer dependent rounds of
        # slot -> K -> V loads, which are its whole time (H200, batch 1, 160 keys: 128-key
        # blocks 7.0 us, 32-key blocks 8.6 us).
        m_i, l_i, acc = _attend_span(
            q, m_i, l_i, acc, slot_row, k_base, v_base, start, end, offs_d, mask_d,
            stride_kt, stride_vt, sm_scale, logit_cap, ONE_BLOCK_N, USE_CAP, PRECISION, KV_FP8,
            ONE_STAGES)
    else:
        m_i, l_i, acc = _attend_span(
            q, m_i, l_i, acc, slot_row, k_base, v_base, start, end, offs_d, mask_d,
            stride_kt, stride_vt, sm_scale, logit_cap, BLOCK_N, USE_CAP, PRECISION, KV_FP8, 0)

    # A request with no keys (padding) writes zeros, and lse = -inf for the merge.
    has_keys = l_i > 0.0
    # v_scale (1.0 unless the pool is fp8) is constant over the keys, so it scales the sum once.
    out = acc * v_scale / tl.where(has_keys, l_i, 1.0)[:, None]
    if active == 1:
        tl.store(Out + req * stride_outb + heads[:, None] * stride_outh + offs_d[None, :],
                 out.to(Out.dtype.element_ty), mask=mask_hd)
    else:
        lse = tl.where(has_keys, m_i + tl.log(tl.where(has_keys, l_i, 1.0)), float("-inf"))
        o_ptrs = (MidO + req * stride_ob + heads[:, None] * stride_oh + split * stride_os
                  + offs_d[None, :])
        tl.store(o_ptrs, out.to(MidO.dtype.element_ty), mask=mask_hd)
        tl.store(MidLse + req * stride_lb + heads * stride_lh + split, lse, mask=mask_h)

        # Every thread's stores are issued before the counter moves; the counter's
        # release/acquire then makes all splits' partials visible to the last to arrive.
        tl.debug_barrier()
        counter = Arrivals + req * stride_ab + kv_head
        arrived = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu")
        if arrived == active - 1:
            for g in tl.static_range(GROUP):
                _merge_splits(MidO, MidLse, Out, req, kv_head * GROUP + g, active,
                              stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                              stride_outb, stride_outh, HEAD_DIM, BLOCK_D, BLOCK_S)
            tl.atomic_xchg(counter, 0, sem="relaxed", scope="gpu")


@triton.jit
def _attend_keys(
    q, m_i, l_i, acc, slot_row, k_base, v_base, start_n, end, offs_d, mask_d,
    stride_kt, stride_vt, sm_scale, logit_cap,
    BLOCK_N: tl.constexpr, USE_CAP: tl.constexpr, PRECISION: tl.constexpr, KV_FP8: tl.constexpr,
):
    offs_n = start_n + tl.arange(0, BLOCK_N)
    mask_n = offs_n < end
    return attend_block(
        q, m_i, l_i, acc, slot_row, k_base, v_base, offs_n, mask_n, mask_n[None, :],
        offs_d, mask_d, stride_kt, stride_vt, sm_scale, logit_cap, USE_CAP, PRECISION, KV_FP8,
    )


@triton.jit
def _attend_span(
    q, m_i, l_i, acc, slot_row, k_base, v_base, start, end, offs_d, mask_d,
    stride_kt, stride_vt, sm_scale, logit_cap,
    BLOCK_N: tl.constexpr, USE_CAP: tl.constexpr, PRECISION: tl.constexpr, KV_FP8: tl.constexpr,
    STAGES: tl.constexpr,
):
    """The online softmax over keys [start, end) in blocks of BLOCK_N (STAGES: the loop's
    pipeline depth; 0 leaves it to the launch's num_stages)."""
    if STAGES > 0:
        for start_n in tl.range(start, end, BLOCK_N, num_stages=STAGES):
            m_i, l_i, acc = _attend_keys(
                q, m_i, l_i, acc, slot_row, k_base, v_base, start_n, end, offs_d, mask_d,
                stride_kt, stride_vt, sm_scale, logit_cap, BLOCK_N, USE_CAP, PRECISION, KV_FP8)
    else:
        for start_n in range(start, end, BLOCK_N):
            m_i, l_i, acc = _attend_keys(
                q, m_i, l_i, acc, slot_row, k_base, v_base, start_n, end, offs_d, mask_d,
                stride_kt, stride_vt, sm_scale, logit_cap, BLOCK_N, USE_CAP, PRECISION, KV_FP8)
    return m_i, l_i, acc


@triton.jit
def _merge_splits(
    MidO, MidLse, Out, req, head, active,
    stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_outb, stride_outh,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
):
    """One query head's output from its first `active` splits' partial outputs and
    log-sum-exps."""
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < active
    mask_d = offs_d < HEAD_DIM
    # .cg: read the other programs' partials from L2, never from a stale L1 line.
    lse = tl.load(
        MidLse + req * stride_lb + head * stride_lh + offs_s, mask=mask_s, other=float("-inf"),
        cache_modifier=".cg",
    )
    # Finite floor: a padded request with no keys at all merges to zeros, not NaN.
    m = tl.maximum(tl.max(lse, 0), -1e30)
    w = tl.exp(lse - m)
    o = tl.load(
        MidO + req * stride_ob + head * stride_oh + offs_s[:, None] * stride_os + offs_d[None, :],
        mask=mask_s[:, None] & mask_d[None, :], other=0.0, cache_modifier=".cg",
    ).to(tl.float32)
    total = tl.sum(w, 0)
    out = tl.sum(o * w[:, None], 0) / tl.where(total > 0.0, total, 1.0)
    tl.store(Out + req * stride_outb + head * stride_outh + offs_d, out.to(Out.dtype.element_ty),
             mask=mask_d)


def decode_attention(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    sm_scale: float,
    num_kv_splits: int = DEFAULT_NUM_KV_SPLITS,
    reduce_in_fp32: bool = True,
    logit_cap: float = 0.0,
    sliding_window: int | None = -1,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    workspace: DecodeWorkspace | None = None,
    launch: DecodeLaunch | None = None,
    rope: DecodeRope | None = None,
) -> torch.Tensor:
    """One query token per request attends to the request's first ``seq_lens[b]`` keys.

    Args:
        q: ``[batch, num_heads, head_dim]`` fp32/fp16/bf16 (last dim contiguous).
        k_buffer, v_buffer: ``[num_slots, num_kv_heads, head_dim]``, the layer's KV pool with the
            current token's K/V already stored. Query head ``h`` reads KV head
            ``h // (num_heads // num_kv_heads)``.
        req_to_token: ``[max_reqs, max_context]`` int32/int64, slot of (request row, position).
        req_pool_indices: ``[batch]`` int, each request's row in ``req_to_token``.
        seq_lens: ``[batch]`` int, keys per request including the current token (read on device;
            0 gives a zero output, for padded batch entries).
        out: optional preallocated ``[batch, num_heads, head_dim]`` output in ``q``'s dtype.
        sm_scale: softmax scale.
        num_kv_splits: how many spans each request's keys are cut into (fixed per call site, so
            the launch grid is static).
        reduce_in_fp32: keep the split partial outputs in fp32 (else in ``q``'s dtype, half the
            scratch traffic); with a ``workspace`` its dtype decides, and must then be fp32.
            The merge itself always accumulates in fp32.
        logit_cap: > 0 applies ``cap * tanh(score / cap)`` to the scaled scores.
        sliding_window: > 0 limits attention to the last ``sliding_window`` keys (None or
            <= 0: no window).
        k_scale, v_scale: the layer's KV scales when the pool is fp8 (float8_e4m3fn /
            float8_e5m2 buffers, as ``store_kv`` writes them): keys and values read as
            ``code * scale``; ignored (1.0) for other pools.
        workspace: preallocated scratch with room for ``batch * num_kv_splits``
            (``DecodeWorkspace.allocate``); ``None`` allocates one.
        launch: the kernel's launch shape; default `decode_launch` (the device's table).
        rope: the current token's rotation and KV store, done here instead of beforehand:
            ``q`` is read unrotated (and left so), and ``k_buffer``/``v_buffer`` need not hold
            the current token yet (`DecodeRope` says when this is valid).

    Returns:
        ``out``: ``[batch, num_heads, head_dim]`` in ``q``'s dtype.

    No host synchronisation happens here: the call is safe to capture in a CUDA graph.
    """
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_buffer.shape[1]
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
    if k_buffer.shape[2] != head_dim or v_buffer.shape[2] != head_dim:
        raise ValueError("q, k_buffer and v_buffer must share head_dim")
    if num_kv_splits < 1:
        raise ValueError(f"num_kv_splits must be >= 1, got {num_kv_splits}")
    check_device(q, k_buffer, v_buffer, req_to_token)
    if rope is not None:
        rope.check(q, k_buffer, v_buffer)
    kv_fp8, compute_dtype = kv_compute_dtype(q, k_buffer, v_buffer)
    window = int(sliding_window) if sliding_window else -1
    if q.stride(-1) != 1:
        q = q.contiguous()
    if req_to_token.stride(-1) != 1:
        raise ValueError("req_to_token rows must be contiguous")
    if out is None:
        out = torch.empty((batch, num_heads, head_dim), dtype=q.dtype, device=q.device)
    if workspace is None:
        reduce_dtype = torch.float32 if reduce_in_fp32 else q.dtype
        workspace = DecodeWorkspace.allocate(
            batch, num_heads, head_dim, num_kv_splits, q.device, reduce_dtype
        )
    _check_workspace(workspace, num_heads, head_dim, reduce_in_fp32)
    if batch == 0:
        return out
    mid_o, mid_lse = workspace.views(batch, num_kv_splits)
    group = num_heads // num_kv_heads
    block_d = next_pow2(head_dim, 16)
    cfg = launch or decode_launch(batch, num_heads, num_kv_heads, head_dim, compute_dtype,
                                  q.device)
    arrivals = workspace.arrivals
    _decode_kernel[(batch, num_kv_heads, num_kv_splits)](
        q, k_buffer, v_buffer, mid_o, mid_lse, out, arrivals,
        req_to_token, req_pool_indices, seq_lens,
        float(sm_scale) * float(k_scale), float(logit_cap), window, float(v_scale),
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1),
        v_buffer.stride(0), v_buffer.stride(1),
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2), mid_lse.stride(0), mid_lse.stride(1),
        out.stride(0), out.stride(1), arrivals.stride(0), req_to_token.stride(0),
        GROUP=group, HEAD_DIM=head_dim, BLOCK_D=block_d,
        # tl.dot needs at least 16 rows; heads beyond the group are masked.
        BLOCK_H=next_pow2(group, 16), BLOCK_N=cfg.block_n, NUM_SPLITS=num_kv_splits,
        BLOCK_S=next_pow2(num_kv_splits),
        ONE_SPLIT_KEYS=cfg.one_split_keys, ONE_BLOCK_N=cfg.one_split_block_n or cfg.block_n,
        ONE_STAGES=cfg.one_split_stages,
        USE_WINDOW=window > 0, USE_CAP=logit_cap > 0,
        PRECISION=dot_precision(compute_dtype), KV_FP8=kv_fp8,
        **(rope.launch_args() if rope is not None else no_rope_args(q)), **pdl_args(q),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


def _check_workspace(ws: DecodeWorkspace, num_heads: int, head_dim: int, fp32: bool) -> None:
    if ws.num_heads != num_heads or ws.head_dim != head_dim:
        raise ValueError(
            f"workspace is for {ws.num_heads} heads of dim {ws.head_dim}, "
            f"not {num_heads} of dim {head_dim}"
        )
    if fp32 and ws.o.dtype != torch.float32:
        raise ValueError("reduce_in_fp32=True needs an fp32 workspace")

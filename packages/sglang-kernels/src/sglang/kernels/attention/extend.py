"""Extend (prefill with a cached prefix) attention over a token-level KV pool.

Every new token attends to its request's keys at positions ``[0, prefix_len + i]``. All keys,
the cached prefix and the new tokens alike, are read through the request's ``req_to_token`` row:
the caller stores the new tokens' K/V into the pool first (``store_kv``), and nothing is copied.
One program handles one block of a request's new tokens for one query head, streaming the keys
in blocks with an online softmax (flash attention over gathered rows).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import (
    check_device,
    dot_precision,
    interpreting,
    kv_compute_dtype,
    next_pow2,
)
from sglang.kernels.attention.block import attend_block


@triton.jit
def _extend_kernel(
    Q, K, V, Out, ReqToToken, ReqPoolIdx, PrefixLens, ExtendLens, ExtendStart,
    sm_scale, logit_cap, window, v_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    stride_req,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    USE_WINDOW: tl.constexpr, USE_CAP: tl.constexpr, PRECISION: tl.constexpr,
    KV_FP8: tl.constexpr,
):
    req = tl.program_id(0)
    head = tl.program_id(1)
    m_start = tl.program_id(2) * BLOCK_M
    extend_len = tl.load(ExtendLens + req).to(tl.int32)
    # The grid covers the longest request; shorter ones have nothing in their last blocks.
    if m_start >= extend_len:
        return
    prefix_len = tl.load(PrefixLens + req).to(tl.int32)
    q_start = tl.load(ExtendStart + req).to(tl.int64)
    row = tl.load(ReqPoolIdx + req).to(tl.int64)
    kv_head = head // GROUP

    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < extend_len
    mask_d = offs_d < HEAD_DIM
    q_ptrs = Q + (q_start + offs_m[:, None]) * stride_qt + head * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    q_pos = prefix_len + offs_m

    # Keys past the block's last query are never visible (causal), so stop there.
    hi = prefix_len + tl.minimum(extend_len, m_start + BLOCK_M)
    lo = 0
    if USE_WINDOW:
        lo = tl.maximum(prefix_len + m_start - window + 1, 0)

    # A finite start keeps exp(m_old - m_new) defined for rows that see no key in a block.
    m_i = tl.full([BLOCK_M], -1e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_base = K + kv_head * stride_kh
    v_base = V + kv_head * stride_vh
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < hi
        visible = mask_n[None, :] & (offs_n[None, :] <= q_pos[:, None])
        if USE_WINDOW:
            visible = visible & (offs_n[None, :] > q_pos[:, None] - window)
        m_i, l_i, acc = attend_block(
            q, m_i, l_i, acc, ReqToToken + row * stride_req, k_base, v_base, offs_n, mask_n,
            visible, offs_d, mask_d, stride_kt, stride_vt, sm_scale, logit_cap,
            USE_CAP, PRECISION, KV_FP8,
        )

    # v_scale (1.0 unless the pool is fp8) is constant over the keys, so it scales the sum once.
    out = acc * v_scale / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_ptrs = Out + (q_start + offs_m[:, None]) * stride_ot + head * stride_oh + offs_d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def _launch_config(head_dim: int, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages)."""
    if interpreting():
        # Small blocks so that tiny test shapes still cross block boundaries.
        return 16, 16, 1, 1
    if dtype == torch.float32:
        return 64, 32, 4, 1
    warps = 4 if head_dim <= 64 else 8
    if head_dim <= 128:
        return 128, 64, warps, 2
    return 64, 32, warps, 1


def extend_attention(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    prefix_lens: torch.Tensor,
    extend_lens: torch.Tensor,
    extend_start_loc: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    sm_scale: float,
    max_extend_len: int,
    sliding_window: int | None = -1,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    logit_cap: float = 0.0,
) -> torch.Tensor:
    """Attention of a ragged batch of new tokens over their requests' cached prefix and
    themselves (causal), reading every key through ``req_to_token``.

    Args:
        q: ``[num_tokens, num_heads, head_dim]`` fp32/fp16/bf16, the new tokens of all requests
            one request after another (last dim contiguous).
        k_buffer, v_buffer: ``[num_slots, num_kv_heads, head_dim]``, the layer's KV pool. The new
            tokens' K/V must already be stored (``store_kv``). ``num_heads`` is a multiple of
            ``num_kv_heads``; query head ``h`` reads KV head ``h // (num_heads // num_kv_heads)``.
        req_to_token: ``[max_reqs, max_context]`` int32/int64, slot of (request row, position).
        req_pool_indices: ``[batch]`` int, each request's row in ``req_to_token``.
        prefix_lens: ``[batch]`` int, cached tokens before the new ones (0 for a plain prefill).
        extend_lens: ``[batch]`` int, new tokens per request (sum = ``num_tokens``).
        extend_start_loc: ``[batch]`` int, index of each request's first new token in ``q``
            (the exclusive cumulative sum of ``extend_lens``).
        out: optional ``[num_tokens, num_heads, head_dim]`` output, dtype of ``q``.
        sm_scale: softmax scale, usually ``head_dim ** -0.5``.
        max_extend_len: a host int ``>= max(extend_lens)``; sizes the launch grid.
        sliding_window: > 0 limits each query at position ``p`` to keys in ``(p - window, p]``
            (None or <= 0: no window).
        k_scale, v_scale: the layer's KV scales when the pool is fp8 (float8_e4m3fn /
            float8_e5m2 buffers, as ``store_kv`` writes them): keys and values read as
            ``code * scale``; ignored (1.0) for other pools.
        logit_cap: > 0 applies ``cap * tanh(score / cap)`` to the scaled scores (soft-capping).

    Returns:
        ``out``: ``[num_tokens, num_heads, head_dim]`` in ``q``'s dtype; scores, softmax and the
        weighted sum run in fp32.
    """
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = k_buffer.shape[1]
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
    if k_buffer.shape[2] != head_dim or v_buffer.shape[2] != head_dim:
        raise ValueError("q, k_buffer and v_buffer must share head_dim")
    check_device(q, k_buffer, v_buffer, req_to_token)
    kv_fp8, compute_dtype = kv_compute_dtype(q, k_buffer, v_buffer)
    window = int(sliding_window) if sliding_window else -1
    if q.stride(-1) != 1:
        q = q.contiguous()
    if req_to_token.stride(-1) != 1:
        raise ValueError("req_to_token rows must be contiguous")
    if out is None:
        out = torch.empty((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    batch = req_pool_indices.shape[0]
    if batch == 0 or num_tokens == 0 or max_extend_len <= 0:
        return out
    block_m, block_n, warps, stages = _launch_config(head_dim, compute_dtype)
    grid = (batch, num_heads, triton.cdiv(max_extend_len, block_m))
    _extend_kernel[grid](
        q, k_buffer, v_buffer, out, req_to_token, req_pool_indices, prefix_lens, extend_lens,
        extend_start_loc,
        float(sm_scale) * float(k_scale), float(logit_cap), window, float(v_scale),
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1),
        v_buffer.stride(0), v_buffer.stride(1), out.stride(0), out.stride(1),
        req_to_token.stride(0),
        GROUP=num_heads // num_kv_heads, HEAD_DIM=head_dim, BLOCK_D=next_pow2(head_dim, 16),
        BLOCK_M=block_m, BLOCK_N=block_n,
        USE_WINDOW=window > 0, USE_CAP=logit_cap > 0,
        PRECISION=dot_precision(compute_dtype), KV_FP8=kv_fp8,
        num_warps=warps, num_stages=stages,
    )
    return out

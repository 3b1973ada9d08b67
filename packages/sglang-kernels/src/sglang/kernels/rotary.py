"""Rotary position embeddings: the cos/sin table (scaled by `rope_scaling`'s rules) and an
in-place Triton kernel for the neox (rotate halves) and gptj (rotate pairs) layouts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import check_device, interpreting, next_pow2, pdl_args, pdl_enter
from sglang.kernels.kv_store import check_kv_shapes
from sglang.kernels.rope_scaling import rope_angles, rope_frequencies


def rope_inv_freq(
    rotary_dim: int,
    base: float,
    rope_scaling: Mapping[str, Any] | None = None,
    max_position: int | None = None,
) -> torch.Tensor:
    """``[rotary_dim // 2]`` fp32 inverse frequencies ``base ** (-2i / rotary_dim)``, scaled as
    ``rope_scaling`` says (an HF ``rope_scaling`` dict; the rules live in
    `sglang.kernels.rope_scaling`: default, linear, dynamic, yarn, llama3, longrope). For
    longrope these are the short-context frequencies; `rope_frequencies` has the rest."""
    return rope_frequencies(rotary_dim, base, rope_scaling, max_position).inv_freq


def rope_cos_sin_cache(
    head_dim: int,
    rotary_dim: int,
    max_position: int,
    base: float,
    rope_scaling: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[max_position, rotary_dim]`` table: row ``p`` is ``cos(p * inv_freq)`` followed by
    ``sin(p * inv_freq)`` (each ``rotary_dim // 2`` wide). Angles are computed in fp32, then
    cast to ``dtype`` (YaRN/longrope attention factors folded in). ``rotary_dim <= head_dim``; dims past ``rotary_dim`` are not rotated."""
    if rotary_dim > head_dim or rotary_dim % 2:
        raise ValueError(f"rotary_dim={rotary_dim} must be even and <= head_dim={head_dim}")
    freqs = rope_frequencies(rotary_dim, base, rope_scaling, max_position)
    cos, sin = rope_angles(freqs, max_position)
    return torch.cat((cos, sin), dim=-1).to(dtype=dtype, device=device)


@triton.jit
def _rotate_heads(
    base, stride_h, n_heads, idx1, idx2, mask_r, cos, sin, copy_base, copy_stride_h,
    BLOCK_H: tl.constexpr, COPY: tl.constexpr,
):
    """Rotate `n_heads` heads at `base` in place; with COPY, also write the rotated values to
    the same places of the heads at `copy_base` (a KV-cache row)."""
    offs_h = tl.arange(0, BLOCK_H)
    mask = (offs_h < n_heads)[:, None] & mask_r[None, :]
    p1 = base + offs_h[:, None] * stride_h + idx1[None, :]
    p2 = base + offs_h[:, None] * stride_h + idx2[None, :]
    x1 = tl.load(p1, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(p2, mask=mask, other=0.0).to(tl.float32)
    y1 = (x1 * cos[None, :] - x2 * sin[None, :]).to(base.dtype.element_ty)
    y2 = (x2 * cos[None, :] + x1 * sin[None, :]).to(base.dtype.element_ty)
    tl.store(p1, y1, mask=mask)
    tl.store(p2, y2, mask=mask)
    if COPY:
        c = copy_base + offs_h[:, None] * copy_stride_h
        tl.store(c + idx1[None, :], y1.to(copy_base.dtype.element_ty), mask=mask)
        tl.store(c + idx2[None, :], y2.to(copy_base.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    Pos, Q, K, CosSin, V, Loc, KCache, VCache,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_cs,
    stride_vt, stride_vh, stride_kct, stride_kch, stride_vct, stride_vch,
    num_q_heads, num_k_heads,
    HALF: tl.constexpr, IS_NEOX: tl.constexpr,
    BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_R: tl.constexpr,
    STORE_KV: tl.constexpr, USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    token = tl.program_id(0).to(tl.int64)
    pos = tl.load(Pos + token).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    mask_r = offs_r < HALF
    cos = tl.load(CosSin + pos * stride_cs + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    sin = tl.load(CosSin + pos * stride_cs + HALF + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    if IS_NEOX:
        idx1 = offs_r
        idx2 = offs_r + HALF
    else:
        idx1 = 2 * offs_r
        idx2 = 2 * offs_r + 1
    slot = 0
    if STORE_KV:
        slot = tl.load(Loc + token).to(tl.int64)
    _rotate_heads(Q + token * stride_qt, stride_qh, num_q_heads, idx1, idx2, mask_r, cos, sin,
                  Q, 0, BLOCK_HQ, False)
    _rotate_heads(K + token * stride_kt, stride_kh, num_k_heads, idx1, idx2, mask_r, cos, sin,
                  KCache + slot * stride_kct, stride_kch, BLOCK_HK, STORE_KV)
    if STORE_KV:
        offs_h = tl.arange(0, BLOCK_HK)
        offs_d = tl.arange(0, 2 * BLOCK_R)
        mask = (offs_h < num_k_heads)[:, None] & (offs_d < 2 * HALF)[None, :]
        v = tl.load(V + token * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :],
                    mask=mask)
        tl.store(VCache + slot * stride_vct + offs_h[:, None] * stride_vch + offs_d[None, :],
                 v.to(VCache.dtype.element_ty), mask=mask)


def rotary_embedding(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q`` and ``k`` in place by each token's position; returns ``(q, k)``.

    Args:
        positions: ``[num_tokens]`` int32/int64 absolute positions (< the table's rows).
        q: ``[num_tokens, num_heads, head_dim]`` fp32/fp16/bf16, last dim contiguous (views of a
            fused QKV output are fine: they are written in place).
        k: ``[num_tokens, num_kv_heads, head_dim]``, same dtype.
        cos_sin_cache: ``[max_position, rotary_dim]`` from ``rope_cos_sin_cache``; only the
            first ``rotary_dim`` dims of each head rotate.
        is_neox: True rotates the two halves of the rotary dims (HF Llama); False rotates
            adjacent pairs (GPT-J).

    The rotation runs in fp32 and rounds once to ``q``'s dtype.
    """
    _check_rope(positions, q, k, cos_sin_cache)
    _launch_rope(positions, q, k, cos_sin_cache, is_neox, None)
    return q, k


def _check_rope(
    positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos_sin_cache: torch.Tensor
) -> None:
    num_tokens = positions.shape[0]
    if q.shape[0] != num_tokens or k.shape[0] != num_tokens:
        raise ValueError("positions, q and k must have one row per token")
    rotary_dim = cos_sin_cache.shape[-1]
    if rotary_dim > q.shape[-1] or rotary_dim > k.shape[-1] or rotary_dim % 2:
        raise ValueError(f"rotary_dim={rotary_dim} must be even and <= head_dim={q.shape[-1]}")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or cos_sin_cache.stride(-1) != 1:
        raise ValueError("q, k and cos_sin_cache need a contiguous last dim (rotated in place)")
    check_device(positions, q, k, cos_sin_cache)


def rotary_embedding_and_store_kv(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    loc: torch.Tensor,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rotary_embedding` and then `store_kv` of the rotated K and of V, in one launch (one
    kernel fewer per layer in a decode step). Needs the rotation to cover the whole head
    (``rotary_dim == head_dim``). Returns the rotated ``(q, k)``.

    Args:
        positions, q, k, cos_sin_cache, is_neox: as `rotary_embedding`.
        v: ``[num_tokens, num_kv_heads, head_dim]``, last dim contiguous.
        k_buffer, v_buffer, loc: as `store_kv` (one layer's pool, each token's slot).
    """
    _check_rope(positions, q, k, cos_sin_cache)
    if cos_sin_cache.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"rotary_embedding_and_store_kv needs rotary_dim ({cos_sin_cache.shape[-1]}) == "
            f"head_dim ({k.shape[-1]}); use rotary_embedding then store_kv"
        )
    check_kv_shapes(k_buffer, v_buffer, k, v)
    if v.stride(-1) != 1 or loc.shape != positions.shape:
        raise ValueError("v needs a contiguous last dim and loc one slot per token")
    check_device(v, k_buffer, v_buffer, loc)
    _launch_rope(positions, q, k, cos_sin_cache, is_neox, (v, k_buffer, v_buffer, loc))
    return q, k


def _launch_rope(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
    store: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> None:
    num_tokens = positions.shape[0]
    if num_tokens == 0:
        return
    v, kc, vc, loc = store if store is not None else (k, k, k, positions)
    half = cos_sin_cache.shape[-1] // 2
    _rope_kernel[(num_tokens,)](
        positions, q, k, cos_sin_cache, v, loc, kc, vc,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos_sin_cache.stride(0),
        v.stride(0), v.stride(1), kc.stride(0), kc.stride(1), vc.stride(0), vc.stride(1),
        q.shape[1], k.shape[1],
        HALF=half, IS_NEOX=is_neox,
        BLOCK_HQ=next_pow2(q.shape[1]), BLOCK_HK=next_pow2(k.shape[1]), BLOCK_R=next_pow2(half),
        STORE_KV=store is not None, **pdl_args(q),
        num_warps=1 if interpreting() else 4,
    )

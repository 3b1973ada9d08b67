"""The current token's rotary embedding and KV store, done inside decode attention.

A decode step otherwise runs one kernel per layer that rotates q and k and writes the new K/V
into the pool, then the attention kernel. Here every attention program rotates the query rows it
reads, and the program that owns a request's last key (its last split) rotates and stores that
key and value before attending: one launch fewer per layer.

Only valid when no decode row reads another row's new key in the same step (speculative verify
rows do): the store and the reads of one request happen in one program, the other requests'
stores are not waited for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import FP8_DTYPES, check_device
from sglang.kernels.kv_store import check_kv_shapes


@dataclass(frozen=True)
class DecodeRope:
    """What decode attention needs to rotate and store the current token itself.

    Attributes:
        positions: ``[batch]`` int32/int64 position of each request's current token.
        cos_sin: ``[max_position, rotary_dim]`` table of `rope_cos_sin_cache` (cos then sin);
            dims past ``rotary_dim`` are not rotated.
        k, v: ``[batch, num_kv_heads, head_dim]`` the current token's key (not yet rotated) and
            value; views with a contiguous last dim (slices of a fused QKV output) are fine.
        loc: ``[batch]`` int pool slot of each current token (the slot ``req_to_token`` holds
            for its last position).
        is_neox: rotate the two halves of the rotary dims (HF Llama); False rotates adjacent
            pairs (GPT-J).
    """

    positions: torch.Tensor
    cos_sin: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    loc: torch.Tensor
    is_neox: bool = True

    def check(self, q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor) -> None:
        batch, _, head_dim = q.shape
        rotary_dim = self.cos_sin.shape[-1]
        if rotary_dim > head_dim or rotary_dim % 2:
            raise ValueError(f"rotary_dim={rotary_dim} must be even and <= head_dim={head_dim}")
        if self.positions.shape != (batch,) or self.loc.shape != (batch,):
            raise ValueError("positions and loc need one entry per request")
        if self.k.shape[0] != batch:
            raise ValueError(f"k has {self.k.shape[0]} rows for a batch of {batch}")
        check_kv_shapes(k_buffer, v_buffer, self.k, self.v)
        if k_buffer.dtype in FP8_DTYPES:
            raise ValueError("an fp8 KV pool stores through store_kv (it quantizes); "
                             "decode attention stores unscaled values")
        if min(self.k.stride(-1), self.v.stride(-1), self.cos_sin.stride(-1)) != 1:
            raise ValueError("k, v and cos_sin need a contiguous last dim")
        check_device(self.positions, self.cos_sin, self.k, self.v, self.loc)

    def launch_args(self) -> dict[str, object]:
        """The kernel arguments that carry the rotation and the store."""
        return dict(
            Pos=self.positions, CosSin=self.cos_sin, KNew=self.k, VNew=self.v, Loc=self.loc,
            stride_cs=self.cos_sin.stride(0), stride_knt=self.k.stride(0),
            stride_knh=self.k.stride(1), stride_vnt=self.v.stride(0),
            stride_vnh=self.v.stride(1),
            ROPE=True, ROT_HALF=self.cos_sin.shape[-1] // 2, IS_NEOX=self.is_neox,
        )


def no_rope_args(q: torch.Tensor) -> dict[str, object]:
    """Placeholders for the rope arguments of a launch that stores nothing (never read)."""
    return dict(Pos=q, CosSin=q, KNew=q, VNew=q, Loc=q, stride_cs=0, stride_knt=0,
                stride_knh=0, stride_vnt=0, stride_vnh=0, ROPE=False, ROT_HALF=1, IS_NEOX=True)


@triton.jit
def rope_load(rows, offs_d, mask, cos_sin, ROT_HALF: tl.constexpr, IS_NEOX: tl.constexpr):
    """The values at ``rows + offs_d`` (``rows``: each row's first element, broadcast against
    ``offs_d``) rotated by the angles at ``cos_sin`` (one position's row of the table), in
    fp32. Each element reads its rotation partner a second time instead of permuting the
    tile: the same formula as the stand-alone rope kernel, one multiply-add per half."""
    if IS_NEOX:
        first = offs_d < ROT_HALF
        partner = tl.where(first, offs_d + ROT_HALF, offs_d - ROT_HALF)
        freq = tl.where(first, offs_d, offs_d - ROT_HALF)
    else:
        first = offs_d % 2 == 0
        partner = tl.where(first, offs_d + 1, offs_d - 1)
        freq = offs_d // 2
    rotated = offs_d < 2 * ROT_HALF
    x = tl.load(rows + offs_d, mask=mask, other=0.0).to(tl.float32)
    xp = tl.load(rows + partner, mask=mask & rotated, other=0.0).to(tl.float32)
    cos = tl.load(cos_sin + freq, mask=rotated, other=1.0).to(tl.float32)
    sin = tl.load(cos_sin + ROT_HALF + freq, mask=rotated, other=0.0).to(tl.float32)
    return tl.where(first, x * cos - xp * sin, x * cos + xp * sin)


@triton.jit
def store_new_kv(k_new, v_new, k_slot, v_slot, offs_d, mask_d, cos_sin,
                 ROT_HALF: tl.constexpr, IS_NEOX: tl.constexpr):
    """Rotate one KV head's new key and write it and its value at the pool slot; the barrier
    makes both visible to the whole program, which reads them back as its last key."""
    k = rope_load(k_new, offs_d, mask_d, cos_sin, ROT_HALF, IS_NEOX)
    # Rounded to k's dtype first, as the stand-alone kernel stores it.
    k = k.to(k_new.dtype.element_ty)
    tl.store(k_slot + offs_d, k.to(k_slot.dtype.element_ty), mask=mask_d)
    v = tl.load(v_new + offs_d, mask=mask_d)
    tl.store(v_slot + offs_d, v.to(v_slot.dtype.element_ty), mask=mask_d)
    tl.debug_barrier()

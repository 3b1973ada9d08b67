"""Reference attention over the paged KV pool with torch's scaled_dot_product_attention.

This is the CPU path of the engine and the oracle other backends are tested against. Decode is
one padded SDPA call for the whole batch; extend loops over requests, since prefill time is
dominated by the matmuls, not by the Python loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sglang.runtime.attention.base import AttentionBackend, register_backend
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode


@dataclass
class _DecodeMetadata:
    kv_index: torch.Tensor  # [batch, max_seq_len] pool slots; padding points at the scratch slot
    mask: torch.Tensor  # [batch, 1, 1, max_seq_len] bool, True where a key may be attended


@dataclass
class _ExtendRequest:
    start: int  # first of this request's new tokens in the flat token axis
    end: int
    kv_index: torch.Tensor  # [seq_len] pool slots of positions 0..seq_len-1
    mask: torch.Tensor | None  # [extend_len, seq_len] bool; None means plain square causal


@dataclass
class _ExtendMetadata:
    requests: list[_ExtendRequest]


# cuDNN attention builds a graph per new shape, and decode's key length grows every step: tens
# of ms per call. The other CUDA kernels have no per-shape setup.
_CUDA_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _kernel_choice(x: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    return sdpa_kernel(_CUDA_KERNELS) if x.is_cuda else contextlib.nullcontext()


def _lens(batch: ForwardBatch) -> tuple[list[int], list[int]]:
    # Prefer the CPU copies: reading device tensors here would force a sync every step.
    seq = batch.seq_lens_cpu or batch.seq_lens.tolist()
    prefix = batch.prefix_lens_cpu or batch.prefix_lens.tolist()
    return seq, prefix


@register_backend("torch")
class TorchAttentionBackend(AttentionBackend):
    """Paged attention with SDPA; works on any device torch supports.

    `sliding_window`, when set, limits every query to the last `sliding_window` keys (Mistral
    semantics: key j is visible to query i iff i - window < j <= i).
    """

    def __init__(self, sliding_window: int | None = None, **_: object) -> None:
        self.sliding_window = sliding_window

    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode == ForwardMode.DECODE:
            batch.attn_metadata = self._prepare_decode(batch)
        else:
            batch.attn_metadata = self._prepare_extend(batch)

    def _prepare_decode(self, batch: ForwardBatch) -> _DecodeMetadata:
        seq_lens, _ = _lens(batch)
        device = batch.seq_lens.device
        max_len = max(seq_lens)
        rows = batch.req_to_token[batch.req_pool_indices, :max_len]
        cols = torch.arange(max_len, device=device)
        lens = batch.seq_lens.to(device)[:, None]
        valid = cols[None, :] < lens
        if self.sliding_window is not None:
            valid &= cols[None, :] > lens - 1 - self.sliding_window
        # Entries past seq_len may hold stale or unset slots; the scratch slot is always in range.
        kv_index = torch.where(valid, rows, batch.kv_pool.scratch_slot)
        return _DecodeMetadata(kv_index=kv_index, mask=valid[:, None, None, :])

    def _prepare_extend(self, batch: ForwardBatch) -> _ExtendMetadata:
        seq_lens, prefix_lens = _lens(batch)
        device = batch.seq_lens.device
        req_rows = batch.req_pool_indices.tolist()
        requests: list[_ExtendRequest] = []
        start = 0
        for row, seq_len, prefix_len in zip(req_rows, seq_lens, prefix_lens, strict=True):
            extend_len = seq_len - prefix_len
            mask = None
            if prefix_len > 0 or self.sliding_window is not None:
                q_pos = torch.arange(prefix_len, seq_len, device=device)[:, None]
                k_pos = torch.arange(seq_len, device=device)[None, :]
                mask = k_pos <= q_pos
                if self.sliding_window is not None:
                    mask &= k_pos > q_pos - self.sliding_window
            kv_index = batch.req_to_token[row, :seq_len]
            requests.append(_ExtendRequest(start, start + extend_len, kv_index, mask))
            start += extend_len
        return _ExtendMetadata(requests)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        scale: float,
        batch: ForwardBatch,
    ) -> torch.Tensor:
        batch.kv_pool.set_kv(layer_id, batch.out_cache_loc, k, v)
        k_cache, v_cache = batch.kv_pool.get_kv(layer_id)
        meta = batch.attn_metadata
        if isinstance(meta, _DecodeMetadata):
            return self._decode(q, k_cache, v_cache, scale, meta)
        return self._extend(q, k_cache, v_cache, scale, meta)

    def _decode(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        scale: float,
        meta: _DecodeMetadata,
    ) -> torch.Tensor:
        # [batch, kv_heads, max_len, head_dim]
        keys = k_cache[meta.kv_index].transpose(1, 2)
        values = v_cache[meta.kv_index].transpose(1, 2)
        batch, num_heads, head_dim = q.shape
        # One query token per request, so the query heads sharing a KV head can ride in the
        # query-length axis: GQA without repeating K/V, and the mask broadcasts over them.
        q_grouped = q.reshape(batch, keys.shape[1], -1, head_dim).to(keys.dtype)
        with _kernel_choice(q):
            out = F.scaled_dot_product_attention(
                q_grouped, keys, values, attn_mask=meta.mask, scale=scale
            )
        return out.reshape(batch, num_heads, head_dim).to(q.dtype)

    def _extend(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        scale: float,
        meta: _ExtendMetadata,
    ) -> torch.Tensor:
        out = torch.empty_like(q)
        for req in meta.requests:
            if req.end == req.start:
                continue
            # [1, heads, tokens, head_dim]
            q_r = q[req.start : req.end].transpose(0, 1).unsqueeze(0).to(k_cache.dtype)
            k_r = k_cache[req.kv_index].transpose(0, 1).unsqueeze(0)
            v_r = v_cache[req.kv_index].transpose(0, 1).unsqueeze(0)
            with _kernel_choice(q):
                o = F.scaled_dot_product_attention(
                    q_r,
                    k_r,
                    v_r,
                    attn_mask=req.mask,
                    is_causal=req.mask is None,
                    scale=scale,
                    enable_gqa=True,
                )
            out[req.start : req.end] = o.squeeze(0).transpose(0, 1).to(q.dtype)
        return out

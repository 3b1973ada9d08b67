"""Reference attention over the paged KV pool with torch's scaled_dot_product_attention.

This is the CPU path of the engine and the oracle other backends are tested against. Decode is
one padded SDPA call for the whole batch; extend loops over requests, since prefill time is
dominated by the matmuls, not by the Python loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sglang.runtime.attention.base import AttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.cache.kv_quant import dequantize
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode


@dataclass
class _DecodeMetadata:
    kv_index: torch.Tensor  # [batch, max_len] pool slots; padding points at the scratch slot
    mask: torch.Tensor  # [batch, 1, 1, max_len] bool, True where a key may be attended
    # Slots of a prefix every request in the batch shares (same tree nodes), attended once for
    # the whole batch; kv_index/mask then cover only what follows it. None: no shared prefix.
    shared_slots: torch.Tensor | None = None
    # The same batch under other layers' sliding windows (built on first use).
    by_window: dict[int | None, Any] = field(default_factory=dict)


# Below this many shared tokens the extra kernel launches cost more than the saved gathers.
MIN_SHARED_PREFIX = 64


@dataclass
class _ExtendRequest:
    start: int  # first of this request's new tokens in the flat token axis
    end: int
    kv_index: torch.Tensor  # [seq_len] pool slots of positions 0..seq_len-1
    mask: torch.Tensor | None  # [extend_len, seq_len] bool; None means plain square causal


@dataclass
class _ExtendMetadata:
    requests: list[_ExtendRequest]
    by_window: dict[int | None, Any] = field(default_factory=dict)


# cuDNN attention builds a graph per new shape, and decode's key length grows every step: tens
# of ms per call. The other CUDA kernels have no per-shape setup.
_CUDA_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _kernel_choice(x: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    return sdpa_kernel(_CUDA_KERNELS) if x.is_cuda else contextlib.nullcontext()


@dataclass(frozen=True)
class _Cache:
    """One layer's K or V buffer as the attention reads it: an fp8 pool's codes are scaled back
    to `dtype` after each gather (only the gathered rows, never the whole pool)."""

    buf: torch.Tensor
    scale: float | None  # None: the buffer already holds `dtype` values
    dtype: torch.dtype


def _gather(cache: _Cache, index: torch.Tensor) -> torch.Tensor:
    """cache[index] for any index shape; index_select on the flat index is several times faster
    than advanced indexing on CPU."""
    buf = cache.buf
    rows = buf.index_select(0, index.reshape(-1)).view(*index.shape, *buf.shape[1:])
    if cache.scale is None:
        return rows
    return dequantize(rows, cache.scale, cache.dtype)


def _capped_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, cap: float,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Attention with soft-capped scores (SDPA has no hook between the scaling and the
    softmax), all in float32. q [..., q_len, d] against k, v [..., k_len, d] of as many heads;
    mask broadcasts to [..., q_len, k_len], True where a key may be attended."""
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    s = torch.tanh(s / cap) * cap
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v.float()).to(q.dtype)


def _lens(batch: ForwardBatch) -> tuple[list[int], list[int]]:
    # Prefer the CPU copies: reading device tensors here would force a sync every step.
    seq = batch.seq_lens_cpu or batch.seq_lens.tolist()
    prefix = batch.prefix_lens_cpu or batch.prefix_lens.tolist()
    return seq, prefix


class TorchAttentionBackend(AttentionBackend):
    """Paged attention with SDPA; works on any device torch supports.

    `sliding_window`, when set, limits every query to the last `sliding_window` keys (Mistral
    semantics: key j is visible to query i iff i - window < j <= i); a layer may pass its own.
    `reduce_in_fp32` runs scores, softmax and the weighted sum in float32 when the model runs
    in bf16/fp16 (soft-capped attention and the shared-prefix path always do).
    """

    def __init__(
        self, sliding_window: int | None = None, reduce_in_fp32: bool = False, **_: object
    ) -> None:
        self.sliding_window = sliding_window
        self.reduce_in_fp32 = reduce_in_fp32

    def prepare(self, batch: ForwardBatch) -> None:
        batch.attn_metadata = self._build(batch, self.sliding_window)

    def _build(self, batch: ForwardBatch, window: int | None) -> _DecodeMetadata | _ExtendMetadata:
        if batch.mode == ForwardMode.DECODE:
            return self._prepare_decode(batch, window)
        return self._prepare_extend(batch, window)

    def _metadata(
        self, batch: ForwardBatch, window: int | None
    ) -> _DecodeMetadata | _ExtendMetadata:
        """The batch's metadata under `window`: the one `prepare` built for the model-wide
        window, else a variant built once per batch (Gemma alternates two windows)."""
        meta = batch.attn_metadata
        if window is None or window == self.sliding_window:
            return meta  # type: ignore[no-any-return]
        if window not in meta.by_window:
            meta.by_window[window] = self._build(batch, window)
        return meta.by_window[window]  # type: ignore[no-any-return]

    def _prepare_decode(self, batch: ForwardBatch, window: int | None) -> _DecodeMetadata:
        seq_lens, _ = _lens(batch)
        device = batch.seq_lens.device
        max_len = max(seq_lens)
        rows = batch.req_to_token[batch.req_pool_indices, :max_len]
        shared = 0
        if window is None and len(seq_lens) > 1 and min(seq_lens) > MIN_SHARED_PREFIX:
            shared = self._shared_prefix_len(rows[:, : min(seq_lens) - 1])
        shared_slots = None
        if shared >= MIN_SHARED_PREFIX:
            shared_slots = rows[0, :shared]
            rows = rows[:, shared:]
        else:
            shared = 0  # too short to pay off: attend over the whole rows
        cols = torch.arange(shared, max_len, device=device)
        lens = batch.seq_lens.to(device)[:, None]
        valid = cols[None, :] < lens
        if window is not None:
            valid &= cols[None, :] > lens - 1 - window
        # Entries past seq_len may hold stale or unset slots; the scratch slot is always in range.
        kv_index = torch.where(valid, rows, batch.kv_pool.scratch_slot)
        return _DecodeMetadata(kv_index, valid[:, None, None, :], shared_slots)

    @staticmethod
    def _shared_prefix_len(rows: torch.Tensor) -> int:
        """Leading positions whose slots are identical in every row (a cached prefix that all
        requests of the batch locked in the radix tree)."""
        same = (rows == rows[:1]).all(dim=0)
        if bool(same.all()):
            return int(same.numel())
        return int((~same).int().argmax())

    def _prepare_extend(self, batch: ForwardBatch, window: int | None) -> _ExtendMetadata:
        seq_lens, prefix_lens = _lens(batch)
        device = batch.seq_lens.device
        req_rows = batch.req_pool_indices.tolist()
        requests: list[_ExtendRequest] = []
        start = 0
        for row, seq_len, prefix_len in zip(req_rows, seq_lens, prefix_lens, strict=True):
            extend_len = seq_len - prefix_len
            mask = None
            if prefix_len > 0 or window is not None:
                q_pos = torch.arange(prefix_len, seq_len, device=device)[:, None]
                k_pos = torch.arange(seq_len, device=device)[None, :]
                mask = k_pos <= q_pos
                if window is not None:
                    mask &= k_pos > q_pos - window
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
        *,
        sliding_window: int | None = None,
        logit_cap: float = 0.0,
    ) -> torch.Tensor:
        batch.kv_pool.set_kv(layer_id, batch.out_cache_loc, k, v)
        k_cache, v_cache = self._caches(batch.kv_pool, layer_id, q.dtype)
        meta = self._metadata(batch, sliding_window)
        return self._attend(q, k_cache, v_cache, scale, meta, logit_cap)

    @staticmethod
    def _caches(pool: KVPool, layer_id: int, dtype: torch.dtype) -> tuple[_Cache, _Cache]:
        """The layer's K and V as the attention reads them (fp8 codes scaled to `dtype`)."""
        k_buf, v_buf = pool.get_kv(layer_id)
        if pool.quantized:
            k_scale, v_scale = pool.scales(layer_id)
            return _Cache(k_buf, k_scale, dtype), _Cache(v_buf, v_scale, dtype)
        return _Cache(k_buf, None, k_buf.dtype), _Cache(v_buf, None, v_buf.dtype)

    def _compute_dtype(self, cache: _Cache) -> torch.dtype:
        # Only the gathered keys and values are upcast, never the whole pool.
        return torch.float32 if self.reduce_in_fp32 else cache.dtype

    def _attend(
        self,
        q: torch.Tensor,
        k_cache: _Cache,
        v_cache: _Cache,
        scale: float,
        meta: _DecodeMetadata | _ExtendMetadata,
        cap: float,
    ) -> torch.Tensor:
        if isinstance(meta, _DecodeMetadata):
            return self._decode(q, k_cache, v_cache, scale, meta, cap)
        return self._extend(q, k_cache, v_cache, scale, meta, cap)

    def _decode(
        self,
        q: torch.Tensor,
        k_cache: _Cache,
        v_cache: _Cache,
        scale: float,
        meta: _DecodeMetadata,
        cap: float = 0.0,
    ) -> torch.Tensor:
        # [batch, kv_heads, max_len, head_dim]
        cdt = self._compute_dtype(k_cache)
        keys = _gather(k_cache, meta.kv_index).transpose(1, 2).to(cdt)
        values = _gather(v_cache, meta.kv_index).transpose(1, 2).to(cdt)
        batch, num_heads, head_dim = q.shape
        # One query token per request, so the query heads sharing a KV head can ride in the
        # query-length axis: GQA without repeating K/V, and the mask broadcasts over them.
        q_grouped = q.reshape(batch, keys.shape[1], -1, head_dim).to(keys.dtype)
        if meta.shared_slots is not None:
            out = self._decode_cascade(
                q_grouped, keys, values, k_cache, v_cache, scale, meta, cap
            )
            return out.reshape(batch, num_heads, head_dim).to(q.dtype)
        if cap > 0:
            out = _capped_attention(q_grouped, keys, values, scale, cap, meta.mask)
            return out.reshape(batch, num_heads, head_dim).to(q.dtype)
        with _kernel_choice(q):
            out = F.scaled_dot_product_attention(
                q_grouped, keys, values, attn_mask=meta.mask, scale=scale
            )
        return out.reshape(batch, num_heads, head_dim).to(q.dtype)

    @staticmethod
    def _partial(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None,
        cap: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unnormalised attention over one block of keys: (max score, sum of weights, weighted
        values), in float32, so blocks can be merged afterwards."""
        s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
        if cap > 0:
            s = torch.tanh(s / cap) * cap
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        m = s.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).min)
        w = torch.exp(s - m)
        return m, w.sum(dim=-1, keepdim=True), torch.matmul(w, v.float())

    def _decode_cascade(
        self,
        q: torch.Tensor,  # [batch, kv_heads, group, head_dim]
        keys: torch.Tensor,  # [batch, kv_heads, suffix_len, head_dim]
        values: torch.Tensor,
        k_cache: _Cache,
        v_cache: _Cache,
        scale: float,
        meta: _DecodeMetadata,
        cap: float,
    ) -> torch.Tensor:
        """Shared prefix once for the whole batch, then each request's own suffix; merged with
        the log-sum-exp rule. The prefix's K/V are read once instead of once per request."""
        batch, kv_heads, group, head_dim = q.shape
        # [kv_heads, batch * group, head_dim] against [kv_heads, prefix_len, head_dim]
        q_all = q.permute(1, 0, 2, 3).reshape(kv_heads, batch * group, head_dim)
        k_pre = _gather(k_cache, meta.shared_slots).transpose(0, 1)
        v_pre = _gather(v_cache, meta.shared_slots).transpose(0, 1)
        m1, l1, o1 = self._partial(q_all, k_pre, v_pre, scale, None, cap)

        def per_request(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(kv_heads, batch, group, -1).permute(1, 0, 2, 3)

        m1, l1, o1 = per_request(m1), per_request(l1), per_request(o1)
        m2, l2, o2 = self._partial(q, keys, values, scale, meta.mask, cap)
        m = torch.maximum(m1, m2)
        a1, a2 = torch.exp(m1 - m), torch.exp(m2 - m)
        out = (o1 * a1 + o2 * a2) / (l1 * a1 + l2 * a2)
        return out.to(q.dtype)

    def _extend(
        self,
        q: torch.Tensor,
        k_cache: _Cache,
        v_cache: _Cache,
        scale: float,
        meta: _ExtendMetadata,
        cap: float = 0.0,
    ) -> torch.Tensor:
        out = torch.empty_like(q)
        for req in meta.requests:
            if req.end == req.start:
                continue
            # [1, heads, tokens, head_dim]
            cdt = self._compute_dtype(k_cache)
            q_r = q[req.start : req.end].transpose(0, 1).unsqueeze(0).to(cdt)
            k_r = _gather(k_cache, req.kv_index).transpose(0, 1).unsqueeze(0).to(cdt)
            v_r = _gather(v_cache, req.kv_index).transpose(0, 1).unsqueeze(0).to(cdt)
            if cap > 0:
                out[req.start : req.end] = self._extend_capped(q_r, k_r, v_r, scale, cap, req)
                continue
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

    @staticmethod
    def _extend_capped(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, cap: float,
        req: _ExtendRequest,
    ) -> torch.Tensor:
        """One request's soft-capped extend: q [1, heads, tokens, d], k/v [1, kv_heads, seq, d];
        the query heads sharing a KV head ride in the query axis (GQA without repeating K/V)."""
        _, heads, tokens, head_dim = q.shape
        kv_heads, seq_len = k.shape[1], k.shape[2]
        mask = req.mask
        if mask is None:  # square causal
            mask = torch.ones(tokens, seq_len, dtype=torch.bool, device=q.device).tril()
        group = heads // kv_heads
        q_grouped = q.reshape(kv_heads, group * tokens, head_dim)
        out = _capped_attention(q_grouped, k[0], v[0], scale, cap, mask.repeat(group, 1))
        return out.reshape(heads, tokens, head_dim).transpose(0, 1)

"""Attention with the Triton kernels of sglang-kernels (the CUDA path).

Per layer, `forward` stores the new tokens' K/V into the pool and runs extend or decode
attention, both reading keys through `req_to_token`. Decode derives everything from tensor
shapes and device tensors (no host syncs, no host-derived sizes), and its split-KV scratch is
one workspace owned by the backend and reused by every layer, step and captured graph: decode
can be captured in CUDA graphs (`supports_cuda_graph`). Extend reads the CPU copies of the
lengths once per batch, in `prepare`; where torch's FlashAttention-2 can take the batch
(`sglang.kernels.attention.varlen`: fp16/bf16, no fp8 pool) extend runs there, except for layers
with soft-capping or a sliding window, which stay on the Triton kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

import sglang.kernels as kernels
from sglang.runtime.attention.base import AttentionBackend
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode

if TYPE_CHECKING:
    from sglang.kernels.attention.decode_rope import DecodeRope
    from sglang.kernels.attention.decode_workspace import DecodeWorkspace
    from sglang.runtime.layers.rotary import RotaryEmbedding


@dataclass
class _VarlenMetadata:
    cu_seq_q: torch.Tensor  # [batch + 1] int32
    cu_seq_k: torch.Tensor  # [batch + 1] int32
    max_k: int
    # Pool slots of every request's keys, in order; None when no request has a cached prefix
    # (the new tokens' own K/V are then the keys).
    kv_slots: torch.Tensor | None


@dataclass
class _ExtendMetadata:
    extend_start_loc: torch.Tensor  # [batch] device, first new token of each request
    max_extend_len: int
    varlen: _VarlenMetadata | None = None


@dataclass
class _DecodeMetadata:
    num_kv_splits: int


class TritonAttentionBackend(AttentionBackend):
    """`sliding_window` (Mistral semantics: the last `sliding_window` keys, this token's
    included; a layer may pass its own), `reduce_in_fp32` (decode keeps its split partial
    outputs in fp32 instead of the model's dtype; extend always reduces in fp32),
    `num_kv_splits` (fixed split count; default: by batch size, enough to fill the GPU) and
    `fuse_decode_rope` (decode attention rotates and stores the current token itself, one
    kernel fewer per layer; only valid where no decode row reads another row's new key, so not
    with speculative verify rows) are per-model settings."""

    supports_cuda_graph = True

    def __init__(
        self,
        sliding_window: int | None = None,
        reduce_in_fp32: bool = False,
        num_kv_splits: int | None = None,
        use_flash_extend: bool = True,
        fuse_decode_rope: bool = False,
        **_: object,
    ) -> None:
        self.sliding_window = sliding_window
        self.fuse_decode_rope = fuse_decode_rope
        self.use_flash_extend = use_flash_extend
        self.reduce_in_fp32 = reduce_in_fp32
        self.num_kv_splits = num_kv_splits
        self._workspace: DecodeWorkspace | None = None
        # Outgrown workspaces stay alive: graphs captured earlier still point into them.
        self._retired: list[DecodeWorkspace] = []

    def _window(self, layer_window: int | None) -> int:
        window = layer_window or self.sliding_window
        return window if window else -1

    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode == ForwardMode.DECODE:
            splits = self.num_kv_splits or kernels.default_num_kv_splits(
                batch.batch_size, batch.kv_pool.num_kv_heads, batch.seq_lens.device
            )
            batch.attn_metadata = _DecodeMetadata(splits)
            return
        ext = batch.extend_lens
        # The CPU copy avoids a device sync; hand-built batches may lack it.
        max_len = max(batch.extend_lens_cpu) if batch.extend_lens_cpu else int(ext.max())
        batch.attn_metadata = _ExtendMetadata(
            torch.cumsum(ext, 0) - ext, max_len, self._varlen_metadata(batch)
        )

    def _varlen_metadata(self, batch: ForwardBatch) -> _VarlenMetadata | None:
        pool = batch.kv_pool
        if not (self.use_flash_extend and batch.extend_lens_cpu and batch.prefix_lens_cpu
                and kernels.flash_varlen_supported(pool.get_kv(0)[0])):
            return None
        seq_cpu = [p + e for p, e in zip(batch.prefix_lens_cpu, batch.extend_lens_cpu, strict=True)]
        cu_k = kernels.cumulative_lengths(batch.seq_lens)
        slots = None
        if any(batch.prefix_lens_cpu):
            slots = kernels.gather_kv_slots(batch.req_to_token, batch.req_pool_indices,
                                           batch.seq_lens, cu_k, sum(seq_cpu))
        return _VarlenMetadata(kernels.cumulative_lengths(batch.extend_lens), cu_k, max(seq_cpu), slots)

    def reserve_decode_workspace(
        self, max_batch: int, num_heads: int, head_dim: int, num_kv_splits: int,
        device: torch.device, dtype: torch.dtype,
    ) -> DecodeWorkspace:
        """The shared decode scratch, grown (never shrunk) to hold `max_batch` requests cut
        into `num_kv_splits` each.
        Call it before capturing graphs to size it once for the largest batch."""
        reduce_dtype = torch.float32 if self.reduce_in_fp32 else dtype
        ws = self._workspace
        fits = (
            ws is not None
            and ws.num_heads == num_heads
            and ws.head_dim == head_dim
            and ws.o.dtype == reduce_dtype
            and ws.o.device == device
            and ws.fits(max_batch, num_kv_splits)
        )
        if not fits:
            if ws is not None:
                self._retired.append(ws)
            ws = kernels.DecodeWorkspace.allocate(
                max_batch, num_heads, head_dim, num_kv_splits, device, reduce_dtype
            )
            self._workspace = ws
        assert ws is not None
        return ws

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
        k_buf, v_buf = batch.kv_pool.get_kv(layer_id)
        k_scale, v_scale = batch.kv_pool.scales(layer_id)
        kernels.store_kv(k_buf, v_buf, batch.out_cache_loc, k, v, k_scale, v_scale)
        return self._attend(
            q, k, v, k_buf, v_buf, scale, batch, self._window(sliding_window), logit_cap, layer_id
        )

    def forward_with_rope(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        positions: torch.Tensor,
        rotary: RotaryEmbedding,
        layer_id: int,
        scale: float,
        batch: ForwardBatch,
        *,
        sliding_window: int | None = None,
        logit_cap: float = 0.0,
    ) -> torch.Tensor:
        k_buf, v_buf = batch.kv_pool.get_kv(layer_id)
        window = self._window(sliding_window)
        # The fused kernels write K/V unscaled: an fp8 pool stores through store_kv, which
        # quantizes.
        fusable = not batch.kv_pool.quantized
        if (fusable and self.fuse_decode_rope and isinstance(batch.attn_metadata, _DecodeMetadata)
                and kernels.can_launch(q)):
            rope = kernels.DecodeRope(positions, rotary.cos_sin, k, v, batch.out_cache_loc,
                                      rotary.is_neox)
            return self._attend(q, k, v, k_buf, v_buf, scale, batch, window, logit_cap, layer_id,
                                rope)
        if not (fusable and rotary.rotate_and_store_kv(positions, q, k, v, k_buf, v_buf,
                                                       batch.out_cache_loc)):
            return super().forward_with_rope(
                q, k, v, positions, rotary, layer_id, scale, batch,
                sliding_window=sliding_window, logit_cap=logit_cap,
            )
        return self._attend(q, k, v, k_buf, v_buf, scale, batch, window, logit_cap, layer_id)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,  # the new K/V, rotated and in the pool already unless `rope` does it
        v: torch.Tensor,
        k_buf: torch.Tensor,
        v_buf: torch.Tensor,
        scale: float,
        batch: ForwardBatch,
        window: int,
        logit_cap: float,
        layer_id: int,
        rope: DecodeRope | None = None,  # decode only: rotate and store the current token here
    ) -> torch.Tensor:
        meta = batch.attn_metadata
        k_scale, v_scale = batch.kv_pool.scales(layer_id)
        if isinstance(meta, _DecodeMetadata):
            bs, num_heads, head_dim = q.shape
            ws = self.reserve_decode_workspace(
                bs, num_heads, head_dim, meta.num_kv_splits, q.device, q.dtype
            )
            return kernels.decode_attention(
                q, k_buf, v_buf, batch.req_to_token, batch.req_pool_indices, batch.seq_lens,
                sm_scale=scale, num_kv_splits=meta.num_kv_splits,
                reduce_in_fp32=self.reduce_in_fp32, sliding_window=window, logit_cap=logit_cap,
                k_scale=k_scale, v_scale=v_scale, workspace=ws, rope=rope,
            )
        flash = meta.varlen
        if flash is not None and window <= 0 and logit_cap <= 0 and q.dtype == k_buf.dtype:
            if flash.kv_slots is not None:  # a cached prefix: gather each request's keys
                k = k_buf.index_select(0, flash.kv_slots)
                v = v_buf.index_select(0, flash.kv_slots)
            return kernels.varlen_extend_attention(
                q, k, v, flash.cu_seq_q, flash.cu_seq_k, meta.max_extend_len, flash.max_k,
                sm_scale=scale,
            )
        return kernels.extend_attention(
            q, k_buf, v_buf, batch.req_to_token, batch.req_pool_indices, batch.prefix_lens,
            batch.extend_lens, meta.extend_start_loc, sm_scale=scale,
            max_extend_len=meta.max_extend_len, sliding_window=window, logit_cap=logit_cap,
            k_scale=k_scale, v_scale=v_scale,
        )

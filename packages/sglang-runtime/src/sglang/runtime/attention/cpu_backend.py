"""Paged attention on the CPU with the C kernels of sglang-kernels (`paged_attention_cpu`,
`rope_store_kv_cpu`), the default backend there.

The torch backend gathers every request's K/V into a padded [batch, max_len] block per layer and
step (and loops over requests in extend); these kernels read the pool in place through
`req_to_token`, one (token, KV head) at a time, and rotate q/k while writing the new K/V. Where
they do not apply (fp8 or non-fp32 pools, head sizes they do not take, no C compiler, a rotary
they do not know) this backend is the torch backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

import sglang.kernels as kernels
from sglang.runtime.attention.torch_backend import TorchAttentionBackend
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode

if TYPE_CHECKING:
    from sglang.runtime.layers.rotary import RotaryEmbedding

# An extend request with more new tokens than this goes to the torch path: there every query
# row is one SDPA tile against the same keys, which beats the kernel's per-token loop on long
# prompts (measured: benchmarks/cpu_attention_micro.py, docs/benchmarks.md).
MAX_KERNEL_EXTEND = 64


@dataclass
class _KernelMetadata:
    rows: torch.Tensor  # [tokens] int64: each query token's row of req_to_token
    kv_lens: torch.Tensor  # [tokens] int64: keys each token sees (its position + 1)
    # The torch backend's metadata by window, built only if a layer cannot use the kernel.
    fallback: dict[int | None, Any] = field(default_factory=dict)


class CpuAttentionBackend(TorchAttentionBackend):
    """The torch backend with its decode and short extends in C kernels (CPU, float32)."""

    def prepare(self, batch: ForwardBatch) -> None:
        meta = self._kernel_metadata(batch)
        if meta is None:
            super().prepare(batch)
        else:
            batch.attn_metadata = meta

    @staticmethod
    def _kernel_metadata(batch: ForwardBatch) -> _KernelMetadata | None:
        pool = batch.kv_pool
        if (batch.seq_lens.device.type != "cpu" or pool.dtype != torch.float32
                or batch.req_to_token.dtype != torch.int64):
            return None
        if batch.mode == ForwardMode.DECODE:
            return _KernelMetadata(batch.req_pool_indices, batch.seq_lens)
        ext = batch.extend_lens_cpu or batch.extend_lens.tolist()
        if not ext or max(ext) > MAX_KERNEL_EXTEND:
            return None
        prefix = batch.prefix_lens_cpu or batch.prefix_lens.tolist()
        # Token i of a request with `p` cached tokens sees keys [0, p + i + 1).
        kv_lens = torch.cat([torch.arange(p + 1, p + e + 1) for p, e in zip(prefix, ext)])
        rows = torch.repeat_interleave(batch.req_pool_indices, batch.extend_lens)
        return _KernelMetadata(rows, kv_lens)

    def _metadata(self, batch: ForwardBatch, window: int | None) -> Any:
        meta = batch.attn_metadata
        if not isinstance(meta, _KernelMetadata):
            return super()._metadata(batch, window)
        window = self.sliding_window if window is None else window
        if window not in meta.fallback:
            meta.fallback[window] = self._build(batch, window)
        return meta.fallback[window]

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
        pool = batch.kv_pool
        if isinstance(batch.attn_metadata, _KernelMetadata) and not pool.quantized:
            k_buf, v_buf = pool.get_kv(layer_id)
            loc = batch.out_cache_loc
            if rotary.rotate_and_store_kv_cpu(positions, q, k, v, k_buf, v_buf, loc):
                out = self._kernel(q, layer_id, scale, batch, sliding_window, logit_cap)
                if out is not None:
                    return out
                # The pool already holds this layer's new K/V; q is rotated.
                return self._attend_torch(q, layer_id, scale, batch, sliding_window, logit_cap)
        return super().forward_with_rope(
            q, k, v, positions, rotary, layer_id, scale, batch,
            sliding_window=sliding_window, logit_cap=logit_cap,
        )

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
        if not isinstance(batch.attn_metadata, _KernelMetadata):
            return super().forward(q, k, v, layer_id, scale, batch,
                                   sliding_window=sliding_window, logit_cap=logit_cap)
        batch.kv_pool.set_kv(layer_id, batch.out_cache_loc, k, v)
        out = self._kernel(q, layer_id, scale, batch, sliding_window, logit_cap)
        if out is not None:
            return out
        return self._attend_torch(q, layer_id, scale, batch, sliding_window, logit_cap)

    def _kernel(
        self, q: torch.Tensor, layer_id: int, scale: float, batch: ForwardBatch,
        sliding_window: int | None, logit_cap: float,
    ) -> torch.Tensor | None:
        pool = batch.kv_pool
        if pool.quantized:
            return None
        meta: _KernelMetadata = batch.attn_metadata
        k_buf, v_buf = pool.get_kv(layer_id)
        window = sliding_window if sliding_window is not None else self.sliding_window
        return kernels.paged_attention_cpu(  # type: ignore[no-any-return]
            q, k_buf, v_buf, batch.req_to_token, meta.rows, meta.kv_lens, scale,
            window=window, logit_cap=logit_cap,
        )

    def _attend_torch(
        self, q: torch.Tensor, layer_id: int, scale: float, batch: ForwardBatch,
        sliding_window: int | None, logit_cap: float,
    ) -> torch.Tensor:
        """The torch backend's attention over the pool as it stands (new K/V written)."""
        k_cache, v_cache = self._caches(batch.kv_pool, layer_id, q.dtype)
        return self._attend(q, k_cache, v_cache, scale, self._metadata(batch, sliding_window),
                            logit_cap)

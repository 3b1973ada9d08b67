"""Per-batch forward metadata, built once per step and read by every layer.

The model runner builds a `ForwardBatch`, asks the attention backend to derive its own metadata
from it (`backend.prepare`), and installs both as the current forward context. Layers read the
context through `get_forward_context()` instead of having the batch threaded through every call.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sglang.runtime.attention.base import AttentionBackend
    from sglang.runtime.cache.kv_pool import KVPool
    from sglang.runtime.executor.encoder_cache import EncoderCache
    from sglang.runtime.messages import MultimodalItem


class ForwardMode(enum.Enum):
    # EXTEND covers prefill: a cached prefix (possibly empty) followed by new tokens.
    EXTEND = enum.auto()
    DECODE = enum.auto()


@dataclass(frozen=True)
class MultimodalSlice:
    """The part of a multimodal item inside an extend batch: the item's embedding rows
    [first, first + count) go to the batch's token positions [dst, dst + count)."""

    item: MultimodalItem
    dst: int
    first: int
    count: int


@dataclass
class ForwardBatch:
    """Everything a forward pass needs, as flat device tensors.

    Token-major tensors (`input_ids`, `positions`, `out_cache_loc`) have one entry per new token,
    requests laid out one after another. Request-major tensors have one entry per request.
    """

    mode: ForwardMode
    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64, absolute position of each new token
    out_cache_loc: torch.Tensor  # [num_tokens] int64, KV slot each new token's K/V is written to
    req_pool_indices: torch.Tensor  # [batch] int64, row of each request in req_to_token
    seq_lens: torch.Tensor  # [batch] int64, prefix + new tokens
    prefix_lens: torch.Tensor  # [batch] int64, cached tokens before the new ones (0 in DECODE)
    extend_lens: torch.Tensor  # [batch] int64, new tokens per request (1 in DECODE)
    req_to_token: torch.Tensor  # [max_reqs, max_context] int64, slot of every (request, position)
    kv_pool: KVPool
    # CPU copies for Python-side loops (avoid device syncs).
    seq_lens_cpu: list[int] = field(default_factory=list)
    prefix_lens_cpu: list[int] = field(default_factory=list)
    extend_lens_cpu: list[int] = field(default_factory=list)
    # Which token positions' hidden states go to the LM head. None means only the last token of
    # each request (the usual case); a tensor selects token indices (prompt logprobs).
    logits_indices: torch.Tensor | None = None
    # Filled by AttentionBackend.prepare; opaque to everything but the backend.
    attn_metadata: Any = None
    # EXTEND only: the images/videos whose placeholder positions fall in this batch.
    mm_inputs: list[MultimodalSlice] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.seq_lens.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def last_token_indices(self) -> torch.Tensor:
        return torch.cumsum(self.extend_lens, 0) - 1


@dataclass
class ForwardContext:
    batch: ForwardBatch
    attn_backend: AttentionBackend
    # Encoder outputs by content hash, kept across steps (chunked prefill, repeated images).
    encoder_cache: EncoderCache | None = None


_current: ForwardContext | None = None


def get_forward_context() -> ForwardContext:
    if _current is None:
        raise RuntimeError("no forward context: layers must run inside ModelRunner.forward")
    return _current


@contextlib.contextmanager
def forward_context(
    batch: ForwardBatch,
    attn_backend: AttentionBackend,
    encoder_cache: EncoderCache | None = None,
) -> Iterator[ForwardContext]:
    global _current
    prev = _current
    attn_backend.prepare(batch)
    _current = ForwardContext(batch, attn_backend, encoder_cache)
    try:
        yield _current
    finally:
        _current = prev

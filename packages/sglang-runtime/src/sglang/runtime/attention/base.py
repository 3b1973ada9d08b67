"""The attention backend interface and its registry."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sglang.runtime.executor.forward_context import ForwardBatch


class AttentionBackend(abc.ABC):
    """Computes paged attention over the token-level KV pool.

    `prepare` runs once per batch (outside the layers); `forward` runs once per layer: it writes
    the new tokens' K/V into the pool at `batch.out_cache_loc`, then attends each new token to its
    request's cached prefix (read through `req_to_token`) and causally to the new tokens.
    """

    @abc.abstractmethod
    def prepare(self, batch: ForwardBatch) -> None:
        """Derive per-batch metadata and store it in `batch.attn_metadata`."""

    @abc.abstractmethod
    def forward(
        self,
        q: torch.Tensor,  # [num_tokens, num_heads, head_dim]
        k: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
        v: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
        layer_id: int,
        scale: float,
        batch: ForwardBatch,
    ) -> torch.Tensor:  # [num_tokens, num_heads, head_dim]
        ...


_REGISTRY: dict[str, Callable[..., AttentionBackend]] = {}


def register_backend(name: str) -> Callable[[type[AttentionBackend]], type[AttentionBackend]]:
    def wrap(cls: type[AttentionBackend]) -> type[AttentionBackend]:
        _REGISTRY[name] = cls
        return cls

    return wrap


def create_backend(name: str, **kwargs: object) -> AttentionBackend:
    # Import the built-in backends so they register themselves.
    from sglang.runtime.attention import torch_backend  # noqa: F401

    if name not in _REGISTRY:
        raise ValueError(f"unknown attention backend {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)

"""The attention backend interface; backends live in `plugins.ATTENTION_BACKENDS`."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sglang.runtime.config import AUTO_ATTENTION_BACKEND as AUTO
from sglang.runtime.plugins import ATTENTION_BACKENDS

if TYPE_CHECKING:
    from sglang.runtime.executor.forward_context import ForwardBatch
    from sglang.runtime.layers.rotary import RotaryEmbedding


class AttentionBackend(abc.ABC):
    """Computes paged attention over the token-level KV pool.

    `prepare` runs once per batch (outside the layers); `forward` runs once per layer: it writes
    the new tokens' K/V into the pool at `batch.out_cache_loc`, then attends each new token to its
    request's cached prefix (read through `req_to_token`) and causally to the new tokens.
    """

    # True when `prepare` + `forward` of a DECODE batch use only device work whose launch
    # shapes depend on tensor shapes alone (no host syncs, no host-derived sizes): then decode
    # can be captured into CUDA graphs and replayed with new values in the same buffers.
    supports_cuda_graph: bool = False

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
        *,
        sliding_window: int | None = None,
        logit_cap: float = 0.0,
    ) -> torch.Tensor:  # [num_tokens, num_heads, head_dim]
        """`sliding_window` (this layer's; None: the backend's model-wide one) limits each query
        to the last `sliding_window` keys, itself included; `logit_cap` > 0 soft-caps the scaled
        scores (`cap * tanh(s / cap)`) before the softmax (Gemma 2)."""

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
        """Rotate q and k by each token's position, then `forward`. A backend that can rotate
        K while writing it into the pool overrides this (one pass over K instead of two)."""
        q, k = rotary(positions, q, k)
        return self.forward(
            q, k, v, layer_id, scale, batch, sliding_window=sliding_window, logit_cap=logit_cap
        )


def register_backend(name: str) -> Callable[[type[AttentionBackend]], type[AttentionBackend]]:
    """Register a backend class in this process (tests, scripts); a distribution declares an
    entry point in "sglang.attention_backends" instead, which spawned processes find too."""

    def wrap(cls: type[AttentionBackend]) -> type[AttentionBackend]:
        ATTENTION_BACKENDS.register(name, cls)
        return cls

    return wrap


# What "auto" means per device type; other devices get "torch".
AUTO_BACKENDS = {"cuda": "triton", "cpu": "cpu"}


def resolve_backend_name(name: str, device: torch.device) -> str:
    """"auto" is the Triton kernels on CUDA, the C kernels on the CPU and the torch reference
    anywhere else."""
    if name == AUTO:
        return AUTO_BACKENDS.get(device.type, "torch")
    return name


def create_backend(name: str, **kwargs: object) -> AttentionBackend:
    """A backend by registered name (not "auto": resolve it first); the triton backend loads
    triton only when its kernels first run."""
    backend: AttentionBackend = ATTENTION_BACKENDS.get(name)(**kwargs)
    return backend

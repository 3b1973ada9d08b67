"""Attention with each query and key head normalised over head_dim before the rope (Qwen3,
Qwen3-MoE, Gemma 3). One head_dim-wide weight each, shared by all heads, so every
tensor-parallel rank keeps the whole weight."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.layers.norm import RMSNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.models.llama import LlamaAttention


def head_ranges(attn: LlamaAttention) -> tuple[tuple[int, int], tuple[int, int]]:
    """(this rank's first head, heads in all) of the q heads and of the k heads: weights kept
    per head (Command R+, StableLM) are sharded as the heads are."""
    hd = attn.head_dim
    q, k = (attn.qkv_proj.shard_spec("weight", shard) for shard in ("q", "k"))
    assert q is not None and k is not None
    return (q.start // hd, q.full // hd), (k.start // hd, k.full // hd)


class PerHeadQKNormAttention(LlamaAttention):
    # The norm over one head (Gemma 3 uses its (1 + w) RMSNorm).
    norm_cls: ClassVar[type[nn.Module]] = RMSNorm

    def __init__(
        self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
        qkv_bias: bool, **kwargs: Any,
    ) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias, **kwargs)
        self.q_norm = self.norm_cls(self.head_dim, config.rms_norm_eps, dtype)
        self.k_norm = self.norm_cls(self.head_dim, config.rms_norm_eps, dtype)

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Rows of one head each: works on [tokens, heads * head_dim] and on 3-D views alike.
        q = self.q_norm(q.reshape(-1, self.head_dim)).view(q.shape)
        k = self.k_norm(k.reshape(-1, self.head_dim)).view(k.shape)
        return q, k

"""Qwen3 (dense): the Llama architecture with an RMSNorm over each q and k head before RoPE."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from sglang.runtime.layers.norm import RMSNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.models.llama import LlamaAttention
from sglang.runtime.models.qwen2 import Qwen2ForCausalLM


class QKNormAttention(LlamaAttention):
    """Attention whose q and k heads are RMS-normalised (one head_dim-wide weight each, shared
    by all heads, so every tensor-parallel rank keeps the whole weight)."""

    def __init__(
        self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
        qkv_bias: bool, **kwargs: Any,
    ) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias, **kwargs)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps, dtype)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps, dtype)

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_norm(q.reshape(-1, self.head_dim)).view(q.shape)
        k = self.k_norm(k.reshape(-1, self.head_dim)).view(k.shape)
        return q, k


class Qwen3ForCausalLM(Qwen2ForCausalLM):
    # Qwen3 drops Qwen2's q/k/v biases (its `attention_bias` turns them on with o_proj's).
    qkv_bias: ClassVar[bool] = False

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = bool(getattr(config, "attention_bias", False))
        return QKNormAttention(config, layer_id, self.rotary, self.dtype, qkv_bias)

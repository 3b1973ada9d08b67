"""Qwen3 (dense): the Llama architecture with an RMSNorm over each q and k head before RoPE."""

from __future__ import annotations

from typing import Any, ClassVar

from sglang.runtime.models.llama import LlamaAttention
from sglang.runtime.models.qk_norm import PerHeadQKNormAttention
from sglang.runtime.models.qwen2 import Qwen2ForCausalLM


class Qwen3ForCausalLM(Qwen2ForCausalLM):
    # Qwen3 drops Qwen2's q/k/v biases (its `attention_bias` turns them on with o_proj's).
    qkv_bias: ClassVar[bool] = False

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = bool(getattr(config, "attention_bias", False))
        return PerHeadQKNormAttention(config, layer_id, self.rotary, self.dtype, qkv_bias)

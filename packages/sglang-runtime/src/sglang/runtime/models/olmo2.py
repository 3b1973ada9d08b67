"""OLMo 2: post-norm blocks (attention and MLP outputs normalised before each residual add)
and RMS norms over the whole query and key projections (all heads together), before the
rope."""

from __future__ import annotations

from typing import Any

import torch

from sglang.runtime.layers.norm import ShardedRMSNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.models.blocks import PostNormLayer
from sglang.runtime.models.llama import LlamaAttention, LlamaForCausalLM


class Olmo2Attention(LlamaAttention):
    def __init__(
        self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
        qkv_bias: bool,
    ) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias)
        # Each rank normalises its slice of the projection with statistics of the whole one.
        q, k = (self.qkv_proj.shard_spec("weight", shard) for shard in ("q", "k"))
        assert q is not None and k is not None
        self.q_norm = ShardedRMSNorm(q.full, q.start, q.size, config.rms_norm_eps, dtype)
        self.k_norm = ShardedRMSNorm(k.full, k.start, k.size, config.rms_norm_eps, dtype)

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)


class Olmo2ForCausalLM(LlamaForCausalLM):
    decoder_layer = PostNormLayer

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = bool(getattr(config, "attention_bias", False))
        return Olmo2Attention(config, layer_id, self.rotary, self.dtype, qkv_bias)

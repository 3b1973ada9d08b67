"""Command-R (Cohere): parallel attention + MLP block under one bias-free LayerNorm, GPT-J style
(interleaved) rope, logits multiplied by `logit_scale`, a tied head; Command R+ adds per-head
LayerNorms on queries and keys (`use_qk_norm`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.logits import LogitsProcessor
from sglang.runtime.layers.norm import LayerNorm, head_layer_norm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.layers.sharding import ShardSpec
from sglang.runtime.models.blocks import ParallelLayer
from sglang.runtime.models.llama import LlamaAttention, LlamaForCausalLM, head_dim_of
from sglang.runtime.models.qk_norm import head_ranges


class HeadLayerNorm(LayerNorm):
    """Bias-free LayerNorm over each head with a weight row per head ([heads, head_dim]); this
    rank keeps the rows of its heads, [start, start + heads) of `total`."""

    def __init__(
        self, heads: int, head_dim: int, start: int, total: int, eps: float, dtype: torch.dtype
    ) -> None:
        super().__init__(head_dim, eps, dtype)
        self.start, self.total = start, total
        self.weight = nn.Parameter(torch.ones(heads, head_dim, dtype=dtype), requires_grad=False)

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec:
        return ShardSpec(self.weight.data, 0, self.start, self.weight.shape[0], self.total)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, residual: None = None
    ) -> torch.Tensor:
        return head_layer_norm(x, self.weight, self.eps)


class CohereAttention(LlamaAttention):
    def __init__(
        self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
        qkv_bias: bool,
    ) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias)
        hd, eps = self.head_dim, config.layer_norm_eps
        q, k = head_ranges(self)
        self.q_norm = HeadLayerNorm(self.num_heads, hd, *q, eps, dtype)
        self.k_norm = HeadLayerNorm(self.num_kv_heads, hd, *k, eps, dtype)

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)


class CohereForCausalLM(LlamaForCausalLM):
    decoder_layer = ParallelLayer

    def make_rotary(self, config: Any) -> RotaryEmbedding:
        return RotaryEmbedding.from_config(config, head_dim_of(config), is_neox=False)

    def make_norm(self, config: Any) -> nn.Module:
        return LayerNorm(config.hidden_size, config.layer_norm_eps, self.dtype, bias=False)

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        if not getattr(config, "use_qk_norm", False):
            return super().make_attention(config, layer_id)
        bias = bool(getattr(config, "attention_bias", False))
        return CohereAttention(config, layer_id, self.rotary, self.dtype, bias)

    def make_logits(self, config: Any) -> LogitsProcessor:
        return LogitsProcessor(config.vocab_size, scale=float(config.logit_scale))

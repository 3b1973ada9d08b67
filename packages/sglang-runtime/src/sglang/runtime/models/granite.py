"""IBM Granite (3.x dense): Llama with four scalars from the config: token embeddings times
`embedding_multiplier`, each block's output times `residual_multiplier` before the residual
add, attention scores times `attention_multiplier` (instead of head_dim ** -0.5) and logits
divided by `logits_scaling`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.logits import LogitsProcessor
from sglang.runtime.layers.vocab_parallel import VocabParallelEmbedding
from sglang.runtime.loading.source import LazyWeight
from sglang.runtime.models.llama import LlamaAttention, LlamaForCausalLM


class MultipliedEmbedding(VocabParallelEmbedding):
    def __init__(self, vocab: int, hidden: int, dtype: torch.dtype, multiplier: float) -> None:
        super().__init__(vocab, hidden, dtype)
        self.multiplier = multiplier

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * self.multiplier


class GraniteForCausalLM(LlamaForCausalLM):
    def make_embedding(self, config: Any) -> nn.Module:
        return MultipliedEmbedding(config.vocab_size, config.hidden_size, self.dtype,
                                   float(config.embedding_multiplier))

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = bool(getattr(config, "attention_bias", False))
        return LlamaAttention(config, layer_id, self.rotary, self.dtype, qkv_bias,
                              scale=float(config.attention_multiplier))

    def make_logits(self, config: Any) -> LogitsProcessor:
        return LogitsProcessor(config.vocab_size, scale=1.0 / float(config.logits_scaling))

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor | LazyWeight]]) -> None:
        super().load_weights(named_tensors)
        # The residual multiplier scales the two projections that end each block (linear, so
        # folded into their weights once instead of one multiply per block per step).
        m = float(self.config.residual_multiplier)
        with torch.no_grad():
            for layer in self.model.layers:
                for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                    # A quantized projection's weight is linear in its scales.
                    (proj.weight if proj.weight is not None else proj.scales).mul_(m)
                    if proj.bias is not None:
                        proj.bias.mul_(m)

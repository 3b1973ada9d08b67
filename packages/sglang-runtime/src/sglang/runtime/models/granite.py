"""IBM Granite (3.x dense): Llama with four scalars from the config: token embeddings times
`embedding_multiplier`, each block's output times `residual_multiplier` before the residual
add, attention scores times `attention_multiplier` (instead of head_dim ** -0.5) and logits
divided by `logits_scaling`."""

from __future__ import annotations

from typing import Any

import torch

from sglang.runtime.models.config import ModelConfig
from sglang.runtime.models.llama import LlamaForCausalLM


class GraniteForCausalLM(LlamaForCausalLM):
    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(config, dtype)
        c = self.config
        self.model.embed_scale = float(c.embedding_multiplier)
        for layer in self.model.layers:
            layer.residual_scale = float(c.residual_multiplier)
            layer.self_attn.scale = float(c.attention_multiplier)
        self.logits_processor.scale = 1.0 / float(c.logits_scaling)

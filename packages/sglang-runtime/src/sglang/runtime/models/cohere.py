"""Command-R (Cohere): parallel attention + MLP block under one bias-free LayerNorm, GPT-J style
(interleaved) rope, and logits multiplied by `logit_scale`; the head is tied."""

from __future__ import annotations

from typing import Any

from torch import nn

from sglang.runtime.layers.logits import LogitsProcessor
from sglang.runtime.layers.norm import LayerNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.models.blocks import ParallelLayer
from sglang.runtime.models.llama import LlamaForCausalLM, head_dim_of


class CohereForCausalLM(LlamaForCausalLM):
    decoder_layer = ParallelLayer

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        hf = getattr(config, "text_hf", config)
        if getattr(hf, "use_qk_norm", False):
            raise NotImplementedError("Command-R with use_qk_norm=True (Command R+) is not supported")
        super().__init__(config, *args, **kwargs)

    def make_rotary(self, config: Any) -> RotaryEmbedding:
        return RotaryEmbedding.from_config(config, head_dim_of(config), is_neox=False)

    def make_norm(self, config: Any) -> nn.Module:
        return LayerNorm(config.hidden_size, config.layer_norm_eps, self.dtype, bias=False)

    def make_logits(self, config: Any) -> LogitsProcessor:
        return LogitsProcessor(config.vocab_size, scale=float(config.logit_scale))

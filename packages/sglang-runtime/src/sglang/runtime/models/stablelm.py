"""StableLM (StableLM 2, Zephyr): LayerNorms with bias, partial rotary dims (the rope reads
`partial_rotary_factor`), optional q/k/v biases, and the parallel block when
`use_parallel_residual` says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sglang.runtime.layers.norm import LayerNorm
from sglang.runtime.models.blocks import ParallelLayer
from sglang.runtime.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM


class StableLmForCausalLM(LlamaForCausalLM):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        hf = getattr(config, "text_hf", config)
        if getattr(hf, "qk_layernorm", False):
            raise NotImplementedError("StableLM with qk_layernorm=True is not supported")
        super().__init__(config, *args, **kwargs)

    def layer_class(self, config: Any) -> Callable[..., nn.Module]:
        return ParallelLayer if getattr(config, "use_parallel_residual", False) else LlamaDecoderLayer

    def make_norm(self, config: Any) -> nn.Module:
        return LayerNorm(config.hidden_size, config.layer_norm_eps, self.dtype, bias=True)

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = bool(getattr(config, "use_qkv_bias", False))
        return LlamaAttention(config, layer_id, self.rotary, self.dtype, qkv_bias)

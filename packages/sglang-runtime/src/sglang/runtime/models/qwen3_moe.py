"""Qwen3-MoE: attention without biases but with a per-head RMSNorm on q and k before RoPE;
routed experts without a shared one (`norm_topk_prob` as in Qwen2-MoE); dense layers where
`mlp_only_layers` / `decoder_sparse_step` say so."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.layers.moe import SparseMoeBlock
from sglang.runtime.layers.norm import RMSNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.models.llama import (
    LlamaAttention,
    LlamaForCausalLM,
    LlamaMLP,
)
from sglang.runtime.models.qwen2_moe import QWEN_EXPERTS, is_sparse_layer, qwen_router


class QKNormAttention(LlamaAttention):
    """Llama attention whose q and k heads are RMS-normalised (over head_dim) before RoPE."""

    def __init__(self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
                 qkv_bias: bool, **kwargs: Any) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias, **kwargs)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps, dtype)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps, dtype)

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.q_norm(q.reshape(-1, self.head_dim)).reshape(q.shape),
                self.k_norm(k.reshape(-1, self.head_dim)).reshape(k.shape))


class Qwen3MoeForCausalLM(LlamaForCausalLM):
    expert_weights: ClassVar[dict[str, tuple[str, str]] | None] = QWEN_EXPERTS

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        return QKNormAttention(config, layer_id, self.rotary, self.dtype, self.qkv_bias)

    def make_mlp(self, config: Any, layer_id: int) -> nn.Module:
        if is_sparse_layer(config, layer_id):
            return SparseMoeBlock(config.hidden_size, config.num_experts,
                                  config.moe_intermediate_size, qwen_router(config), self.dtype)
        return LlamaMLP(config, self.dtype)

    @staticmethod
    def _sliding_window(config: Any) -> int | None:
        if getattr(config, "use_sliding_window", False):
            raise NotImplementedError("Qwen3-MoE with use_sliding_window=True is not supported")
        return None

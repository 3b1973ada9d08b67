"""Qwen3-MoE: attention without biases but with a per-head RMSNorm on q and k before RoPE;
routed experts without a shared one (`norm_topk_prob` as in Qwen2-MoE); dense layers where
`mlp_only_layers` / `decoder_sparse_step` say so."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from sglang.runtime.layers.moe import SparseMoeBlock
from sglang.runtime.models.llama import LlamaMLP
from sglang.runtime.models.qwen2_moe import QWEN_EXPERTS, is_sparse_layer, qwen_router
from sglang.runtime.models.qwen3 import Qwen3ForCausalLM


class Qwen3MoeForCausalLM(Qwen3ForCausalLM):
    expert_weights: ClassVar[dict[str, tuple[str, str]] | None] = QWEN_EXPERTS

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

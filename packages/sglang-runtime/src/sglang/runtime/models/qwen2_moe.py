"""Qwen2-MoE: Qwen2 attention (q/k/v biases) with sparse MoE layers that add a shared expert
scaled by a sigmoid gate; the router renormalises only with `norm_topk_prob`. Layers listed
in `mlp_only_layers`, or off the `decoder_sparse_step` grid, keep a dense MLP."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.layers.linear import Linear
from sglang.runtime.layers.moe import RouterSpec, SparseMoeBlock
from sglang.runtime.models.llama import LlamaMLP
from sglang.runtime.models.qwen2 import Qwen2ForCausalLM


def is_sparse_layer(config: Any, layer_id: int) -> bool:
    step = getattr(config, "decoder_sparse_step", 1) or 1
    return (
        layer_id not in (getattr(config, "mlp_only_layers", None) or [])
        and config.num_experts > 0
        and (layer_id + 1) % step == 0
    )


def qwen_router(config: Any) -> RouterSpec:
    return RouterSpec(config.num_experts_per_tok, 1.0 if config.norm_topk_prob else None)


class SharedExpertMoeBlock(SparseMoeBlock):
    """Routed experts plus one always-on expert whose output a per-token sigmoid gate scales."""

    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__(config.hidden_size, config.num_experts, config.moe_intermediate_size,
                         qwen_router(config), dtype)
        self.shared_expert = LlamaMLP(
            config, dtype, intermediate_size=config.shared_expert_intermediate_size
        )
        self.shared_expert_gate = Linear(config.hidden_size, 1, False, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return super().forward(x) + shared


# Qwen-MoE checkpoints name each expert's projections like a dense MLP's.
QWEN_EXPERTS: dict[str, tuple[str, str]] = {
    "gate_proj": ("w13", "gate"),
    "up_proj": ("w13", "up"),
    "down_proj": ("w2", "down"),
}


class Qwen2MoeForCausalLM(Qwen2ForCausalLM):
    expert_weights: ClassVar[dict[str, tuple[str, str]] | None] = QWEN_EXPERTS

    def make_mlp(self, config: Any, layer_id: int) -> nn.Module:
        if is_sparse_layer(config, layer_id):
            return SharedExpertMoeBlock(config, self.dtype)
        return LlamaMLP(config, self.dtype)

"""Mixtral: the Mistral decoder with a sparse MoE block (top-2 of 8, weights renormalised to
sum to one) in place of the MLP."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from sglang.runtime.layers.moe import RouterSpec, SparseMoeBlock
from sglang.runtime.models.llama import LlamaForCausalLM


class MixtralForCausalLM(LlamaForCausalLM):
    expert_weights: ClassVar[dict[str, tuple[str, str]] | None] = {
        "w1": ("w13", "gate"),
        "w3": ("w13", "up"),
        "w2": ("w2", "down"),
    }
    renamed_modules: ClassVar[dict[str, str] | None] = {".block_sparse_moe.": ".mlp."}

    def make_mlp(self, config: Any, layer_id: int) -> nn.Module:
        return SparseMoeBlock(
            config.hidden_size, config.num_local_experts, config.intermediate_size,
            RouterSpec(config.num_experts_per_tok, renorm_p=1.0), self.dtype,
        )

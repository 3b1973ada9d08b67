"""Phi-3 / Phi-4 (text): Llama math with q/k/v and gate/up stored fused in the checkpoint
(`qkv_proj`, `gate_up_proj`), partial rotary dims on some sizes, and longrope ("su") scaling
with short/long factors (the rules live in sglang.kernels.rope_scaling)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sglang.runtime.loading.source import LazyWeight
from sglang.runtime.models.llama import LlamaForCausalLM, head_dim_of
from sglang.runtime.models.weight_utils import split_fused


class Phi3ForCausalLM(LlamaForCausalLM):
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor | LazyWeight]]) -> None:
        c, d = self.config, head_dim_of(self.config)
        table = {
            "qkv_proj": [
                ("q_proj", c.num_attention_heads * d),
                ("k_proj", c.num_key_value_heads * d),
                ("v_proj", c.num_key_value_heads * d),
            ],
            "gate_up_proj": [("gate_proj", c.intermediate_size), ("up_proj", c.intermediate_size)],
        }
        super().load_weights(split_fused(named_tensors, table))

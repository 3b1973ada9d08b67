"""DBRX: a pre-norm decoder with bias-free LayerNorms, one fused Wqkv whose output is clipped to
[-clip_qkv, clip_qkv], and a 16-expert MoE FFN (top 4, weights divided by their p-norm) whose
experts come stacked as [E*I, H] matrices (w1 gate, v1 up, w2 down transposed).

The checkpoint's module tree is renamed onto Llama's; Wqkv is split into q/k/v (so tensor
parallelism splits heads as usual) and the expert matrices reshaped to [E, I, H] / [E, H, I]."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.executor.forward_context import get_forward_context
from sglang.runtime.layers.moe import RouterSpec, SparseMoeBlock
from sglang.runtime.layers.norm import LayerNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.loading.source import LazyWeight, materialize
from sglang.runtime.models.llama import (
    LlamaAttention,
    LlamaForCausalLM,
    head_dim_of,
)


class ClippedQKVAttention(LlamaAttention):
    def __init__(self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
                 qkv_bias: bool) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias)
        self.clip = config.attn_config.clip_qkv

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv_proj(x)
        if self.clip is not None:
            qkv = qkv.clamp(-self.clip, self.clip)
        q, k, v = self.qkv_proj.split(qkv)
        ctx = get_forward_context()
        out = ctx.attn_backend.forward_with_rope(
            q.view(-1, self.num_heads, self.head_dim), k.view(-1, self.num_kv_heads, self.head_dim),
            v.view(-1, self.num_kv_heads, self.head_dim), positions, self.rotary_emb,
            self.layer_id, self.scale, ctx.batch,
        )
        return self.o_proj(out.reshape(-1, self.num_heads * self.head_dim))


class DbrxForCausalLM(LlamaForCausalLM):
    expert_weights: ClassVar[dict[str, tuple[str, str]] | None] = {
        "w1": ("w13", "gate"),
        "v1": ("w13", "up"),
        "w2": ("w2", "down"),
    }
    renamed_modules: ClassVar[dict[str, str] | None] = {
        "transformer.blocks.": "model.layers.",
        "transformer.wte.": "model.embed_tokens.",
        "transformer.norm_f.": "model.norm.",
        ".norm_attn_norm.attn.": ".self_attn.",
        ".norm_attn_norm.norm_1.": ".input_layernorm.",
        ".norm_attn_norm.norm_2.": ".post_attention_layernorm.",
        ".out_proj.": ".o_proj.",
        ".ffn.router.layer.": ".mlp.gate.",
        ".ffn.experts.mlp.": ".mlp.experts.",
    }

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        return ClippedQKVAttention(config, layer_id, self.rotary, self.dtype, self.qkv_bias)

    def make_mlp(self, config: Any, layer_id: int) -> nn.Module:
        ffn = config.ffn_config
        router = RouterSpec(ffn.moe_top_k, ffn.moe_normalize_expert_weights)
        return SparseMoeBlock(config.hidden_size, ffn.moe_num_experts, ffn.ffn_hidden_size,
                              router, self.dtype)

    def make_norm(self, config: Any) -> nn.Module:
        return LayerNorm(config.hidden_size, 1e-5, bias=False, dtype=self.dtype)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor | LazyWeight]]) -> None:
        super().load_weights(self._to_llama_layout(named_tensors))

    def _to_llama_layout(
        self, named_tensors: Iterable[tuple[str, torch.Tensor | LazyWeight]]
    ) -> Iterator[tuple[str, torch.Tensor | LazyWeight]]:
        config = self.config
        head_dim = head_dim_of(config)
        kv = config.attn_config.kv_n_heads * head_dim
        ffn = config.ffn_config
        experts = (ffn.moe_num_experts, ffn.ffn_hidden_size, config.hidden_size)
        for name, tensor in named_tensors:
            if name.endswith(".Wqkv.weight"):
                parts = materialize(tensor).split([config.hidden_size, kv, kv])
                for proj, part in zip(("q_proj", "k_proj", "v_proj"), parts, strict=True):
                    yield name.replace(".Wqkv.", f".{proj}."), part
            elif ".ffn.experts.mlp." in name:
                stacked = materialize(tensor).reshape(experts)
                yield name, stacked.transpose(1, 2) if name.endswith(".w2") else stacked
            else:
                yield name, tensor

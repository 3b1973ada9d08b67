"""StableLM (StableLM 2, Zephyr): LayerNorms with bias, partial rotary dims (the rope reads
`partial_rotary_factor`), optional q/k/v biases, the parallel block when
`use_parallel_residual` says so, and per-head q/k LayerNorms when `qk_layernorm` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.norm import LayerNorm, head_layer_norm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.models.blocks import ParallelLayer
from sglang.runtime.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM
from sglang.runtime.models.qk_norm import head_ranges


class _OtherRanksHead(nn.Module):
    """Stands in for a head another tensor-parallel rank normalises: its checkpoint tensors
    are skipped."""

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> None:
        return None


class PerHeadLayerNorm(nn.Module):
    """One bias-free LayerNorm per head (checkpoint names `norms.{head}.weight`); this rank
    applies those of its heads, [start, start + heads) of `total`."""

    def __init__(
        self, heads: int, head_dim: int, start: int, total: int, eps: float, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.start, self.heads, self.head_dim, self.eps = start, heads, head_dim, eps
        self.norms = nn.ModuleList(
            LayerNorm(head_dim, eps, dtype) if start <= h < start + heads else _OtherRanksHead()
            for h in range(total)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.stack([self.norms[self.start + h].weight for h in range(self.heads)])
        return head_layer_norm(x, weight, self.eps)


class StableLmAttention(LlamaAttention):
    def __init__(
        self, config: Any, layer_id: int, rotary: RotaryEmbedding, dtype: torch.dtype,
        qkv_bias: bool,
    ) -> None:
        super().__init__(config, layer_id, rotary, dtype, qkv_bias)
        hd, eps = self.head_dim, config.layer_norm_eps
        q, k = head_ranges(self)
        self.q_layernorm = PerHeadLayerNorm(self.num_heads, hd, *q, eps, dtype)
        self.k_layernorm = PerHeadLayerNorm(self.num_kv_heads, hd, *k, eps, dtype)

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_layernorm(q), self.k_layernorm(k)


class StableLmForCausalLM(LlamaForCausalLM):
    def layer_class(self, config: Any) -> Callable[..., nn.Module]:
        return ParallelLayer if getattr(config, "use_parallel_residual", False) else LlamaDecoderLayer

    def make_norm(self, config: Any) -> nn.Module:
        return LayerNorm(config.hidden_size, config.layer_norm_eps, self.dtype, bias=True)

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = bool(getattr(config, "use_qkv_bias", False))
        cls = StableLmAttention if getattr(config, "qk_layernorm", False) else LlamaAttention
        return cls(config, layer_id, self.rotary, self.dtype, qkv_bias)

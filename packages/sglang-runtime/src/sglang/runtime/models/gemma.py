"""Gemma 1, 2 and 3 (text): Llama's skeleton with Gemma's pieces.

Gemma: embeddings scaled by sqrt(hidden), (1 + weight) RMSNorm, GELU-tanh MLP, tied head.
Gemma 2 adds sandwich norms, query_pre_attn_scalar, attention and final logit soft-capping, and
sliding-window layers alternating with global ones. Gemma 3 adds per-head q/k norms and a rope
per layer type (the local layers' base frequency is lower)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.layers.logits import LogitsProcessor
from sglang.runtime.layers.norm import GemmaRMSNorm
from sglang.runtime.layers.rotary import RotaryEmbedding, rope_parameters
from sglang.runtime.layers.vocab_parallel import VocabParallelEmbedding
from sglang.runtime.models.blocks import SandwichNormLayer
from sglang.runtime.models.llama import LlamaAttention, LlamaForCausalLM, LlamaMLP, head_dim_of
from sglang.runtime.models.qk_norm import PerHeadQKNormAttention

SLIDING, FULL = "sliding_attention", "full_attention"


class ScaledEmbedding(VocabParallelEmbedding):
    """Token embeddings times sqrt(hidden), the factor rounded to the weights' dtype as Gemma
    does."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = super().forward(ids)
        return out * torch.tensor(self.embedding_dim**0.5, dtype=out.dtype)


def layer_types(config: Any, pattern: int) -> list[str]:
    """Each layer's attention type: the config's list, else every `pattern`-th layer global
    (the older configs' `sliding_window_pattern`)."""
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    pattern = int(getattr(config, "sliding_window_pattern", None) or pattern)
    return [SLIDING if (i + 1) % pattern else FULL for i in range(config.num_hidden_layers)]


class GemmaForCausalLM(LlamaForCausalLM):
    # The MLP activation's config key, and the legacy names Gemma meant as GELU-tanh.
    act_key: ClassVar[str] = "hidden_act"

    @staticmethod
    def _sliding_window(config: Any) -> int | None:
        return None  # windows are per layer (Gemma 2/3), never model-wide

    def make_norm(self, config: Any) -> nn.Module:
        return GemmaRMSNorm(config.hidden_size, config.rms_norm_eps, self.dtype)

    def make_embedding(self, config: Any) -> nn.Module:
        return ScaledEmbedding(config.vocab_size, config.hidden_size, self.dtype)

    def make_mlp(self, config: Any, layer_id: int) -> nn.Module:
        act = getattr(config, self.act_key, None) or "gelu_pytorch_tanh"
        return LlamaMLP(config, self.dtype, "gelu_pytorch_tanh" if act == "gelu" else act)


class Gemma2ForCausalLM(GemmaForCausalLM):
    decoder_layer = SandwichNormLayer
    act_key = "hidden_activation"
    # Older Gemma 2 configs name no layer types: every other layer is local.
    window_pattern: ClassVar[int] = 2

    def attention_kwargs(self, config: Any, layer_id: int) -> dict[str, Any]:
        local = layer_types(config, self.window_pattern)[layer_id] == SLIDING
        return dict(
            scale=float(config.query_pre_attn_scalar) ** -0.5,
            sliding_window=config.sliding_window if local else None,
            logit_cap=getattr(config, "attn_logit_softcapping", None),
        )

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        return LlamaAttention(
            config, layer_id, self.rotary, self.dtype, bool(config.attention_bias),
            **self.attention_kwargs(config, layer_id),
        )

    def make_logits(self, config: Any) -> LogitsProcessor:
        cap = getattr(config, "final_logit_softcapping", None)
        return LogitsProcessor(config.vocab_size, soft_cap=cap)


class Gemma3Attention(PerHeadQKNormAttention):
    """Gemma 2's attention with each head's queries and keys RMS-normalised before the rope."""

    norm_cls = GemmaRMSNorm


def gemma3_rope(config: Any, layer_type: str) -> dict[str, Any]:
    """One layer type's rope settings: transformers v5 nests them per type; older configs give
    the global rope plus `rope_local_base_freq` (the local layers are never scaled)."""
    nested = getattr(config, "rope_parameters", None) or {}
    if layer_type in nested:
        return rope_parameters(type("Rope", (), {"rope_parameters": nested[layer_type]})())
    if layer_type == SLIDING:
        theta = float(getattr(config, "rope_local_base_freq", None) or 10000.0)
        return {"rope_type": "default", "rope_theta": theta}
    return rope_parameters(config)


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    window_pattern = 6

    def make_rotary(self, config: Any) -> RotaryEmbedding:
        if getattr(config, "use_bidirectional_attention", False):
            raise NotImplementedError("Gemma 3 with bidirectional attention (embedding models)")
        head_dim, max_pos = head_dim_of(config), config.max_position_embeddings
        self.local_rotary = RotaryEmbedding(head_dim, max_pos, gemma3_rope(config, SLIDING))
        return RotaryEmbedding(head_dim, max_pos, gemma3_rope(config, FULL))

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        kwargs = self.attention_kwargs(config, layer_id)
        rotary = self.rotary if kwargs["sliding_window"] is None else self.local_rotary
        return Gemma3Attention(
            config, layer_id, rotary, self.dtype, bool(config.attention_bias), **kwargs
        )

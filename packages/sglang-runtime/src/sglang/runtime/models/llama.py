"""Llama family (Llama 2/3, Mistral, SmolLM2): pre-norm decoder, GQA, RoPE, SwiGLU MLP.

Tensor parallelism lives in the layers: head counts here are the rank's own (`qkv_proj`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.executor.forward_context import ForwardBatch, get_forward_context
from sglang.runtime.layers.activation import SiluAndMul
from sglang.runtime.layers.linear import GateUpLinear, QKVLinear, RowParallelLinear
from sglang.runtime.layers.logits import LogitsProcessor
from sglang.runtime.layers.norm import RMSNorm
from sglang.runtime.layers.rotary import RotaryEmbedding
from sglang.runtime.layers.vocab_parallel import ParallelLMHead, VocabParallelEmbedding
from sglang.runtime.models.base import KVCacheSpec, MultimodalLM, input_embeddings
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.models.weight_utils import load_named_tensors


def head_dim_of(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class LlamaAttention(nn.Module):
    def __init__(
        self,
        config: Any,
        layer_id: int,
        rotary: RotaryEmbedding,
        dtype: torch.dtype,
        qkv_bias: bool,
    ) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.head_dim = head_dim_of(config)
        self.scale = self.head_dim**-0.5
        o_bias = bool(getattr(config, "attention_bias", False))
        self.qkv_proj = QKVLinear(
            config.hidden_size, self.head_dim, config.num_attention_heads,
            config.num_key_value_heads, qkv_bias, dtype,
        )
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads
        self.o_proj = RowParallelLinear(
            config.num_attention_heads * self.head_dim, config.hidden_size, o_bias, dtype,
            in_range=self.qkv_proj.q_columns,
        )
        self.rotary_emb = rotary  # shared by all layers: one cos/sin table per model

    def qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head q/k normalisation before RoPE: none here (Qwen3, OLMo override it)."""
        return q, k

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        q, k = self.qk_norm(q, k)
        ctx = get_forward_context()
        out = ctx.attn_backend.forward_with_rope(
            q, k, v, positions, self.rotary_emb, self.layer_id, self.scale, ctx.batch
        )
        return self.o_proj(out.reshape(-1, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        bias = bool(getattr(config, "mlp_bias", False))
        self.gate_up_proj = GateUpLinear(config.hidden_size, config.intermediate_size, bias, dtype)
        self.act = SiluAndMul()
        self.down_proj = RowParallelLinear(config.intermediate_size, config.hidden_size, bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    # Multiplies each block's output before the residual add (Granite's residual_multiplier).
    residual_scale: float = 1.0

    def __init__(
        self,
        config: Any,
        layer_id: int,
        rotary: RotaryEmbedding,
        dtype: torch.dtype,
        qkv_bias: bool,
        attention_cls: type[LlamaAttention] = LlamaAttention,
    ) -> None:
        super().__init__()
        eps = config.rms_norm_eps
        self.self_attn = attention_cls(config, layer_id, rotary, dtype, qkv_bias)
        self.mlp = LlamaMLP(config, dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, eps, dtype)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps, dtype)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual, x = x, self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x)
        if self.residual_scale != 1.0:
            x = x * self.residual_scale
        x, residual = self.post_attention_layernorm(x, residual)
        x = self.mlp(x)
        if self.residual_scale != 1.0:
            x = x * self.residual_scale
        return x, residual


class LlamaModel(nn.Module):
    # Multiplies the token embeddings (Granite's embedding_multiplier).
    embed_scale: float = 1.0

    def __init__(
        self,
        config: Any,
        dtype: torch.dtype,
        qkv_bias: bool,
        attention_cls: type[LlamaAttention] = LlamaAttention,
    ) -> None:
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size, dtype)
        rotary = RotaryEmbedding.from_config(config, head_dim_of(config))
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, i, rotary, dtype, qkv_bias, attention_cls)
            for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        input_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`input_embeds` [num_tokens, hidden] replaces the token lookup (multimodal prompts)."""
        x = self.embed_tokens(input_ids) if input_embeds is None else input_embeds
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        residual: torch.Tensor | None = None
        for layer in self.layers:
            x, residual = layer(positions, x, residual)
        x, _ = self.norm(x, residual)
        return x


class LlamaForCausalLM(nn.Module):
    # HF module name -> (fused module, shard). Subclasses reuse it unchanged.
    fused_weights: ClassVar[dict[str, tuple[str, str]]] = {
        "q_proj": ("qkv_proj", "q"),
        "k_proj": ("qkv_proj", "k"),
        "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", "gate"),
        "up_proj": ("gate_up_proj", "up"),
    }
    # Llama's `attention_bias` puts biases on q/k/v/o; Qwen2 has them on q/k/v only.
    qkv_bias: ClassVar[bool] = False
    # The attention block; families with per-head q/k norms subclass LlamaAttention.
    attention_cls: ClassVar[type[LlamaAttention]] = LlamaAttention

    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model_config = config if isinstance(config, ModelConfig) else ModelConfig.from_hf(config)
        # The raw HF config of the language model: family-specific fields (norm eps, rope).
        config = self.config = self.model_config.text_hf
        self.dtype = dtype
        qkv_bias = self.qkv_bias or bool(getattr(config, "attention_bias", False))
        self.model = LlamaModel(config, dtype, qkv_bias, self.attention_cls)
        self.tie_word_embeddings = bool(getattr(config, "tie_word_embeddings", False))
        if self.tie_word_embeddings:
            self.lm_head: nn.Module = self.model.embed_tokens
        else:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, dtype)
        self.logits_processor = LogitsProcessor(config.vocab_size)
        # For whoever builds the attention backend (Mistral v0.1 attends to the last 4096 keys).
        self.sliding_window: int | None = self._sliding_window(config)

    @staticmethod
    def _sliding_window(config: Any) -> int | None:
        return getattr(config, "sliding_window", None)

    def kv_cache_spec(self) -> KVCacheSpec:
        attn = self.model.layers[0].self_attn
        return KVCacheSpec(
            num_layers=len(self.model.layers), num_kv_heads=attn.num_kv_heads,
            head_dim=attn.head_dim, dtype=self.dtype, sliding_window=self.sliding_window,
        )

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        embeds = None
        if batch.mm_inputs:
            if not isinstance(self, MultimodalLM):
                raise ValueError(f"{type(self).__name__} takes no images or videos")
            embeds = input_embeddings(
                batch, self.model.embed_tokens, self, self.model_config.vocab_size
            )
        hidden = self.model(batch.input_ids, batch.positions, embeds)
        return self.logits_processor(hidden, self.lm_head.weight, batch)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        skip = ["rotary_emb.inv_freq"] + (["lm_head."] if self.tie_word_embeddings else [])
        load_named_tensors(self, named_tensors, self.fused_weights, skip)

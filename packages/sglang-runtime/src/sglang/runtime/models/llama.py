"""Llama family (Llama 2/3, Mistral, SmolLM2): pre-norm decoder, GQA, RoPE, SwiGLU MLP.

Tensor parallelism lives in the layers: head counts here are the rank's own (`qkv_proj`).
Other families subclass `LlamaForCausalLM` and override its `make_*` hooks (norm, attention,
MLP, embedding, logits) and `decoder_layer` (block wiring: models/blocks.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from sglang.runtime.executor.forward_context import ForwardBatch, get_forward_context
from sglang.runtime.layers.activation import gated_activation
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
        *,
        scale: float | None = None,
        sliding_window: int | None = None,
        logit_cap: float | None = None,
    ) -> None:
        """`sliding_window` and `logit_cap` are this layer's (Gemma 2/3); the backend applies
        them."""
        super().__init__()
        self.layer_id = layer_id
        self.head_dim = head_dim_of(config)
        self.scale = scale if scale is not None else self.head_dim**-0.5
        self.sliding_window = sliding_window
        self.logit_cap = float(logit_cap or 0.0)
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
        """Hook for families that normalise queries and keys ([tokens, heads * head_dim])."""
        return q, k

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_proj.split(self.qkv_proj(x))
        q, k = self.qk_norm(q, k)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        ctx = get_forward_context()
        out = ctx.attn_backend.forward_with_rope(
            q, k, v, positions, self.rotary_emb, self.layer_id, self.scale, ctx.batch,
            sliding_window=self.sliding_window, logit_cap=self.logit_cap,
        )
        return self.o_proj(out.reshape(-1, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    def __init__(
        self, config: Any, dtype: torch.dtype, act: str | None = None,
        intermediate_size: int | None = None,
    ) -> None:
        super().__init__()
        bias = bool(getattr(config, "mlp_bias", False))
        inter = intermediate_size or config.intermediate_size  # MoE shared experts differ
        self.gate_up_proj = GateUpLinear(config.hidden_size, inter, bias, dtype)
        self.act = gated_activation(act or getattr(config, "hidden_act", None) or "silu")
        self.down_proj = RowParallelLinear(inter, config.hidden_size, bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


NormFactory = Callable[[], nn.Module]


def add_and_norm(
    norm: nn.Module, x: torch.Tensor, residual: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(norm(x + residual), x + residual); the first block has no residual yet (x is it)."""
    if residual is None:
        return norm(x), x
    out: tuple[torch.Tensor, torch.Tensor] = norm(x, residual)
    return out


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block. Layers pass (x, residual) on, the hidden state being their sum, so each
    norm can fuse the residual add that precedes it."""

    def __init__(self, attn: LlamaAttention, mlp: nn.Module, norm: NormFactory) -> None:
        super().__init__()
        self.self_attn = attn
        self.mlp = mlp
        self.input_layernorm = norm()
        self.post_attention_layernorm = norm()

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, residual = add_and_norm(self.input_layernorm, x, residual)
        x = self.self_attn(positions, x)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaModel(nn.Module):
    def __init__(
        self, embed_tokens: nn.Module, layers: Iterable[nn.Module], norm: nn.Module
    ) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        input_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`input_embeds` [num_tokens, hidden] replaces the token lookup (multimodal prompts)."""
        x = self.embed_tokens(input_ids) if input_embeds is None else input_embeds
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
    # Block wiring: the constructor takes (attention, mlp, norm factory).
    decoder_layer: ClassVar[Callable[..., nn.Module]] = LlamaDecoderLayer
    # MoE families: per-expert (or stacked) checkpoint matrices -> stacked expert weights.
    expert_weights: ClassVar[dict[str, tuple[str, str]] | None] = None
    # Checkpoint name substrings -> ours, applied in order (other module trees, e.g. DBRX's).
    renamed_modules: ClassVar[dict[str, str] | None] = None

    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model_config = config if isinstance(config, ModelConfig) else ModelConfig.from_hf(config)
        # The raw HF config of the language model: family-specific fields (norm eps, rope).
        config = self.config = self.model_config.text_hf
        self.dtype = dtype
        self.rotary = self.make_rotary(config)
        self.model = LlamaModel(
            self.make_embedding(config),
            (
                self.layer_class(config)(
                    self.make_attention(config, i), self.make_mlp(config, i),
                    lambda: self.make_norm(config),
                )
                for i in range(config.num_hidden_layers)
            ),
            self.make_norm(config),
        )
        self.tie_word_embeddings = bool(getattr(config, "tie_word_embeddings", False))
        if self.tie_word_embeddings:
            self.lm_head: nn.Module = self.model.embed_tokens
        else:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, dtype)
        self.logits_processor = self.make_logits(config)
        # For whoever builds the attention backend (Mistral v0.1 attends to the last 4096 keys).
        self.sliding_window: int | None = self._sliding_window(config)

    @staticmethod
    def _sliding_window(config: Any) -> int | None:
        return getattr(config, "sliding_window", None)

    # --- family hooks: each builds one piece from the HF config -------------------------------
    def make_rotary(self, config: Any) -> RotaryEmbedding:
        # One cos/sin table shared by every layer.
        return RotaryEmbedding.from_config(config, head_dim_of(config))

    def layer_class(self, config: Any) -> Callable[..., nn.Module]:
        return self.decoder_layer

    def make_norm(self, config: Any) -> nn.Module:
        return RMSNorm(config.hidden_size, config.rms_norm_eps, self.dtype)

    def make_embedding(self, config: Any) -> nn.Module:
        return VocabParallelEmbedding(config.vocab_size, config.hidden_size, self.dtype)

    def make_attention(self, config: Any, layer_id: int) -> LlamaAttention:
        qkv_bias = self.qkv_bias or bool(getattr(config, "attention_bias", False))
        return LlamaAttention(config, layer_id, self.rotary, self.dtype, qkv_bias)

    def make_mlp(self, config: Any, layer_id: int) -> nn.Module:
        return LlamaMLP(config, self.dtype)

    def make_logits(self, config: Any) -> LogitsProcessor:
        return LogitsProcessor(config.vocab_size)

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
        return self.logits_processor(hidden, self.lm_head, batch)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        skip = ["rotary_emb.inv_freq", "rotary_emb.local_inv_freq"] + (
            ["lm_head."] if self.tie_word_embeddings else []
        )
        load_named_tensors(
            self, named_tensors, self.fused_weights, skip, self.expert_weights, self.renamed_modules
        )

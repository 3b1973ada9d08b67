"""What each GGUF architecture needs: its HF config built from `{arch}.*` metadata, its tensor
names, and whether llama.cpp permuted q/k rows. One registry entry per architecture; the
reader and the lazy tensors stay in `gguf_loader`.

Tensors that describe RoPE rather than hold weights (`rope_freqs` of Llama 3.1+, Phi-3's
`rope_factors_long`/`_short`) go into the config's rope parameters and are not loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_MISSING = object()

# GGUF name (blk.N. prefix removed) -> HF name (under model.layers.N.), shared by all.
LAYER_NAMES: dict[str, str] = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def read_field(reader: Any, key: str, default: Any = _MISSING) -> Any:
    """A metadata field of a GGUF reader; KeyError naming it when absent and no default."""
    found = reader.fields.get(key)
    if found is None:
        if default is _MISSING:
            raise KeyError(f"GGUF metadata lacks {key!r}")
        return default
    return found.contents()


class Metadata:
    """The reader's fields under the file's architecture prefix, and its RoPE tensors."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.arch = str(self.field("general.architecture"))
        self.tensor_names = {t.name for t in reader.tensors}

    def field(self, key: str, default: Any = _MISSING) -> Any:
        return read_field(self.reader, key, default)

    def __call__(self, key: str, default: Any = _MISSING) -> Any:
        return self.field(f"{self.arch}.{key}", default)

    def tensor_values(self, name: str) -> list[float] | None:
        for t in self.reader.tensors:
            if t.name == name:
                return [float(v) for v in np.asarray(t.data, np.float32).reshape(-1)]
        return None


@dataclass(frozen=True)
class GGUFArch:
    architecture: str  # the HF class the file loads into
    model_type: str  # transformers' config type
    # Per-layer names that differ from LAYER_NAMES (added or overridden).
    layer_names: Mapping[str, str] = field(default_factory=dict)
    # llama.cpp's convert script interleaves q/k rows for the GPT-J-style rotary of these.
    permuted_qk: bool = False
    # Family fields read from the metadata, added to the common ones.
    extra: Callable[[Metadata], dict[str, Any]] = lambda meta: {}
    # Global tensors read into the config (never loaded as weights).
    config_tensors: frozenset[str] = frozenset()
    # llama.cpp stores Gemma's (1 + w) norm weights with the 1 added: subtracted on load.
    norm_shift: float = 0.0

    def names(self) -> dict[str, str]:
        return {**LAYER_NAMES, **self.layer_names}


def _llama_extra(meta: Metadata) -> dict[str, Any]:
    factors = meta.tensor_values("rope_freqs.weight")
    if factors is None:
        return {}
    # Llama 3.1+: llama.cpp stores the llama3 rule as explicit per-frequency divisors.
    return {"rope_parameters": {"rope_type": "freq_factors", "freq_factors": factors}}


def _phi3_extra(meta: Metadata) -> dict[str, Any]:
    out: dict[str, Any] = {"pad_token_id": meta.field("tokenizer.ggml.padding_token_id", 0)}
    window = meta("attention.sliding_window", None)
    out["sliding_window"] = int(window) if window else None
    long = meta.tensor_values("rope_factors_long.weight")
    short = meta.tensor_values("rope_factors_short.weight")
    if long is not None and short is not None:
        scaling: dict[str, Any] = {"rope_type": "longrope", "long_factor": long,
                                   "short_factor": short}
        attn = meta("rope.scaling.attn_factor", None)
        if attn is not None:
            scaling["attention_factor"] = float(attn)
        out["rope_parameters"] = scaling
        out["original_max_position_embeddings"] = int(meta("rope.scaling.original_context_length"))
    return out


def _gemma2_extra(meta: Metadata) -> dict[str, Any]:
    hidden, heads = int(meta("embedding_length")), int(meta("attention.head_count"))
    head_dim = int(meta("attention.key_length", hidden // heads))
    scale = meta("attention.scale", None)
    if scale is not None:
        scalar = float(scale) ** -2
    elif (meta.arch, int(meta("block_count"))) in _GEMMA_27B:
        scalar = hidden / heads  # llama.cpp's rule for the 27B sizes, which store no scale
    else:
        scalar = head_dim
    out: dict[str, Any] = {
        "query_pre_attn_scalar": scalar,
        "sliding_window": int(meta("attention.sliding_window")),
        "attn_logit_softcapping": meta("attn_logit_softcapping", None),
        "final_logit_softcapping": meta("final_logit_softcapping", None),
    }
    pattern = meta("attention.sliding_window_pattern", None)
    if isinstance(pattern, list):  # per layer: True where the layer attends to a window
        out["layer_types"] = ["sliding_attention" if p else "full_attention" for p in pattern]
    elif pattern is not None:
        out["sliding_window_pattern"] = int(pattern)
    return out


def _gemma3_extra(meta: Metadata) -> dict[str, Any]:
    out = _gemma2_extra(meta)
    # llama.cpp's default for the local layers when the file names no base of their own.
    out["rope_local_base_freq"] = float(meta("rope.freq_base_swa", 10000.0))
    return out


# (architecture, block_count) of the 27B Gemmas, whose query scale isn't 1/sqrt(head_dim).
_GEMMA_27B = {("gemma2", 46), ("gemma3", 62)}
_SANDWICH_NORMS = {
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_QK_NORMS = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}

ARCHES: dict[str, GGUFArch] = {
    "llama": GGUFArch("LlamaForCausalLM", "llama", permuted_qk=True, extra=_llama_extra,
                      config_tensors=frozenset({"rope_freqs.weight"})),
    "qwen2": GGUFArch("Qwen2ForCausalLM", "qwen2"),
    "qwen3": GGUFArch("Qwen3ForCausalLM", "qwen3", layer_names=_QK_NORMS),
    "gemma2": GGUFArch("Gemma2ForCausalLM", "gemma2", layer_names=_SANDWICH_NORMS,
                       extra=_gemma2_extra, norm_shift=1.0),
    "gemma3": GGUFArch("Gemma3ForCausalLM", "gemma3_text",
                       layer_names={**_SANDWICH_NORMS, **_QK_NORMS}, extra=_gemma3_extra,
                       norm_shift=1.0),
    "phi3": GGUFArch("Phi3ForCausalLM", "phi3", layer_names={
        # Fused in the file as in the HF checkpoint; Phi3ForCausalLM splits them.
        "attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"},
        extra=_phi3_extra,
        config_tensors=frozenset({"rope_factors_long.weight", "rope_factors_short.weight"})),
}


def arch_of(meta: Metadata) -> GGUFArch:
    if meta.arch not in ARCHES:
        raise NotImplementedError(
            f"GGUF architecture {meta.arch!r} is not supported "
            f"(supported: {', '.join(sorted(ARCHES))})"
        )
    return ARCHES[meta.arch]


def _rope_scaling(meta: Metadata) -> dict[str, Any]:
    """The `{arch}.rope.scaling.*` keys as an HF rope dict (linear, yarn), if any."""
    kind = str(meta("rope.scaling.type", "none") or "none")
    if kind == "none":
        return {}
    if kind not in ("linear", "yarn"):
        raise NotImplementedError(f"GGUF rope scaling type {kind!r} is not supported")
    out: dict[str, Any] = {"rope_type": kind, "factor": float(meta("rope.scaling.factor"))}
    if kind == "yarn":
        out["original_max_position_embeddings"] = int(
            meta("rope.scaling.original_context_length"))
    return out


def gguf_config(reader: Any) -> Any:
    """The transformers config equivalent to the file's metadata."""
    from transformers import AutoConfig

    meta = Metadata(reader)
    arch = arch_of(meta)
    hidden, heads = int(meta("embedding_length")), int(meta("attention.head_count"))
    head_dim = int(meta("attention.key_length", hidden // heads))
    # `data` indexes the array's items; decoding ~50k token strings just to count them is slow.
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab_size = len(tokens.data) if tokens is not None else int(meta("vocab_size"))
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(meta("rope.freq_base",
                                                                              10000.0))}
    rot_dims = meta("rope.dimension_count", None)
    if rot_dims is not None and int(rot_dims) != head_dim:
        rope["partial_rotary_factor"] = int(rot_dims) / head_dim
    rope.update(_rope_scaling(meta))
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_hidden_layers=int(meta("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(meta("attention.head_count_kv", heads)),
        head_dim=head_dim,
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        max_position_embeddings=int(meta("context_length", 4096)),
        # No separate output matrix means the LM head reuses the embeddings.
        tie_word_embeddings="output.weight" not in meta.tensor_names,
        bos_token_id=meta.field("tokenizer.ggml.bos_token_id", None),
        eos_token_id=meta.field("tokenizer.ggml.eos_token_id", None),
        pad_token_id=meta.field("tokenizer.ggml.padding_token_id", None),
    )
    extra = arch.extra(meta)
    rope.update(extra.pop("rope_parameters", {}))
    kwargs.update(extra)
    local_base = kwargs.pop("rope_local_base_freq", None)
    config = AutoConfig.for_model(arch.model_type, **kwargs)
    # Set after construction: transformers' validation knows no `freq_factors` rule, and
    # Gemma 3's per-layer-type dict is rebuilt from `rope_local_base_freq` by the model.
    config.rope_parameters = rope
    if local_base is not None:
        config.rope_local_base_freq = local_base
    config.architectures = [arch.architecture]
    return config

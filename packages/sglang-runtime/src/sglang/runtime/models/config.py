"""`ModelConfig`: the typed, frozen view of an HF config that the runtime reads (torch-free).

The runtime reads sizes from here, never from the raw HF config; model files keep the raw one
(`hf`) for family-specific fields (rope scaling, norms, biases). Vision-language configs keep the
language model's sizes in a nested `text_config`, which is read when present."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONTEXT_LEN = 4096


def _ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return ()


@dataclass(frozen=True)
class ModelConfig:
    architectures: tuple[str, ...]
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_len: int
    eos_token_ids: tuple[int, ...] = ()
    sliding_window: int | None = None
    tie_word_embeddings: bool = False
    # The raw HF config (PretrainedConfig or anything with its attributes), for model files.
    hf: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_hf(cls, hf_config: Any) -> ModelConfig:
        outer = hf_config
        text = getattr(outer, "text_config", None) or outer

        def get(name: str, default: Any = None) -> Any:
            value = getattr(text, name, None)
            return value if value is not None else getattr(outer, name, default)

        heads = int(get("num_attention_heads"))
        hidden = int(get("hidden_size"))
        return cls(
            # The outer config names the whole model (LlavaForConditionalGeneration, ...).
            architectures=tuple(getattr(outer, "architectures", None) or ()),
            vocab_size=int(get("vocab_size")),
            hidden_size=hidden,
            num_layers=int(get("num_hidden_layers")),
            num_heads=heads,
            num_kv_heads=int(get("num_key_value_heads") or heads),
            head_dim=int(get("head_dim") or hidden // heads),
            context_len=int(get("max_position_embeddings", DEFAULT_CONTEXT_LEN)),
            eos_token_ids=_ids(getattr(outer, "eos_token_id", None)) or _ids(get("eos_token_id")),
            # Qwen2 configs carry a window size that is off unless use_sliding_window says so.
            sliding_window=get("sliding_window") if get("use_sliding_window", True) else None,
            tie_word_embeddings=bool(
                getattr(outer, "tie_word_embeddings", None) or get("tie_word_embeddings", False)
            ),
            hf=hf_config,
        )

    @classmethod
    def from_pretrained(cls, model_path: str) -> ModelConfig:
        """From an HF model folder or hub id, reading only its config (a server's tokenizer
        process; transformers may import torch). GGUF files go through the loader
        (`loading.loader.load_model_config`)."""
        from transformers import AutoConfig

        return cls.from_hf(AutoConfig.from_pretrained(model_path))

    @property
    def text_hf(self) -> Any:
        """The raw config of the language model (the nested text_config, or `hf` itself)."""
        return getattr(self.hf, "text_config", None) or self.hf

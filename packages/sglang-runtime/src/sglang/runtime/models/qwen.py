"""Qwen (1) (`QWenLMHeadModel`, remote-code checkpoints): Llama math under its own names.

Its config.json is a `QWenConfig` that transformers can't read without remote code, so
`adapt_config` (a config adapter) translates its fields to a LlamaConfig: `kv_channels` per
head, `intermediate_size` counting both MLP halves, `rotary_pct` and `rotary_emb_base`,
`layer_norm_epsilon`, `seq_length`. Weights: `transformer.h.N.attn.c_attn` holds q/k/v (with
biases) in one matrix, the MLP computes `c_proj(w1(x) * silu(w2(x)))`.

Qwen's dynamic NTK and log-n query scaling only act past `seq_length`; the context is capped
there, where both are identities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from sglang.runtime.loading.qwen_tokenizer import TIKTOKEN_FILE
from sglang.runtime.loading.source import ConfigAdaptation, LazyWeight
from sglang.runtime.models.llama import LlamaForCausalLM
from sglang.runtime.models.weight_utils import split_fused

Named = tuple[str, "torch.Tensor | LazyWeight"]

# Qwen name piece -> HF Llama name piece (after `transformer.h.N.` -> `model.layers.N.`).
_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r) for p, r in [
        (r"^transformer\.wte\.", "model.embed_tokens."),
        (r"^transformer\.ln_f\.", "model.norm."),
        (r"^transformer\.h\.(\d+)\.", r"model.layers.\1."),
        (r"\.ln_1\.", ".input_layernorm."),
        (r"\.ln_2\.", ".post_attention_layernorm."),
        (r"\.attn\.c_attn\.", ".self_attn.c_attn."),
        (r"\.attn\.c_proj\.", ".self_attn.o_proj."),
        (r"\.mlp\.w1\.", ".mlp.up_proj."),
        (r"\.mlp\.w2\.", ".mlp.gate_proj."),
        (r"\.mlp\.c_proj\.", ".mlp.down_proj."),
    ]
]


def adapt_config(folder: Path, raw: dict[str, Any]) -> ConfigAdaptation:
    """`plugins.CONFIG_ADAPTERS` entry for "QWenLMHeadModel"."""
    from transformers import LlamaConfig

    heads, hidden = int(raw["num_attention_heads"]), int(raw["hidden_size"])
    head_dim = int(raw.get("kv_channels") or hidden // heads)
    if head_dim * heads != hidden:
        # The original code splits c_attn's output in hidden_size-wide thirds.
        raise ValueError(f"Qwen config: kv_channels * heads ({head_dim * heads}) != hidden_size")
    config = LlamaConfig(
        vocab_size=int(raw["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(raw["intermediate_size"]) // 2,
        num_hidden_layers=int(raw["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=head_dim,
        rms_norm_eps=float(raw.get("layer_norm_epsilon", 1e-6)),
        max_position_embeddings=int(raw.get("seq_length") or raw.get("max_position_embeddings")),
        rope_parameters={
            "rope_type": "default",
            "rope_theta": float(raw.get("rotary_emb_base", 10000.0)),
            "partial_rotary_factor": float(raw.get("rotary_pct", 1.0)),
        },
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        eos_token_id=raw.get("eos_token_id") or _eos_from_tokenizer(folder),
        bos_token_id=raw.get("bos_token_id"),
    )
    config.architectures = ["QWenLMHeadModel"]
    return ConfigAdaptation(config=config)


def _eos_from_tokenizer(folder: Path) -> list[int] | None:
    """Qwen's config.json names no EOS; its tokenizer numbers <|endoftext|>, <|im_start|>,
    <|im_end|> right after the BPE ranks. Ending on <|endoftext|> or <|im_end|> covers base
    and chat models."""
    path = Path(folder) / TIKTOKEN_FILE
    if not path.is_file():
        return None
    n = sum(1 for line in path.read_text().splitlines() if line.strip())
    return [n, n + 2]


def _renamed(named_tensors: Iterable[Named]) -> Iterator[Named]:
    for name, tensor in named_tensors:
        for pattern, repl in _RENAMES:
            name = pattern.sub(repl, name)
        yield name, tensor


class QWenLMHeadModel(LlamaForCausalLM):
    qkv_bias: ClassVar[bool] = True  # c_attn has a bias, c_proj none

    def load_weights(self, named_tensors: Iterable[Named]) -> None:
        hidden = self.config.hidden_size
        table = {"c_attn": [("q_proj", hidden), ("k_proj", hidden), ("v_proj", hidden)]}
        super().load_weights(split_fused(_renamed(named_tensors), table))

"""Tiny random embedding models for tests: an HF Llama folder (float32 weights, word-level
tokenizer, optional sentence-transformers pooling files) and its transformers reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tiny_models import save_hf_model, save_word_tokenizer

VOCAB = 64
HIDDEN = 32


def embedding_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=128, tie_word_embeddings=False,
                       architectures=["LlamaForCausalLM"])


def write_st_pooling(folder: Path, mode: str) -> None:
    """sentence-transformers' modules.json and 1_Pooling/config.json selecting `mode`."""
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_lasttoken": mode == "last",
    }))


def save_embedding_model(folder: Path, pooling: str) -> Any:
    """Write the model folder (pooling files except for "last", the default);
    return the transformers reference model."""
    ref = save_hf_model(embedding_config(), folder)
    save_word_tokenizer(VOCAB, folder)
    if pooling != "last":
        write_st_pooling(folder, pooling)
    return ref


def reference_embedding(ref: Any, ids: list[int], pooling: str) -> torch.Tensor:
    """transformers' last_hidden_state pooled (last token, mean or first) and L2-normalised."""
    with torch.no_grad():
        hidden = ref.model(torch.tensor([ids])).last_hidden_state[0]
    v = {"mean": hidden.mean(dim=0), "cls": hidden[0], "last": hidden[-1]}[pooling]
    return torch.nn.functional.normalize(v, dim=-1)

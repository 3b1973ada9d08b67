"""Random-weight HF model folders for tests: config + safetensors + a word-level tokenizer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch


def save_tiny_model(
    config: Any, folder: Path | str, seed: int = 0, with_tokenizer: bool = True
) -> str:
    """Save a transformers model built from `config` with O(1)-scale weights (HF's 0.02-std
    init makes logits so flat that any comparison passes) and, unless with_tokenizer=False,
    a tokenizer over its vocabulary."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
    model.save_pretrained(folder)
    if with_tokenizer:
        save_word_tokenizer(config.vocab_size, folder)
    return str(folder)


def save_word_tokenizer(vocab_size: int, folder: Path | str) -> None:
    """A word-level tokenizer whose words are "t0" .. f"t{vocab_size - 1}" (id = number)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(
        folder
    )


def save_hf_model(config: Any, folder: Path) -> Any:
    """The reference model of `config` with O(1)-scale random weights, norm scales and biases
    included (near 1 and 0), saved to `folder`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for pname, p in ref.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            else:
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in pname
                        else 0.1 * torch.randn_like(p))
    ref.eval().save_pretrained(folder)
    return ref

"""Shared pieces of the Gemma / Command-R / StableLM / OLMo 2 parity tests: random-weight HF
reference models (norm weights and biases randomised too, so (1 + w) norms and biases matter)
saved as complete folders, and the hand-built batches that run our model on them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers


def save_reference(config: Any, folder: Path, seed: int = 0) -> Any:
    """An eval-mode float32 HF model with O(1)-scale weights, saved with a tokenizer."""
    torch.manual_seed(seed)
    ref = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif "norm" in name and "bias" not in name:
                # Gemma's norms scale by (1 + w): both conventions get weights away from zero.
                p.copy_((0.0 if "gemma" in config.model_type else 1.0) + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    ref.save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(config.vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(
        folder
    )
    return ref


def prompts(lens: list[int], vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]


@torch.no_grad()
def ref_logits(ref: Any, ids: list[int]) -> torch.Tensor:
    return ref(torch.tensor([ids])).logits[0].float()


@torch.no_grad()
def ref_greedy(ref: Any, ids: list[int], steps: int) -> tuple[list[int], torch.Tensor]:
    """HF's greedy continuation and the logits each new token was picked from."""
    x = torch.tensor([ids])
    # An explicit mask: else generate takes prompt tokens equal to the pad id for padding.
    out = ref.generate(
        x, attention_mask=torch.ones_like(x), max_new_tokens=steps, min_new_tokens=steps,
        do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0,
    )
    return out.sequences[0, len(ids):].tolist(), torch.cat(out.logits).float()

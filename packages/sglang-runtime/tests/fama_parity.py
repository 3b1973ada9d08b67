"""Shared pieces of the Gemma / Command-R / StableLM / OLMo 2 parity tests: random-weight HF
reference models (norm weights and biases randomised too, so (1 + w) norms and biases matter)
saved as complete folders, and the hand-built batches that run our model on them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import transformers
from batch_helpers import ToyKV
from tokenizers import Tokenizer, models, pre_tokenizers

from sglang.runtime.attention.base import create_backend
from sglang.runtime.executor.model_runner import ModelRunner

ATOL = 1e-4
VOCAB = 160
WINDOW = 8
SHAPE: dict[str, Any] = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
)
GEMMA = dict(SHAPE, head_dim=16)
CONFIGS: dict[str, Any] = {
    "gemma": lambda: transformers.GemmaConfig(**GEMMA),
    "gemma2_window8": lambda: transformers.Gemma2Config(
        **GEMMA, sliding_window=WINDOW, query_pre_attn_scalar=24, attn_logit_softcapping=2.0,
        final_logit_softcapping=6.0,
    ),
    "gemma3_window8": lambda: transformers.Gemma3TextConfig(
        # No soft-capping: Gemma 3 checkpoints have none, and HF's SDPA path would ignore it.
        **GEMMA, sliding_window=WINDOW, query_pre_attn_scalar=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        },
    ),
    "cohere": lambda: transformers.CohereConfig(**SHAPE, logit_scale=0.5),
    "cohere_qknorm": lambda: transformers.CohereConfig(
        **SHAPE, logit_scale=0.5, use_qk_norm=True
    ),
    "stablelm": lambda: transformers.StableLmConfig(
        **SHAPE, partial_rotary_factor=0.25, use_qkv_bias=True
    ),
    "stablelm_parallel_qknorm": lambda: transformers.StableLmConfig(
        **SHAPE, partial_rotary_factor=0.5, use_parallel_residual=True, qk_layernorm=True
    ),
    "olmo2": lambda: transformers.Olmo2Config(**SHAPE),
}
LENS = [5, 17, 1, 30]


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


def runner_for(loaded: Any, backend: str) -> tuple[ToyKV, ModelRunner]:
    kv = ToyKV(loaded.config, max_reqs=4, max_context=64)
    window = getattr(loaded.model, "sliding_window", None)
    return kv, ModelRunner(loaded.model, kv.pool, create_backend(backend, sliding_window=window))


def check_prefill_and_cached_prefix_extend(ref: Any, loaded: Any, backend: str) -> None:
    """Logits of every token: a ragged prefill, then an extend over each request's cached
    prefix (one request joins with nothing cached)."""
    kv, runner = runner_for(loaded, backend)
    ids = prompts(LENS, VOCAB, seed=2)
    cached = [3, 10, 0, 21]
    first = [(r, p[:k]) for r, (p, k) in enumerate(zip(ids, cached, strict=True)) if k]
    logits = runner.forward(kv.extend([r for r, _ in first], [t for _, t in first], True))
    offset = 0
    for _, head in first:
        want = ref_logits(ref, head)
        assert want.abs().max() > 0.5  # the comparison is not trivially close
        torch.testing.assert_close(logits[offset : offset + len(head)], want, atol=ATOL, rtol=0)
        offset += len(head)
    rest = [p[k:] for p, k in zip(ids, cached, strict=True)]
    logits = runner.forward(kv.extend([0, 1, 2, 3], rest, all_logits=True))
    offset = 0
    for p, k in zip(ids, cached, strict=True):
        want = ref_logits(ref, p)[k:]
        torch.testing.assert_close(logits[offset : offset + len(want)], want, atol=ATOL, rtol=0)
        offset += len(want)


def check_greedy(ref: Any, loaded: Any, backend: str, steps: int = 16) -> None:
    """A batch of different lengths decoding greedily together: the same tokens as HF's
    generate and the same logits at every step."""
    kv, runner = runner_for(loaded, backend)
    ids = prompts(LENS, VOCAB, seed=3)
    rows = [0, 1, 2, 3]
    step_logits = [runner.forward(kv.extend(rows, ids))]
    tokens: list[list[int]] = [[] for _ in ids]
    for _ in range(steps):
        picked = step_logits[-1].argmax(-1).tolist()
        for out, t in zip(tokens, picked, strict=True):
            out.append(t)
        step_logits.append(runner.forward(kv.decode(rows, picked)))
    for i, p in enumerate(ids):
        want_tokens, want_logits = ref_greedy(ref, p, steps)
        got = torch.stack([s[i] for s in step_logits[:steps]])
        torch.testing.assert_close(got, want_logits, atol=ATOL, rtol=0)
        assert tokens[i] == want_tokens

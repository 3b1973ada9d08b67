"""Runs of a loaded model the quantization tests compare: logits of a ragged batch over a cached
prefix, and greedy tokens, through the model runner and a hand-built KV pool."""

from __future__ import annotations

from typing import Any

import torch
from batch_helpers import ToyKV, make_runner
from quant_writers import VOCAB

PROMPT = [5, 9, 2, 40, 77, 13]


def logits_with_cached_prefix(loaded: Any, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (5, 17, 1, 30)]
    cached = [3, 10, 0, 21]
    kv = ToyKV(loaded.config, dtype=loaded.model.dtype, device=device)
    runner = make_runner(loaded.model, kv)
    first = [(r, p[:k]) for r, (p, k) in enumerate(zip(prompts, cached, strict=True)) if k]
    runner.forward(kv.extend([r for r, _ in first], [t for _, t in first]))
    rest = [p[k:] for p, k in zip(prompts, cached, strict=True)]
    return runner.forward(kv.extend([0, 1, 2, 3], rest, all_logits=True))


def greedy_tokens(loaded: Any, prompt: list[int], steps: int = 16, device: str = "cpu"
                  ) -> list[int]:
    kv = ToyKV(loaded.config, dtype=loaded.model.dtype, device=device)
    runner = make_runner(loaded.model, kv)
    token = int(runner.forward(kv.extend([0], [prompt]))[0].argmax())
    out = [token]
    for _ in range(steps - 1):
        token = int(runner.forward(kv.decode([0], [token]))[0].argmax())
        out.append(token)
    return out


def assert_same_outputs(quant: Any, ref: Any, atol: float) -> None:
    """A quantized model against the float model holding its dequantized weights: the batch's
    logits within atol, and 16 greedy tokens equal."""
    got, want = logits_with_cached_prefix(quant), logits_with_cached_prefix(ref)
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
    assert greedy_tokens(quant, PROMPT) == greedy_tokens(ref, PROMPT)

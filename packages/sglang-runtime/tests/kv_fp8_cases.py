"""Shared runs for the FP8 KV cache tests: a model's logits through a hand-built batch sequence
(ragged prefill, extend over a cached prefix, decode) with a chosen KV pool dtype and scales."""

from __future__ import annotations

from typing import Any

import torch
from batch_helpers import ToyKV

from sglang.runtime.attention.base import create_backend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.model_runner import ModelRunner


def random_ids(seed: int, lens: list[int], vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]


def run_logits(
    model: Any, config: Any, kv_dtype: torch.dtype | None, backend: str, vocab: int,
    scales: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """Every logit of: a ragged prefill of three requests, an extend of three (one new, two
    over their cached prompts), three decode steps of four. kv_dtype None: the model's."""
    kv = ToyKV(config, max_reqs=4, max_context=64)
    p = kv.pool
    kv.pool = KVPool(
        p.num_slots, p.num_layers, p.num_kv_heads, p.head_dim, kv_dtype or p.dtype, "cpu",
        [scales[0]] * p.num_layers, [scales[1]] * p.num_layers,
    )
    runner = ModelRunner(model, kv.pool, create_backend(backend))
    out = [runner.forward(kv.extend([2, 0, 3], random_ids(1, [5, 19, 2], vocab), all_logits=True))]
    out.append(runner.forward(kv.extend([0, 1, 2], random_ids(2, [4, 9, 1], vocab),
                                        all_logits=True)))
    for step in range(3):
        out.append(runner.forward(kv.decode([3, 0, 1, 2], [7 + step, 1, 2, 3])))
    return torch.cat(out)


def assert_fp8_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """The tolerance of an e4m3 KV cache: 3 mantissa bits store each K/V element within 2^-4 of
    itself (relative); the error passes through every layer's attention and the residual
    stream, so the logits may move by up to 4x that of their range (max |diff| <= 2^-2 of
    max |logit|) while most barely move (mean |diff| <= 2^-4 of max |logit|)."""
    span = want.abs().max()
    diff = (got - want).abs()
    assert span > 1.0  # not trivially close
    assert diff.max() <= span / 4, (diff.max(), span)
    assert diff.mean() <= span / 16, (diff.mean(), span)

"""Gemma 1/2/3, Command-R, StableLM and OLMo 2 against transformers on identical tiny random
weights, on the torch backend and (under TRITON_INTERPRET on CPU) the Triton one: logits
within 1e-4 in float32 on a ragged batch, over a cached prefix, and along 16 greedy tokens.
Prompts run past the 8-token sliding window of the Gemma 2/3 configs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from sglang.runtime.attention.base import create_backend
from sglang.runtime.executor.model_runner import ModelRunner
from sglang.runtime.loading.loader import load_model

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV  # noqa: E402
from fama_parity import prompts, ref_greedy, ref_logits, save_reference  # noqa: E402

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
    "stablelm": lambda: transformers.StableLmConfig(
        **SHAPE, partial_rotary_factor=0.25, use_qkv_bias=True
    ),
    "stablelm_parallel": lambda: transformers.StableLmConfig(
        **SHAPE, partial_rotary_factor=0.5, use_parallel_residual=True
    ),
    "olmo2": lambda: transformers.Olmo2Config(**SHAPE),
}
# The Triton run covers what its kernels do differently: windows, soft-capping, GPT-J rope.
TRITON = {"gemma2_window8", "gemma3_window8", "cohere"}
LENS = [5, 17, 1, 30]
CASES = [(n, "torch") for n in sorted(CONFIGS)] + [(n, "triton") for n in sorted(TRITON)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{b}" for n, b in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name, backend = request.param
    folder = tmp_path_factory.mktemp(f"{name}-{backend}")
    ref = save_reference(CONFIGS[name](), folder)
    return ref, load_model(str(folder), dtype="float32"), backend


def _runner(loaded: Any, backend: str) -> tuple[ToyKV, ModelRunner]:
    kv = ToyKV(loaded.config, max_reqs=4, max_context=64)
    window = getattr(loaded.model, "sliding_window", None)
    return kv, ModelRunner(loaded.model, kv.pool, create_backend(backend, sliding_window=window))


def test_prefill_and_cached_prefix_extend(case: Any) -> None:
    ref, loaded, backend = case
    kv, runner = _runner(loaded, backend)
    ids = prompts(LENS, VOCAB, seed=2)
    cached = [3, 10, 0, 21]  # one request joins the second step with nothing cached
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


def test_greedy_16_tokens(case: Any) -> None:
    ref, loaded, backend = case
    kv, runner = _runner(loaded, backend)
    ids = prompts(LENS, VOCAB, seed=3)
    rows = [0, 1, 2, 3]
    step_logits = [runner.forward(kv.extend(rows, ids))]
    tokens: list[list[int]] = [[] for _ in ids]
    for _ in range(16):
        picked = step_logits[-1].argmax(-1).tolist()
        for out, t in zip(tokens, picked, strict=True):
            out.append(t)
        step_logits.append(runner.forward(kv.decode(rows, picked)))
    for i, p in enumerate(ids):
        want_tokens, want_logits = ref_greedy(ref, p, 16)
        got = torch.stack([s[i] for s in step_logits[:16]])
        torch.testing.assert_close(got, want_logits, atol=ATOL, rtol=0)
        assert tokens[i] == want_tokens

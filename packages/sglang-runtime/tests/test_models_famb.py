"""Issue 18 (famb) families against their references on equal tiny random weights: Qwen3
dense, Phi-3 (fused checkpoint tensors, partial rotary, longrope), Granite (its four
multipliers), Qwen (1) (a remote-code checkpoint; reference written from its modeling math),
Qwen2 with YaRN. The parity tests of test_models_tiny run here on these models, plus 16
greedy tokens per prompt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from sglang.runtime.loading.loader import load_model

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402
from qwen1_reference import save_qwen_reference  # noqa: E402
from test_models_tiny import (  # noqa: E402, F401 - collected here with this file's `pair`
    SHAPE,
    _prompts,
    _save_tokenizer,
    test_decode_steps,
    test_prefill_ragged_batch,
    test_prefix_cached_extend,
)
from tiny_models import save_hf_model  # noqa: E402

PHI3_HEAD = SHAPE["hidden_size"] // SHAPE["num_attention_heads"]
PHI3_ROT = PHI3_HEAD // 2  # partial_rotary_factor 0.5
CONFIGS: dict[str, Any] = {
    "qwen3": lambda: transformers.Qwen3Config(**SHAPE, head_dim=32, tie_word_embeddings=True),
    "phi3_longrope": lambda: transformers.Phi3Config(
        **SHAPE, pad_token_id=0, partial_rotary_factor=0.5, original_max_position_embeddings=64,
        rope_scaling={
            "type": "longrope",
            "short_factor": [1.0 + 0.2 * i for i in range(PHI3_ROT // 2)],
            "long_factor": [2.0 + i for i in range(PHI3_ROT // 2)],
        },
    ),
    "granite": lambda: transformers.GraniteConfig(
        **SHAPE, embedding_multiplier=3.0, residual_multiplier=0.4,
        attention_multiplier=0.09, logits_scaling=2.5,
    ),
    "qwen2_yarn": lambda: transformers.Qwen2Config(
        **SHAPE, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                  "original_max_position_embeddings": 64},
    ),
    "qwen1": None,  # remote-code checkpoint: see qwen1_reference
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "qwen1":
        ref: Any = save_qwen_reference(folder)
    else:
        ref = save_hf_model(CONFIGS[request.param](), folder)
    _save_tokenizer(folder)
    return request.param, ref, load_model(str(folder), dtype="float32")


def test_class_is_the_family(pair: Any) -> None:
    name, _, ours = pair
    want = {"qwen3": "Qwen3ForCausalLM", "phi3_longrope": "Phi3ForCausalLM",
            "granite": "GraniteForCausalLM", "qwen2_yarn": "Qwen2ForCausalLM",
            "qwen1": "QWenLMHeadModel"}[name]
    assert type(ours.model).__name__ == want


@torch.no_grad()
def _ref_greedy(ref: Any, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    for _ in range(n):
        out.append(int(ref(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


def test_greedy_16_tokens(pair: Any) -> None:
    _, ref, ours = pair
    kv = ToyKV(ours.config)
    runner = make_runner(ours.model, kv)
    prompts = _prompts(4, seed=5)
    rows = [3, 0, 2, 1]
    tokens = runner.forward(kv.extend(rows, prompts)).argmax(-1).tolist()
    got = [[t] for t in tokens]
    for _ in range(15):
        tokens = runner.forward(kv.decode(rows, tokens)).argmax(-1).tolist()
        for seq, t in zip(got, tokens, strict=True):
            seq.append(t)
    for ids, seq in zip(prompts, got, strict=True):
        assert seq == _ref_greedy(ref, ids, 16)

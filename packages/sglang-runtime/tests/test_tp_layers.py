"""Tensor-parallel layers and loading: tiny random-weight Llama / Mistral / Qwen2 checkpoints give
the same logits (within 1e-5) split over 2 gloo ranks as in one process, including uneven head
splits, replicated KV heads, a vocabulary that does not divide, tied embeddings, biases and
dummy weights; plus the head-split rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_hf_model  # noqa: E402
from tp_workers import many_model_logits, run_on_ranks  # noqa: E402

from sglang.runtime.layers.sharding import HeadSplit, even_range  # noqa: E402

ATOL = 1e-5
SHAPE: dict[str, Any] = dict(
    vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
)
CONFIGS: dict[str, Any] = {
    "llama": lambda: transformers.LlamaConfig(**SHAPE),
    "llama_bias_untied": lambda: transformers.LlamaConfig(
        **SHAPE, attention_bias=True, mlp_bias=True),
    # 3 KV heads over 2 ranks split 2 + 1 (whole query groups); MQA replicates its KV head.
    "llama_uneven_heads": lambda: transformers.LlamaConfig(
        **{**SHAPE, "num_attention_heads": 6, "num_key_value_heads": 3, "hidden_size": 48,
           "intermediate_size": 90}),
    "llama_mqa_tied": lambda: transformers.LlamaConfig(
        **{**SHAPE, "num_key_value_heads": 1}, tie_word_embeddings=True),
    "mistral_window4": lambda: transformers.MistralConfig(**SHAPE, sliding_window=4),
    # An odd vocabulary: the last rank's slice of embedding and head is padded.
    "qwen2_tied_odd_vocab": lambda: transformers.Qwen2Config(
        **{**SHAPE, "vocab_size": 163}, tie_word_embeddings=True),
}


def _save_tokenizer(folder: Path, vocab: int) -> None:
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(
        folder)


def _checkpoint(name: str, root: Path) -> str:
    config = CONFIGS[name]()
    folder = root / name
    save_hf_model(config, folder)
    _save_tokenizer(folder, config.vocab_size)
    return str(folder)


@pytest.fixture(scope="module")
def logits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    """{case: (tp=1 logits, tp=2 logits)}: every case computed on one pair of gloo ranks."""
    root = tmp_path_factory.mktemp("tp_tiny")
    cases = [(name, _checkpoint(name, root), "auto") for name in CONFIGS]
    dummy = root / "dummy"
    config = transformers.LlamaConfig(**SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(dummy)
    _save_tokenizer(dummy, SHAPE["vocab_size"])
    cases.append(("llama_dummy_weights", str(dummy), "dummy"))
    single = many_model_logits(cases)
    split = run_on_ranks(2, many_model_logits, cases, tmp=root)
    return {name: (single[name], split[name]) for name in single}


@pytest.mark.parametrize("case", [*CONFIGS, "llama_dummy_weights"])
def test_tp2_logits_match_tp1(logits: dict[str, tuple[Any, Any]], case: str) -> None:
    single, split = logits[case]
    assert len(single) == len(split) == 5
    for step, (a, b) in enumerate(zip(single, split, strict=True)):
        assert a.shape == b.shape, (step, a.shape, b.shape)
        assert torch.isfinite(a).all() and a.abs().max() > 0.1  # not trivially equal
        torch.testing.assert_close(b, a, atol=ATOL, rtol=0, msg=f"{case} step {step}")


def test_even_range_covers_everything_once() -> None:
    for total in (0, 1, 7, 96, 1536):
        for parts in (1, 2, 3, 5):
            ranges = [even_range(total, parts, i) for i in range(parts)]
            assert sum(n for _, n in ranges) == total
            assert all(a + n == b for (a, n), (b, _) in zip(ranges, ranges[1:]))
            assert max(n for _, n in ranges) - min(n for _, n in ranges) <= 1


@pytest.mark.parametrize(
    ("heads", "kv", "tp", "expected"),
    [
        # SmolLM2-135M: 9 query heads, 3 KV heads.
        (9, 3, 1, [(9, 3, 0, 0)]),
        (9, 3, 2, [(6, 2, 0, 0), (3, 1, 6, 2)]),
        (9, 3, 3, [(3, 1, 0, 0), (3, 1, 3, 1), (3, 1, 6, 2)]),
        (9, 3, 6, [(2, 1, 0, 0), (1, 1, 2, 0), (2, 1, 3, 1), (1, 1, 5, 1), (2, 1, 6, 2),
                   (1, 1, 8, 2)]),
        (32, 8, 4, [(8, 2, 8 * r, 2 * r) for r in range(4)]),
        (4, 1, 2, [(2, 1, 0, 0), (2, 1, 2, 0)]),
    ],
)
def test_head_split(heads: int, kv: int, tp: int, expected: list[tuple[int, ...]]) -> None:
    got = [HeadSplit.of(heads, kv, r, tp) for r in range(tp)]
    assert [(h.num_heads, h.num_kv_heads, h.q_start, h.kv_start) for h in got] == expected
    # Every query head is on exactly one rank, next to the KV head of its group.
    owned = sorted(q for h in got for q in range(h.q_start, h.q_start + h.num_heads))
    assert owned == list(range(heads))
    group = heads // kv
    for h in got:
        kv_of = {q // group for q in range(h.q_start, h.q_start + h.num_heads)}
        assert kv_of <= set(range(h.kv_start, h.kv_start + h.num_kv_heads))
        assert h.num_heads % h.num_kv_heads == 0  # uniform GQA on the rank


@pytest.mark.parametrize(("heads", "kv", "tp"), [(9, 3, 4), (4, 2, 8), (6, 4, 2)])
def test_head_split_refuses_what_cannot_be_split(heads: int, kv: int, tp: int) -> None:
    with pytest.raises(ValueError, match="num_attention_heads|num_key_value_heads"):
        HeadSplit.of(heads, kv, 0, tp)

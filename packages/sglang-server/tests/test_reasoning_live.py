"""Reasoning on a live server through the official `openai` client: the embedded SmolLM2 served
with a Qwen3-style Jinja template that opens <think> (`--chat-template x.jinja`) and
`--reasoning-parser qwen3`. The template puts the output inside the reasoning; `enable_thinking`
in chat_template_kwargs closes the block in the prompt instead. Also the grammar staying off the
reasoning, assistant prefill (continue_final_message) and POST /separate_reasoning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from live_server import LiveServer, launch
from reasoning_templates import OPENS_THINK

from sglang.protocol.reasoning import reasoning_format, split_reasoning

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 24}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
          "required": ["city"], "additionalProperties": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    template = Path(tmp_path_factory.mktemp("reasoning")) / "opens_think.jinja"
    template.write_text(OPENS_THINK)
    s = launch("--chat-template", str(template), "--reasoning-parser", "qwen3",
               "--max-total-tokens", "8192", "--context-length", "1024")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                       timeout=180) as c:
        yield c


def _chat(client: openai.OpenAI, messages: list[dict], **kw: Any) -> Any:
    extra = {k: kw.pop(k) for k in list(kw) if k in (
        "chat_template_kwargs", "separate_reasoning", "stream_reasoning",
        "continue_final_message", "add_generation_prompt")}
    return client.chat.completions.create(model="m", messages=messages,  # type: ignore[arg-type]
                                          extra_body=extra, **{**GREEDY, **kw})


def _raw(client: openai.OpenAI, messages: list[dict], **kw: Any) -> str:
    text = _chat(client, messages, separate_reasoning=False, **kw).choices[0].message.content
    assert isinstance(text, str)
    return text


def test_output_inside_the_opened_block_is_reasoning(client: openai.OpenAI) -> None:
    raw = _raw(client, QUESTION)
    message = _chat(client, QUESTION).choices[0].message
    reasoning = (message.model_extra or {}).get("reasoning_content")
    want = split_reasoning(raw, reasoning_format("qwen3"), in_reasoning=True)
    assert (reasoning, message.content) == want
    assert reasoning and raw.strip().startswith(reasoning[:10])

    chunks = list(_chat(client, QUESTION, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    streamed = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert streamed == reasoning
    assert "".join(d.content or "" for d in deltas) == message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_enable_thinking_false_is_all_content(client: openai.OpenAI) -> None:
    message = _chat(client, QUESTION, **NO_THINKING).choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") is None
    assert message.content and message.content == _raw(client, QUESTION, **NO_THINKING)


def test_response_format_applies_after_the_reasoning(client: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
    # Thinking off: the prompt closed the block, the grammar holds from the first token.
    answer = _chat(client, QUESTION, response_format=fmt, max_tokens=48, **NO_THINKING)
    jsonschema.validate(json.loads(answer.choices[0].message.content), SCHEMA)
    # Thinking on: the model never closes its block, so nothing of it is constrained: the raw
    # text is the free one, token for token.
    assert _raw(client, QUESTION, response_format=fmt) == _raw(client, QUESTION)


def test_continue_final_message_prefills_the_answer(client: openai.OpenAI,
                                                    server: LiveServer) -> None:
    from sglang.runtime.loading.source import load_tokenizer

    with server.client() as c:
        tokenizer = load_tokenizer(c.get("/get_model_info").json()["tokenizer_path"])
    tokenizer.chat_template = OPENS_THINK
    messages = [*QUESTION, {"role": "assistant", "content": "The capital of France is"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False,
                                           add_generation_prompt=False,
                                           continue_final_message=True)
    assert prompt.endswith("<|im_start|>assistant\nThe capital of France is")
    chat = _chat(client, messages, continue_final_message=True, add_generation_prompt=False,
                 max_tokens=8)
    completion = client.completions.create(model="m", prompt=prompt, temperature=0, max_tokens=8)
    assert chat.choices[0].message.content == completion.choices[0].text  # " Paris."
    assert chat.usage.prompt_tokens == completion.usage.prompt_tokens

    with pytest.raises(openai.BadRequestError, match="add_generation_prompt"):
        _chat(client, messages, continue_final_message=True)


def test_native_separate_reasoning(server: LiveServer) -> None:
    text = "<think>\nParis, surely.\n</think>\n\nParis."
    with server.client() as c:
        r = c.post("/separate_reasoning", json={"text": text})
        assert r.json() == {"text": "Paris.", "reasoning_text": "Paris, surely."}
        r = c.post("/separate_reasoning", json={"text": "a</think>b",
                                                "reasoning_parser": "deepseek-r1"})
        assert r.json() == {"text": "b", "reasoning_text": "a"}
        r = c.post("/separate_reasoning", json={"text": "x", "reasoning_parser": "nope"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning_parser"

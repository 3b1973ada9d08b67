"""Tool calling on the embedded SmolLM2. Its own template renders no tools (test_openai_live
checks the 400); with our built-in `--chat-template chatml` the tools, the call and the tool
result are written into ChatML turns in the hermes format, so the real model runs a two-turn
tool conversation through the official `openai` client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import openai
import pytest
from live_server import LiveServer, launch, wait_idle
from tool_models import SCHEMAS, TOOLS

from sglang.server.chat_templates import get_chat_template
from sglang.server.openai.tool_prompts import builtin_messages


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    srv = launch("--chat-template", "chatml", "--max-total-tokens", "8192",
                 "--context-length", "2048")
    yield srv
    srv.stop()


def _client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=180)


@pytest.mark.parametrize("stream", [False, True])
def test_two_turns_through_the_builtin_template(server: LiveServer, stream: bool) -> None:
    messages: list[dict] = [{"role": "user", "content": "What's the weather in Lima?"}]
    with _client(server) as client:
        first = client.chat.completions.create(
            model="m", messages=messages, tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False, max_tokens=64, temperature=0, stream=stream)
        if stream:
            chunks = list(first)
            calls = [tc for ch in chunks for c in ch.choices for tc in c.delta.tool_calls or []]
            (head, *rest) = calls
            name, args = head.function.name, "".join(tc.function.arguments for tc in calls)
            call_id = head.id
            assert all(tc.index == 0 and tc.id is None for tc in rest)
            assert chunks[-1].choices[0].finish_reason == "tool_calls"
        else:
            (call,) = first.choices[0].message.tool_calls
            name, args, call_id = call.function.name, call.function.arguments, call.id
            assert first.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(args), SCHEMAS[name])
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": call_id, "type": "function", "function": {"name": name, "arguments": args},
            }]},
            {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 24 C."},
        ]
        final = client.chat.completions.create(model="m", messages=messages, tools=TOOLS,
                                               max_tokens=24, temperature=0)
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls
    # The prompt is the built-in template over the tool-aware turns.
    expect = get_chat_template("chatml").render(builtin_messages("chatml", [
        messages[0], {**messages[1], "tool_calls": [
            {**messages[1]["tool_calls"][0], "function": {"name": name,
                                                         "arguments": json.loads(args)}}]},
        messages[2]], [{"type": "function", "function": t["function"]} for t in TOOLS]))
    assert "<tool_response>\nSunny, 24 C.\n</tool_response>" in expect
    with server.client() as c:
        info = c.get("/get_model_info").json()
    from sglang.runtime.loading.source import load_tokenizer

    tokenizer = load_tokenizer(info["tokenizer_path"])
    assert final.usage.prompt_tokens == len(tokenizer.encode(expect))
    wait_idle(server)

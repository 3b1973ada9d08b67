"""Tool calling through the official `openai` client against a live server: a tiny random Llama
with SmolLM2's tokenizer and a Qwen2-style tools template (SmolLM2-Instruct's own template does
not render tools). Random weights say nothing about when to call a tool, so calls come from
`tool_choice` ("required", a named function: the grammar backend) or, for `auto`, from an SGLang
`regex` that makes the model write the hermes format the server then parses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hypothesis
import jsonschema
import openai
import pytest
from hypothesis import strategies as st
from live_server import LiveServer, wait_idle
from tool_models import SCHEMAS, TOOLS, WEATHER

QUESTIONS = ["What's the weather in Paris?", "Time in Berlin?", "Will it rain in Oslo?",
             "Weather and time for Lima please."]
AUTO_CALL = (r'Checking\.\n<tool_call>\n\{"name": "get_weather", "arguments": '
             r'\{"city": "(Paris|Oslo)", "unit": "celsius", "days": [1-3]\}\}\n</tool_call>')


@pytest.fixture(scope="module")
def server(tools_server: LiveServer) -> LiveServer:
    return tools_server


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0,
                       timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def tokenizer(server: LiveServer) -> Any:
    from sglang.runtime.loading.source import load_tokenizer

    with server.client() as c:
        return load_tokenizer(c.get("/get_model_info").json()["tokenizer_path"])


def ask(client: openai.OpenAI, messages: list[dict], **kw: Any) -> Any:
    # Room for long arrays of calls: a random model closes "required"'s array by chance.
    kw.setdefault("max_tokens", 1024)
    return client.chat.completions.create(model="m", messages=messages, **kw)


def stream_answer(client: openai.OpenAI, messages: list[dict], **kw: Any) -> dict[str, Any]:
    """The streamed answer folded into a message, checking each call's first delta."""
    content, calls, reasons = "", [], []
    for chunk in ask(client, messages, stream=True, **kw):
        for choice in chunk.choices:
            d = choice.delta
            content += d.content or ""
            for tc in d.tool_calls or []:
                if tc.index == len(calls):
                    assert tc.id and tc.id.startswith("call_") and tc.type == "function"
                    assert tc.function.name and tc.function.arguments == ""
                    calls.append({"id": tc.id, "type": "function",
                                  "function": {"name": tc.function.name, "arguments": ""}})
                else:
                    assert tc.id is None and tc.function.name is None
                    calls[tc.index]["function"]["arguments"] += tc.function.arguments
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert len(reasons) == 1
    return {"content": content or None, "tool_calls": calls, "finish_reason": reasons[0]}


def plain_answer(client: openai.OpenAI, messages: list[dict], **kw: Any) -> dict[str, Any]:
    choice = ask(client, messages, **kw).choices[0]
    calls = [c.model_dump() for c in choice.message.tool_calls or []]
    return {"content": choice.message.content, "tool_calls": calls,
            "finish_reason": choice.finish_reason}


ANSWER = {False: plain_answer, True: stream_answer}


def check_calls(calls: list[dict], allowed: set[str]) -> None:
    assert calls
    for call in calls:
        name = call["function"]["name"]
        assert name in allowed
        jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[name])


def prompt_tokens(tokenizer: Any, messages: list[dict], tools: list[dict] | None) -> int:
    """What the template makes of the conversation here, with the arguments as objects."""
    hf = [dict(m, tool_calls=[dict(c, function=dict(c["function"], arguments=json.loads(
        c["function"]["arguments"]))) for c in m["tool_calls"]]) if m.get("tool_calls") else m
        for m in messages]
    text = tokenizer.apply_chat_template(hf, tools=tools, tokenize=False,
                                         add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("stream", [False, True])
def test_two_turn_tool_conversation(client: openai.OpenAI, tokenizer: Any, server: LiveServer,
                                    stream: bool) -> None:
    messages: list[dict] = [{"role": "user", "content": QUESTIONS[0]}]
    first = ANSWER[stream](client, messages, tools=TOOLS, tool_choice="required", seed=3,
                           temperature=0.8)
    assert first["finish_reason"] == "tool_calls" and first["content"] is None
    check_calls(first["tool_calls"], set(SCHEMAS))
    messages.append({"role": "assistant", "content": None, "tool_calls": first["tool_calls"]})
    for call in first["tool_calls"]:
        messages.append({"role": "tool", "tool_call_id": call["id"],
                         "content": json.dumps({"result": "sunny, 21 C"})})
    final = ANSWER[stream](client, messages, tools=TOOLS, seed=3, temperature=0.8,
                           max_tokens=12)
    assert final["tool_calls"] == [] and final["finish_reason"] in ("stop", "length")
    assert isinstance(final["content"], str) and final["content"]
    # The server rendered the tools, the call and its result through the model's template.
    usage = ask(client, messages, tools=TOOLS, max_tokens=1).usage
    assert usage.prompt_tokens == prompt_tokens(tokenizer, messages, TOOLS)
    assert usage.prompt_tokens > prompt_tokens(tokenizer, messages[:1], TOOLS) + 20
    wait_idle(server)


def _runs(client: openai.OpenAI, n: int, **kw: Any) -> list[dict[str, Any]]:
    def one(i: int) -> dict[str, Any]:
        messages = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        return ANSWER[i % 2 == 1](client, messages, tools=TOOLS, seed=i, temperature=1.0, **kw)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_required_always_gives_valid_calls(client: openai.OpenAI, server: LiveServer) -> None:
    runs = _runs(client, 20, tool_choice="required")
    for run in runs:
        assert run["finish_reason"] == "tool_calls"
        check_calls(run["tool_calls"], set(SCHEMAS))
    arguments = {c["function"]["arguments"] for r in runs for c in r["tool_calls"]}
    assert len(arguments) > 3  # 20 samples, not one answer 20 times
    wait_idle(server)


def test_named_function_always_gives_its_arguments(client: openai.OpenAI,
                                                   server: LiveServer) -> None:
    runs = _runs(client, 20, tool_choice={"type": "function", "function": {"name": "get_time"}})
    for run in runs:
        assert [c["function"]["name"] for c in run["tool_calls"]] == ["get_time"]
        check_calls(run["tool_calls"], {"get_time"})
    assert len({r["tool_calls"][0]["function"]["arguments"] for r in runs}) > 1
    wait_idle(server)


def test_parallel_tool_calls(client: openai.OpenAI, server: LiveServer) -> None:
    allowed = _runs(client, 12, tool_choice="required")
    assert max(len(r["tool_calls"]) for r in allowed) >= 2
    single = _runs(client, 12, tool_choice="required", parallel_tool_calls=False)
    assert all(len(r["tool_calls"]) == 1 for r in single)
    for run in allowed + single:
        check_calls(run["tool_calls"], set(SCHEMAS))
    wait_idle(server)


@pytest.mark.parametrize("stream", [False, True])
def test_auto_parses_the_models_format(client: openai.OpenAI, stream: bool) -> None:
    messages = [{"role": "user", "content": QUESTIONS[2]}]
    answer = ANSWER[stream](client, messages, tools=TOOLS, tool_choice="auto", seed=1,
                            temperature=1.0, extra_body={"regex": AUTO_CALL})
    assert answer["content"] == "Checking."
    assert answer["finish_reason"] == "tool_calls"
    check_calls(answer["tool_calls"], {"get_weather"})
    # parallel_tool_calls=false keeps one call; tool_choice="none" parses nothing.
    none = ANSWER[stream](client, messages, tools=TOOLS, tool_choice="none", seed=1,
                          temperature=1.0, extra_body={"regex": AUTO_CALL})
    assert none["tool_calls"] == [] and none["content"].startswith("Checking.\n<tool_call>")
    assert none["finish_reason"] == "stop"


def test_tool_choice_none_offers_no_tools(client: openai.OpenAI, tokenizer: Any) -> None:
    messages = [{"role": "user", "content": QUESTIONS[1]}]
    usage = ask(client, messages, tools=TOOLS, tool_choice="none", max_tokens=1).usage
    assert usage.prompt_tokens == prompt_tokens(tokenizer, messages, None)


@pytest.mark.parametrize(("fields", "param"), [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice"),
    ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"tools": None, "tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "tool", "function": {"name": "get_time"}}}, "tool_choice.type"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}],
      "tool_choice": "required"}, "tools"),
])
def test_bad_tool_requests_are_400(client: openai.OpenAI, fields: dict, param: str) -> None:
    body = {"tools": TOOLS, **fields}
    if body["tools"] is None:
        del body["tools"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, extra_body=body)
    assert e.value.body["param"] == param, e.value.body


_LEAF = st.sampled_from([
    {"type": "integer", "minimum": 0, "maximum": 99}, {"type": "boolean"},
    {"type": "string", "enum": ["a", "b"]}, {"type": "string", "maxLength": 4},
    {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}, {"type": "null"},
])
_PARAMS = st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), _LEAF, max_size=3).map(
    lambda props: {"type": "object", "properties": props, "required": sorted(props),
                   "additionalProperties": False})
_TOOL = st.builds(lambda name, params: {"type": "function", "function": {
    "name": name, "parameters": params}}, st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _PARAMS)


@hypothesis.settings(max_examples=15, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(
    tools=st.lists(_TOOL, min_size=1, max_size=3, unique_by=lambda t: t["function"]["name"]),
    choice=st.sampled_from(["auto", "none", "required", "named"]),
    parallel=st.sampled_from([None, True, False]), stream=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_random_tools_never_fail_the_server(server: LiveServer, tools: list[dict], choice: str,
                                            parallel: bool | None, stream: bool,
                                            seed: int) -> None:
    """Random tool schemas and options: a 200 whose calls (when complete) match their schema."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "go"}], "tools": tools, "seed": seed,
        "temperature": 1.0, "max_tokens": 48, "stream": stream,
        "tool_choice": {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        if choice == "named" else choice,
    }
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    with server.client() as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        if stream:
            assert '"error"' not in r.text, r.text
            return
        choice_out = r.json()["choices"][0]
    calls = choice_out["message"].get("tool_calls") or []
    if choice in ("required", "named") and choice_out["finish_reason"] == "tool_calls":
        assert calls
        if parallel is False or choice == "named":
            assert len(calls) == 1
        for call in calls:
            jsonschema.validate(json.loads(call["function"]["arguments"]),
                                schemas[call["function"]["name"]])
    if choice == "none":
        assert not calls

"""Tool-call parsers on recorded-style outputs of each format: the whole-text parse against the
calls and content the text holds, and streaming fed at every split point (and one character at
a time) reassembling to exactly that parse."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sglang.server.openai.tool_parsers import (
    FORMATS,
    NamedFormat,
    ToolFormat,
    ToolStream,
    final_content,
    get_format,
    infer_format_name,
)

Expected = tuple[str | None, list[tuple[str, Any]]]

# (format, model output, (content, [(name, arguments as JSON value or raw text)])).
SAMPLES: list[tuple[str, str, Expected]] = [
    # Qwen2.5-Instruct: a sentence, then two blocks; a string holding the closing tag and braces.
    ("hermes",
     'Let me look both up.\n<tool_call>\n{"name": "get_weather", "arguments": '
     '{"city": "Zürich", "unit": "celsius"}}\n</tool_call>\n<tool_call>\n{"name": "search", '
     '"arguments": {"query": "what does </tool_call> mean? {x}", "top_k": 3}}\n</tool_call>',
     ("Let me look both up.",
      [("get_weather", {"city": "Zürich", "unit": "celsius"}),
       ("search", {"query": "what does </tool_call> mean? {x}", "top_k": 3})])),
    ("hermes", "The answer is a < b, and <tool> tags are HTML-ish. 東京 is big.",
     ("The answer is a < b, and <tool> tags are HTML-ish. 東京 is big.", [])),
    ("hermes", "Hmm <tool_call>\nnot json at all\n</tool_call> done",
     ("Hmm <tool_call>\nnot json at all\n</tool_call> done", [])),
    ("hermes", '<tool_call>\n{"arguments": {"n": [1, 2, {"deep": null}]}, "name": "late_name"}\n'
     "</tool_call>", (None, [("late_name", {"n": [1, 2, {"deep": None}]})])),
    # Cut off by max_tokens: the call stands with the arguments written so far.
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"x": 1, "y": "ab',
     (None, [("f", '{"x": 1, "y": "ab')])),
    ("qwen", '<tool_call>\n{"name": "stringly", "arguments": "{\\"a\\": 1}"}\n</tool_call>',
     (None, [("stringly", {"a": 1})])),
    # Llama 3.1 / 3.2 JSON tool calling.
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
     (None, [("get_weather", {"city": "Paris"})])),
    ("llama3", '  {"name": "a", "parameters": {"x": -1.5e3}}; {"name": "b", "parameters": {}}',
     (None, [("a", {"x": -1.5e3}), ("b", {})])),
    ("llama3", '{"answer": 42} is what I would say.', ('{"answer": 42} is what I would say.', [])),
    ("llama3", "Paris is the capital of France.", ("Paris is the capital of France.", [])),
    ("llama3", 'Sure.<|python_tag|>{"name": "calc", "parameters": {"expr": "2+2"}}',
     ("Sure.", [("calc", {"expr": "2+2"})])),
    # Mistral v0.3.
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
     '{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}]',
     (None, [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})])),
    ("mistral", '[{"name": "lookup", "arguments": {"ids": [1, 2]}}]',
     (None, [("lookup", {"ids": [1, 2]})])),
    ("mistral", 'I will check. [TOOL_CALLS] [{"name": "x", "arguments": {"q": "]["}}]',
     ("I will check.", [("x", {"q": "]["})])),
    ("mistral", "[1, 2, 3] are the numbers.", ("[1, 2, 3] are the numbers.", [])),
    # Generic JSON: what tool_choice="required" produces (compact), and a bare object.
    ("json", '[{"name":"get_weather","arguments":{"city":"Oslo","days":3}},'
     '{"name":"get_time","arguments":{"tz":"UTC"}}]',
     (None, [("get_weather", {"city": "Oslo", "days": 3}), ("get_time", {"tz": "UTC"})])),
    ("json", '{"name": "ping", "arguments": {}}', (None, [("ping", {})])),
    ("json", "No tools needed: 4.", ("No tools needed: 4.", [])),
    # JSON that names something but is no call (no arguments): an answer, not a call.
    ("json", '{"name": "Bob", "age": 3}', ('{"name": "Bob", "age": 3}', [])),
    ("llama3", '{"name": "Bob"} is the user.', ('{"name": "Bob"} is the user.', [])),
]


def _args(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parsed(fmt: ToolFormat, text: str) -> Expected:
    content, calls = fmt.parse(text)
    return final_content(content, calls), [(c.name, _args(c.arguments)) for c in calls]


def reassemble(deltas: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, str]]]:
    """Content and calls from OpenAI deltas, checking the shape of each call's first delta."""
    content, names, args, ids = "", [], [], set()
    for d in deltas:
        if "content" in d:
            content += d["content"]
            continue
        (tc,) = d["tool_calls"]
        k = tc["index"]
        if k == len(names):
            assert re.fullmatch(r"call_[0-9a-f]{24}|[A-Za-z0-9]{9}", tc["id"]), tc["id"]
            assert tc["id"] not in ids
            assert tc["type"] == "function" and tc["function"]["arguments"] == ""
            ids.add(tc["id"])
            names.append(tc["function"]["name"])
            args.append("")
        else:
            assert k < len(names) and set(tc) == {"index", "function"}
            args[k] += tc["function"]["arguments"]
    return (content if not names else content or None), list(zip(names, args))


def streamed(fmt: ToolFormat, pieces: list[str], max_calls: int | None = None) -> Any:
    stream = ToolStream(fmt, max_calls)
    deltas = [d for p in pieces for d in stream.feed(p)] + stream.finish()
    return reassemble(deltas)


def raw_parse(fmt: ToolFormat, text: str, max_calls: int | None = None) -> Any:
    content, calls = fmt.parse(text)
    calls = calls[:max_calls] if max_calls is not None else calls
    return final_content(content, calls), [(c.name, c.arguments) for c in calls]


@pytest.mark.parametrize(("name", "text", "expected"), SAMPLES)
def test_parse(name: str, text: str, expected: Expected) -> None:
    assert parsed(get_format(name), text) == expected


@pytest.mark.parametrize(("name", "text", "expected"), SAMPLES)
def test_stream_split_anywhere(name: str, text: str, expected: Expected) -> None:
    fmt = get_format(name)
    whole = raw_parse(fmt, text)
    assert streamed(fmt, [text]) == whole
    assert streamed(fmt, list(text)) == whole
    for i in range(len(text) + 1):
        assert streamed(fmt, [text[:i], text[i:]]) == whole, i
    # The same at every byte of the UTF-8 text, decoded as a detokenizer would pass it on.
    data = text.encode()
    for i in range(len(data) + 1):
        head = data[:i].decode(errors="ignore")
        assert streamed(fmt, [head, text[len(head):]]) == whole, i


def test_arguments_stream_before_the_call_ends() -> None:
    stream = ToolStream(get_format("hermes"))
    text = '<tool_call>\n{"name": "f", "arguments": {"city": "Paris", "days": 10}}\n</tool_call>'
    fragments = []
    for ch in text:
        for d in stream.feed(ch):
            fragments += [tc["function"]["arguments"] for tc in d.get("tool_calls", [])]
    assert len([f for f in fragments if f]) > 5  # streamed piece by piece, not at the end
    assert "".join(fragments) == '{"city": "Paris", "days": 10}'


def test_parallel_off_keeps_the_first_call() -> None:
    text = SAMPLES[0][1]
    fmt = get_format("hermes")
    assert streamed(fmt, list(text), max_calls=1) == raw_parse(fmt, text, max_calls=1)
    assert [c[0] for c in raw_parse(fmt, text, max_calls=1)[1]] == ["get_weather"]


def test_named_format_streams_the_whole_output_as_arguments() -> None:
    fmt = NamedFormat("get_weather")
    text = '{"city": "Paris"}'
    assert streamed(fmt, list(text)) == (None, [("get_weather", text)])
    assert raw_parse(fmt, text) == (None, [("get_weather", text)])


def test_partial_marker_is_held_then_released() -> None:
    stream = ToolStream(get_format("hermes"))
    assert stream.feed("a <tool_c") == [{"content": "a"}]
    assert stream.feed("ar") == [{"content": " <tool_car"}]


@pytest.mark.parametrize(("template", "archs", "builtin", "want"), [
    ("{% if tools %}<tool_call>{% endif %}", [], None, "hermes"),
    ("{{ '[TOOL_CALLS]' }}", [], None, "mistral"),
    ("<|python_tag|>", [], None, "llama3"),
    (None, ["Qwen2ForCausalLM"], None, "hermes"),
    (None, ["LlamaForCausalLM"], None, "llama3"),
    (None, ["GPT2LMHeadModel"], None, "json"),
    ("<tool_call>", [], "llama-3", "llama3"),
])
def test_infer_format(template: str | None, archs: list[str], builtin: str | None,
                      want: str) -> None:
    assert infer_format_name(template, archs, builtin) == want


def test_every_registered_name_has_a_sample() -> None:
    formats = {type(f) for f in FORMATS.values()}
    sampled = {type(get_format(name)) for name, _, _ in SAMPLES}
    assert formats == sampled


def test_unknown_parser_name() -> None:
    with pytest.raises(ValueError, match="unknown tool call parser 'nope'"):
        get_format("nope")


def test_call_ids() -> None:
    # Mistral's templates refuse ids other than 9 alphanumerics; clients send ids back.
    assert re.fullmatch(r"[A-Za-z0-9]{9}", get_format("mistral").new_call_id())
    assert re.fullmatch(r"call_[0-9a-f]{24}", get_format("hermes").new_call_id())

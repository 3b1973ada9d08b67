"""The probe's hostile inputs against a live server, kept as a regression test: each gets a 4xx
with an OpenAI-style body (naming the OpenAI field on OpenAI routes), and a normal request still
works after each; /health answers while a large allowed request is being prepared.

Complements test_fuzz_openapi.py (schema-driven, random) and test_server_generate.py's
malformed bodies: these are the hand-made ones that once hung, 500'd or were accepted silently.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import LiveServer, wait_idle

from sglang.runtime.inputs import MAX_BATCH, MAX_GENERATIONS, MAX_N, MAX_TOP_LOGPROBS

# Generous: a refusal is cheap, but the machine may be loaded. No test waits on a clock.
TIMEOUT_S = 60.0
SCHEMA_OK = {"type": "object", "properties": {"a": {"type": "integer"}}}


def raw_deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **kw}


def cmpl(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "hi", "max_tokens": 1, **kw}


def gen(sp: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"text": "hi", "sampling_params": {"max_new_tokens": 1, **(sp or {})}, **kw}


# (route, body: a JSON-able object or raw bytes, expected status, expected param or "" for any)
CASES: list[tuple[str, Any, int, str | None]] = [
    # nesting (RecursionError was a 500 from ~1,000 levels)
    ("/generate", b'{"text": "a", "sampling_params": {"x": ' + raw_deep(1000).encode() + b"}}",
     400, None),
    ("/generate", b'{"text": "a", "sampling_params": {"x": ' + raw_deep(500).encode() + b"}}",
     400, None),
    ("/v1/completions", b'{"prompt": ' + raw_deep(1000).encode() + b', "max_tokens": 1}', 400, None),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "response_format":'
     b' {"type": "json_schema", "json_schema": {"schema": ' + raw_deep(5000).encode() + b"}}}",
     400, None),
    ("/generate", gen({"json_schema": '{"items": ' + raw_deep(2000) + "}"}), 400, ""),
    # one request holding the server
    ("/generate", gen(return_logprob=True, logprob_start_len=0, top_logprobs_num=49152),
     400, "top_logprobs_num"),
    ("/generate", gen(return_logprob=True, top_logprobs_num=MAX_TOP_LOGPROBS + 1),
     400, "top_logprobs_num"),
    ("/generate", {"text": ["hi"] * (MAX_BATCH + 1)}, 400, "text"),
    ("/generate", {"input_ids": [[1]] * 1000, "sampling_params": {"n": MAX_N}},
     400, "sampling_params.n"),
    ("/generate", gen({"n": 10**6}), 400, "sampling_params.n"),
    ("/v1/completions", cmpl(prompt=["hi"] * (MAX_BATCH + 1)), 400, "prompt"),
    ("/v1/completions", cmpl(prompt=["hi"] * (MAX_GENERATIONS // MAX_N + 1), n=MAX_N), 400, "n"),
    ("/v1/chat/completions", chat(n=10**6), 400, "n"),
    ("/v1/completions", cmpl(logprobs=49152), 400, "logprobs"),
    # numbers that mean nothing
    ("/generate", gen({"top_k": 1e30}), 400, "sampling_params.top_k"),
    ("/generate", gen({"top_k": 2**63}), 400, "sampling_params.top_k"),
    ("/generate", gen({"max_new_tokens": 2**70}), 400, "sampling_params.max_new_tokens"),
    ("/generate", b'{"text": "a", "sampling_params": {"temperature": 1e999}}', 400,
     ""),  # msgspec: "Number out of range"
    ("/generate", b'{"text": "a", "sampling_params": {"temperature": NaN}}', 400, None),
    ("/v1/chat/completions", chat(top_k=2**63), 400, "top_k"),
    ("/v1/completions", cmpl(max_tokens=2**70), 400, "max_tokens"),
    ("/v1/chat/completions", chat(max_completion_tokens=2**70, max_tokens=None), 400,
     "max_completion_tokens"),
    # OpenAI names, not the runtime's
    ("/v1/chat/completions", chat(top_p=5), 400, "top_p"),
    ("/v1/chat/completions", chat(messages=[{"role": "user", "content": "word " * 2000}]),
     400, "messages"),
    ("/v1/completions", cmpl(prompt=[10**9]), 400, "prompt"),
    # request ids
    ("/generate", gen(rid="a\nINFO forged log line"), 400, "rid"),
    ("/generate", gen(rid="\x1b[31mred"), 400, "rid"),
    ("/generate", gen(rid="r" * 10_000), 400, "rid"),
    ("/v1/chat/completions", chat(rid="x\r\ny"), 400, "rid"),
    # schemas whose output would not be constrained
    ("/v1/chat/completions", chat(response_format={"type": "json_schema", "json_schema": {
        "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}}}), 400, ""),
    ("/generate", gen({"json_schema": json.dumps({"$ref": "https://example.com/s.json"})}),
     400, ""),
    # wrong types, unknown fields, empty and broken bodies
    ("/generate", gen({"n": "2"}), 400, "sampling_params.n"),
    ("/generate", gen({"no_such_param": 1}), 400, ""),
    ("/generate", gen(no_such_field=1), 400, ""),
    ("/v1/chat/completions", chat(messages="hi"), 400, ""),
    ("/generate", b"", 400, None),
    ("/v1/completions", b"   ", 400, None),
    ("/v1/chat/completions", b"null", 400, None),
    ("/generate", b'{"text": "\xff\xfe invalid utf-8"}', 400, None),
    ("/v1/completions", b'{"prompt": "\xc3\x28", "max_tokens": 1}', 400, None),
]


def _encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with live_server.client(timeout=TIMEOUT_S) as c:
        yield c
    wait_idle(live_server)


def _assert_serves(c: httpx.Client) -> None:
    r = c.post("/generate", json=gen({"temperature": 0}))
    assert r.status_code == 200, r.text
    assert r.json()["meta_info"]["completion_tokens"] == 1


@pytest.mark.parametrize(("path", "body", "status", "param"), CASES,
                         ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_hostile_input_is_refused_and_the_server_keeps_serving(
    client: httpx.Client, path: str, body: Any, status: int, param: str | None
) -> None:
    r = client.post(path, content=_encode(body), headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text[:500]
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], err
    assert err["type"] == "invalid_request_error"
    if param != "":
        assert err["param"] == param, err
    _assert_serves(client)


def test_prompt_logprobs_at_the_cap_stay_small(client: httpx.Client) -> None:
    """Prompt logprobs with the most alternatives allowed: the body grows with the prompt
    times the cap, never with the vocabulary (which gave 146 MB for 80 tokens)."""
    prompt = "word " * 80
    r = client.post("/generate", json=gen({"temperature": 0}, text=prompt, return_logprob=True,
                                          logprob_start_len=0, top_logprobs_num=MAX_TOP_LOGPROBS))
    assert r.status_code == 200, r.text[:500]
    meta = r.json()["meta_info"]
    tops = meta["input_top_logprobs"]
    assert all(t is None or len(t) == MAX_TOP_LOGPROBS for t in tops)
    assert len(r.content) < 200 * MAX_TOP_LOGPROBS * (meta["prompt_tokens"] + 1)


def test_body_over_the_limit_is_413(live_server: LiveServer, client: httpx.Client) -> None:
    limit = client.get("/get_server_args").json()["max_request_bytes"]
    big = b'{"text": "' + b"a" * limit + b'"}'
    r = client.post("/generate", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        yield b'{"text": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    r = client.post("/v1/completions", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:500]
    _assert_serves(client)


def test_health_answers_while_a_large_request_is_prepared(client: httpx.Client) -> None:
    """Tokenizing a ~1 MB prompt takes the preparation thread a while; /health must keep
    answering meanwhile. Ordering, not timing: several health checks, each sent after the
    previous answered, must complete before the big request does."""
    big = {"text": "The quick brown fox jumps over the lazy dog. " * 24_000,
           "sampling_params": {"max_new_tokens": 1}}
    done = threading.Event()
    result: dict[str, Any] = {}

    def send() -> None:
        try:
            with httpx.Client(base_url=str(client.base_url), timeout=300) as c:
                result["status"] = c.post("/generate", json=big).status_code
        finally:
            done.set()

    t = threading.Thread(target=send)
    t.start()
    answered = 0
    while not done.is_set() and answered < 5:
        assert client.get("/health").status_code == 200
        answered += 1 if not done.is_set() else 0
    t.join()
    assert result["status"] == 400  # longer than the context: refused after tokenizing
    assert answered >= 3, f"only {answered} health checks answered while the request was prepared"

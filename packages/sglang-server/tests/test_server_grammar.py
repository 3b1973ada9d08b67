"""Structured output over HTTP: /generate `regex` / `json_schema` / `ebnf`, OpenAI
`response_format` (chat and completions), and invalid constraints as 400s that leave the server
serving."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jsonschema
import pytest
from live_server import LiveServer

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
}
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"temperature": 0.0, "max_new_tokens": 48}
MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]


def _idle(server: LiveServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while True:
            body = c.get("/debug/check_integrity").json()
            assert body["ok"] and body["idle_check_failures"] == 0, body
            if body["idle"] and body["kv_used_tokens"] == 0:
                return
            assert time.monotonic() < deadline, body
            time.sleep(0.2)


def test_generate_with_regex_json_schema_and_ebnf(live_server: LiveServer) -> None:
    body = {
        "text": ["Call me at ", CHAT.format("Describe a person as JSON."), CHAT.format("Ok?")],
        "sampling_params": [
            {**GREEDY, "regex": r"\(\d{3}\) \d{3}-\d{4}"},
            {**GREEDY, "json_schema": json.dumps(SCHEMA)},
            {**GREEDY, "ebnf": 'root ::= "Answer: " ("yes" | "no")'},
        ],
    }
    with live_server.client() as c:
        r = c.post("/generate", json=body)
    assert r.status_code == 200, r.text
    phone, person, answer = r.json()
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", phone["text"]), phone
    jsonschema.validate(json.loads(person["text"]), SCHEMA)
    assert answer["text"] in ("Answer: yes", "Answer: no")
    assert phone["meta_info"]["finish_reason"]["type"] == "stop"


def test_openai_response_format(live_server: LiveServer) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    with live_server.client() as c:
        chat = c.post("/v1/chat/completions", json={
            "messages": MESSAGES, "max_tokens": 48, "temperature": 0, "response_format": fmt})
        assert chat.status_code == 200, chat.text
        content = chat.json()["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(content), SCHEMA)
        # Any JSON object: the grammar bounds nothing, so the prompt asks for a small one.
        obj = c.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}],
            "max_tokens": 32, "temperature": 0, "response_format": {"type": "json_object"}})
        assert obj.status_code == 200, obj.text
        choice = obj.json()["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        assert isinstance(json.loads(choice["message"]["content"]), dict)
        comp = c.post("/v1/completions", json={
            "prompt": CHAT.format("Describe a person as JSON."), "max_tokens": 48,
            "temperature": 0, "response_format": fmt})
        assert comp.status_code == 200, comp.text
        jsonschema.validate(json.loads(comp.json()["choices"][0]["text"]), SCHEMA)


def _assert_400(r: Any, message: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == 400, err
    assert re.search(message, err["message"]), err


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_constraints_are_400_and_the_server_keeps_serving(
    live_server: LiveServer, stream: bool
) -> None:
    with live_server.client() as c:
        _assert_400(c.post("/generate", json={
            "text": "Hi", "stream": stream, "sampling_params": {"regex": "a(b"}}),
            r"invalid regex: .*parenthesis")
        _assert_400(c.post("/generate", json={
            "text": "Hi", "stream": stream, "sampling_params": {"json_schema": "{oops"}}),
            r"invalid json_schema: not valid JSON")
        _assert_400(c.post("/generate", json={
            "text": "Hi", "stream": stream, "sampling_params": {"ebnf": "root ::= nothing"}}),
            r"invalid ebnf: .*nothing")
        bad_fmt = {"type": "json_schema",
                   "json_schema": {"name": "x", "schema": {"type": "frobnicate"}}}
        _assert_400(c.post("/v1/chat/completions", json={
            "messages": MESSAGES, "stream": stream, "response_format": bad_fmt}),
            "invalid json_schema: .*frobnicate")
        _assert_400(c.post("/v1/completions", json={
            "prompt": "Hi", "stream": stream, "regex": "[z-a]"}), "invalid regex")
        ok = c.post("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}})
        assert ok.status_code == 200 and c.get("/health").status_code == 200
    _idle(live_server)

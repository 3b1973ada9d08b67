"""An `OpenAI` backend whose HTTP traffic goes to an in-process fake of the OpenAI API.

The real `openai` client builds and parses the requests (through an httpx MockTransport), so
the tests see exactly the JSON bodies the backend sends. Answers come from `answer(body)`; stop
strings are applied like a server does; usage counts one token per character. Every request
body is kept in `requests`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from sglang.lang.backend.openai import OpenAI

Answer = Callable[[dict[str, Any]], str]


def _cut(text: str, stop: Any) -> tuple[str, str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(found)], "stop") if found else (text, "length")


def char_logprob(prev: str, ch: str) -> float:
    """The fake model's logprob of `ch` after `prev`: vowels are likely, after a space more so."""
    return (-0.5 if prev.endswith(" ") else -1.0) if ch in "aeiou" else -2.0


def _echo(body: dict[str, Any]) -> httpx.Response:
    """Scoring requests (echo, max_tokens=0): one token per character, as the API reports."""
    choices = []
    for i, prompt in enumerate(body["prompt"]):
        lps = [None] + [char_logprob(prompt[:k], prompt[k]) for k in range(1, len(prompt))]
        choices.append({"index": i, "text": prompt, "finish_reason": "length", "logprobs": {
            "tokens": list(prompt), "token_logprobs": lps,
            "text_offset": list(range(len(prompt))), "top_logprobs": None}})
    total = sum(len(p) for p in body["prompt"])
    return httpx.Response(200, json={
        "id": "echo", "object": "text_completion", "created": 0, "model": body["model"],
        "choices": choices,
        "usage": {"prompt_tokens": total, "completion_tokens": 0, "total_tokens": total}})


def fake_openai(answer: Answer, *, is_chat_model: bool = False,
                model: str = "fake-model") -> tuple[OpenAI, list[dict[str, Any]]]:
    requests: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        chat = request.url.path.endswith("/chat/completions")
        if body.get("echo"):
            return _echo(body)
        prompt = json.dumps(body["messages"]) if chat else body["prompt"]
        choices = []
        n = int(body.get("n") or 1)
        for i in range(n):
            text, finish = _cut(answer({**body, "sample": i}), body.get("stop"))
            if chat:
                choices.append({"index": i, "finish_reason": finish,
                                "message": {"role": "assistant", "content": text}})
            else:
                choices.append({"index": i, "text": text, "finish_reason": finish,
                                "logprobs": None})
        completion = sum(len(c["message"]["content"] if chat else c["text"]) for c in choices)
        return httpx.Response(200, json={
            "id": f"fake-{len(requests)}", "object": "chat.completion" if chat
            else "text_completion", "created": 0, "model": model, "choices": choices,
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": completion,
                      "total_tokens": len(prompt) + completion},
        })

    client = httpx.Client(transport=httpx.MockTransport(handler))
    backend = OpenAI(model, base_url="http://fake/v1", api_key="x", is_chat_model=is_chat_model,
                     http_client=client)
    return backend, requests

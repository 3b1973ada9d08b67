"""Input limits of the HTTP layer without a model: the JSON depth scan, the body-size guard (from
Content-Length and while reading), RecursionError as a 400, OpenAI names in front-door errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from sglang.server.errors import APIError
from sglang.server.http_guard import GuardMiddleware, install_exception_handlers
from sglang.server.openai.common import openai_names, openai_param
from sglang.server.validation import MAX_JSON_DEPTH, check_json_depth, decode_body, json_depth

LIMIT = 1000


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


@pytest.mark.parametrize(("body", "depth"), [
    (b"{}", 1), (b'{"a": [1, [2, {"b": 3}]]}', 4), (b"1", 0),
    (b'{"s": "[[[[{{{{"}', 1),  # brackets inside strings do not count
    (b'{"s": "\\"[[[[", "t": [[]]}', 3),  # nor after an escaped quote
    (b'["unterminated [[[[', 1),
    (nested(1000), 1000), (b'{"a":' * 300 + b"1" + b"}" * 300, 300),
])
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_depth_check_refuses_past_the_limit_before_decoding() -> None:
    check_json_depth(nested(MAX_JSON_DEPTH))
    check_json_depth(b"[" + b"[1]," * 5000 + b"[1]]")  # many brackets, shallow
    for depth in (MAX_JSON_DEPTH + 1, 500, 100_000):
        with pytest.raises(APIError) as ei:
            decode_body(b'{"text": "a", "sampling_params": {"x": ' + nested(depth) + b"}}", dict)
        assert ei.value.status == 400 and "deep" in ei.value.message


def _app(handler: Any) -> FastAPI:
    class NoDrain:
        draining = False

    app = FastAPI()
    install_exception_handlers(app)
    app.add_middleware(GuardMiddleware, tm=NoDrain(), api_key=None, max_request_bytes=LIMIT)
    app.post("/echo")(handler)
    return app


async def _echo(request: Request) -> Response:
    return Response(str(len(await request.body())))


async def _post(app: FastAPI, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post("/echo", **kw)


def _is_413(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["code"] == "request_too_large" and err["type"] == "invalid_request_error"
    assert str(LIMIT) in err["message"]


def test_body_limit_from_content_length_and_while_reading() -> None:
    app = _app(_echo)
    ok = asyncio.run(_post(app, content=b"x" * LIMIT))
    assert ok.status_code == 200 and ok.text == str(LIMIT)
    _is_413(asyncio.run(_post(app, content=b"x" * (LIMIT + 1))))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(LIMIT):
            yield b"xy"

    _is_413(asyncio.run(_post(app, content=chunks())))
    # A Content-Length that lies low does not get a larger body through either.
    _is_413(asyncio.run(_post(app, content=b"x" * (2 * LIMIT),
                              headers={"Content-Length": "10"})))


def test_recursion_error_is_a_400() -> None:
    async def deep(request: Request) -> Response:
        def down(x: Any) -> Any:
            return down([x])
        return Response(json.dumps(down(0)))

    r = asyncio.run(_post(_app(deep), content=b"{}"))
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request is nested too deeply"


@pytest.mark.parametrize(("route", "param", "name"), [
    ("chat", "sampling_params.top_p", "top_p"),
    ("chat", "sampling_params.max_new_tokens", "max_tokens"),
    ("chat", "input_ids", "messages"),
    ("chat", "top_logprobs_num", "top_logprobs"),
    ("completions", "text", "prompt"),
    ("completions", "sampling_params.min_new_tokens", "min_tokens"),
    ("completions", "top_logprobs_num", "logprobs"),
    ("completions", "rid", "rid"),
    ("completions", None, None),
])
def test_openai_param_names(route: str, param: str | None, name: str | None) -> None:
    assert openai_param(param, route) == name


def test_openai_names_rewrite_param_and_message() -> None:
    with pytest.raises(APIError) as ei, openai_names("chat", {
        "sampling_params.max_new_tokens": "max_completion_tokens",
    }):
        raise APIError("max_new_tokens must fit in a 64-bit integer, got 1", 400,
                       param="sampling_params.max_new_tokens")
    assert ei.value.param == "max_completion_tokens"
    assert ei.value.message.startswith("max_completion_tokens must fit")
    assert ei.value.status == 400

"""Backend pieces that need no server: choice picking, error mapping, chat template decoding,
CLI flag conversion, and the checks done before any request is sent."""

from __future__ import annotations

import importlib.util
import math
import random

import httpx
import pytest

from sglang.lang.backend.base import Context, GenParams
from sglang.lang.backend.runtime_endpoint import (
    RequestRejected,
    RuntimeEndpoint,
    RuntimeEndpointError,
    chat_template_from_info,
    pick_choice,
)
from sglang.lang.chat_template import PLAIN
from sglang.lang.runtime import Runtime, server_args_to_cli


def endpoint_with(handler: object) -> RuntimeEndpoint:
    ep = RuntimeEndpoint("http://test")
    ep._client = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    return ep


def test_pick_choice() -> None:
    assert pick_choice([-3.0, -1.0, -1.0], 0.0) == 1  # the first of the tied best
    assert pick_choice([-math.inf, -math.inf], 0.0) == 0
    rng = random.Random(1)
    counts = [0, 0]
    for _ in range(2000):
        counts[pick_choice([0.0, -math.log(3)], 1.0, rng)] += 1
    assert 0.70 < counts[0] / 2000 < 0.80  # softmax: 3/4 vs 1/4


def test_default_max_new_tokens_is_128() -> None:
    """SGLang's frontend default when sgl.gen gives none (not the server's own default)."""
    assert RuntimeEndpoint._sampling_params(GenParams())["max_new_tokens"] == 128
    sp = RuntimeEndpoint._sampling_params(GenParams(max_new_tokens=0, regex="a+", dtype=int))
    assert sp == {"max_new_tokens": 0, "regex": "a+"}


def test_4xx_becomes_request_rejected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "message": "regex is not supported yet", "type": "invalid_request_error",
            "param": "sampling_params.regex", "code": 400}})

    with pytest.raises(RequestRejected, match="regex is not supported yet") as info:
        endpoint_with(handler).generate(Context("x"), GenParams(regex="a+"))
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, RuntimeError)
    assert (err.status, err.param) == (400, "sampling_params.regex")
    assert "POST /generate failed with HTTP 400" in str(err)


def test_5xx_and_plain_bodies() -> None:
    ep = endpoint_with(lambda request: httpx.Response(503, text="overloaded"))
    with pytest.raises(RuntimeEndpointError, match="HTTP 503: overloaded") as info:
        ep.get_server_args()
    assert not isinstance(info.value, ValueError)


def test_flush_refused_is_false() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"success": False, "message": "requests are running"})

    assert endpoint_with(handler).flush_cache() is False


def test_stream_error_chunk_raises() -> None:
    body = (b'data: {"text": "a", "meta_info": {}}\n\n'
            b'data: {"error": {"message": "the scheduler died", "code": 500}}\n\n'
            b"data: [DONE]\n\n")
    ep = endpoint_with(lambda request: httpx.Response(200, content=body))
    stream = ep.generate_stream(Context("x"), GenParams())
    assert next(stream) == ("a", {})
    with pytest.raises(RuntimeEndpointError, match="the scheduler died"):
        next(stream)


def test_chat_template_from_info() -> None:
    assert chat_template_from_info(None) is None
    t = chat_template_from_info({
        "name": "x", "role_prefix_and_suffix": {"system": ["<s>", "</s>"], "user": ["U:", "\n"],
                                                "assistant": ["A:", "\n"]},
        "default_system_prompt": None, "stop_str": ["</s>"]})
    assert t is not None and t.prefix("user") == "U:" and t.suffix("system") == "</s>"
    ep = endpoint_with(lambda request: httpx.Response(200, json={"chat_template": None}))
    assert ep.get_chat_template() is PLAIN  # a server that doesn't describe its template


def test_select_checks_choices() -> None:
    ep = endpoint_with(lambda request: httpx.Response(500))
    with pytest.raises(ValueError, match="at least one"):
        ep.select(Context("x"), [])
    with pytest.raises(ValueError, match="non-empty"):
        ep.select(Context("x"), ["a", ""])


def test_server_args_to_cli() -> None:
    assert server_args_to_cli({"mem_fraction_static": 0.5, "disable_radix_cache": True,
                               "enable_x": False, "model_path": None}) == [
        "--mem-fraction-static", "0.5", "--disable-radix-cache"]


def test_runtime_needs_the_server_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sglang.launch_server" else real(name, *a))
    with pytest.raises(ImportError, match="pip install sglang-server"):
        Runtime()


def test_openai_backend_checks() -> None:
    pytest.importorskip("openai")
    from sglang.lang.backend.openai import OpenAI, guess_is_chat_model

    assert guess_is_chat_model("gpt-4o") and guess_is_chat_model("/models/SmolLM2-Instruct")
    assert not guess_is_chat_model("gpt-3.5-turbo-instruct")
    assert not guess_is_chat_model("text-davinci-003")
    chat = OpenAI("gpt-4o", base_url="http://127.0.0.1:9/v1")
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="does not support regex"):
        chat.generate(Context("", msgs), GenParams(regex="[0-9]+"))
    with pytest.raises(ValueError, match="partly written"):
        chat.generate(Context("", [*msgs, {"role": "assistant", "content": "So"}]), GenParams())
    partial = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nSure,"
    with pytest.raises(ValueError, match="start of an assistant block"):
        chat.generate(Context(partial, msgs), GenParams())
    completion = OpenAI("davinci-002", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="json_schema only for chat"):
        completion.generate(Context("x"), GenParams(json_schema="{}"))
    kw = chat._kwargs(GenParams(top_k=5, min_new_tokens=2, stop="\n", json_schema='{"a": 1}'))
    assert kw["extra_body"] == {"top_k": 5, "min_tokens": 2} and kw["stop"] == "\n"
    assert kw["response_format"]["json_schema"]["schema"] == {"a": 1}
    assert kw["max_tokens"] == 128

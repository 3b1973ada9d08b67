"""The utility routes and SGLang/OpenAI extras on a live server (the embedded SmolLM2):
/tokenize and /detokenize (chat template applied on request), /abort_request freeing a running
request's slots, /get_server_info, logit_bias, stream_options.continuous_usage_stats,
stop_regex, sampling_seed, and the unknown-field policy."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from live_server import LiveServer, wait_idle

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "Once upon a time, in a small village by the sea,"


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="x", max_retries=0,
                       timeout=180) as c:
        yield c
    wait_idle(live_server)


def _post(server: LiveServer, path: str, body: dict[str, Any]) -> Any:
    with server.client() as c:
        return c.post(path, json=body)


# ---- /tokenize, /detokenize -----------------------------------------------------------------
def test_tokenize_detokenize_round_trip(live_server: LiveServer) -> None:
    one = _post(live_server, "/tokenize", {"prompt": PROMPT}).json()
    assert one["count"] == len(one["tokens"]) > 5 and one["max_model_len"] == 1024
    many = _post(live_server, "/v1/tokenize", {"prompt": [PROMPT, "hi"]}).json()
    assert many["tokens"][0] == one["tokens"] and many["count"] == [one["count"],
                                                                     len(many["tokens"][1])]
    back = _post(live_server, "/detokenize", {"tokens": one["tokens"]}).json()
    assert back["text"] == PROMPT
    both = _post(live_server, "/v1/detokenize", {"tokens": many["tokens"]}).json()
    assert both["text"] == [PROMPT, "hi"]
    bad = _post(live_server, "/detokenize", {"tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"


def test_tokenize_messages_counts_what_chat_sends(live_server: LiveServer, client) -> None:
    counted = _post(live_server, "/tokenize", {"messages": CHAT}).json()["count"]
    usage = client.chat.completions.create(model="m", messages=CHAT, max_tokens=1).usage
    assert counted == usage.prompt_tokens
    r = _post(live_server, "/tokenize", {"prompt": "a", "messages": CHAT})
    assert r.status_code == 400


# ---- /abort_request ---------------------------------------------------------------------------
def test_abort_request_stops_a_running_request(live_server: LiveServer) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        result["r"] = _post(live_server, "/generate", {
            "text": PROMPT, "rid": "abort-me",
            "sampling_params": {"max_new_tokens": 900, "ignore_eos": True}})

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    aborted: list[str] = []
    while not aborted and time.monotonic() < deadline:
        time.sleep(0.3)
        aborted = _post(live_server, "/abort_request", {"rid": "abort-me"}).json()["aborted"]
    t.join(120)
    assert aborted == ["abort-me"]
    meta = result["r"].json()["meta_info"]
    assert meta["finish_reason"]["type"] == "abort" and meta["completion_tokens"] < 900
    wait_idle(live_server)  # its KV slots are back: the integrity check passes when idle
    assert _post(live_server, "/abort_request", {"rid": "nobody"}).json()["aborted"] == []
    assert _post(live_server, "/abort_request", {}).status_code == 400


def test_get_server_info(live_server: LiveServer) -> None:
    with live_server.client() as c:
        info = c.get("/get_server_info").json()
    assert info["context_length"] == 1024 and info["version"]
    assert info["model_info"]["is_generation"] is True
    assert info["internal_states"][0]["kv_total_tokens"] > 0
    assert info["api_key"] is None
    with live_server.client() as c:
        r = c.post("/v1/embeddings", json={"input": "hello"})
    assert r.status_code == 400 and "--is-embedding" in r.json()["error"]["message"]


# ---- logit_bias -------------------------------------------------------------------------------
def test_logit_bias_forces_and_forbids(live_server: LiveServer, client) -> None:
    free = client.completions.create(model="m", prompt=PROMPT, max_tokens=4, temperature=0,
                                     logprobs=0, extra_body={"ignore_eos": True})
    ids = _post(live_server, "/tokenize", {"prompt": free.choices[0].text,
                                           "add_special_tokens": False}).json()["tokens"]
    forced = next(t for t in range(1000, 2000) if t not in ids)
    out = client.completions.create(model="m", prompt=PROMPT, max_tokens=4, temperature=0,
                                    logit_bias={str(forced): 100})
    text = _post(live_server, "/detokenize", {"tokens": [forced] * 4}).json()["text"]
    assert out.choices[0].text == text
    chat = client.chat.completions.create(model="m", messages=CHAT, max_tokens=6,
                                          temperature=0)
    first = _post(live_server, "/tokenize", {"prompt": chat.choices[0].message.content,
                                            "add_special_tokens": False}).json()["tokens"][0]
    banned = client.chat.completions.create(model="m", messages=CHAT, max_tokens=6,
                                            temperature=0, logit_bias={str(first): -100})
    again = _post(live_server, "/tokenize", {"prompt": banned.choices[0].message.content,
                                            "add_special_tokens": False}).json()["tokens"]
    assert first not in again


@pytest.mark.parametrize("bias", [{"5": 101}, {"x": 1}, {"99999999": 1}])
def test_bad_logit_bias_is_a_400(client, bias: dict) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="m", prompt="a", max_tokens=1, logit_bias=bias)
    assert e.value.body["param"] == "logit_bias"


# ---- streaming usage, native names, unknown fields --------------------------------------------
def test_continuous_usage_stats(client) -> None:
    stream = client.chat.completions.create(
        model="m", messages=CHAT, max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True})
    chunks = list(stream)
    assert all(c.usage is not None for c in chunks)
    completion = [c.usage.completion_tokens for c in chunks]
    assert completion == sorted(completion) and completion[-1] == 5 and chunks[-1].choices == []


def test_stop_regex_and_sampling_seed(client) -> None:
    free = client.completions.create(model="m", prompt=PROMPT, max_tokens=24, temperature=0)
    text = free.choices[0].text
    word = text.split()[2]
    pattern = re.escape(word)
    out = client.completions.create(model="m", prompt=PROMPT, max_tokens=24, temperature=0,
                                    extra_body={"stop_regex": pattern})
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[0].text == text[: re.search(pattern, text).start()]  # type: ignore[union-attr]
    a = client.completions.create(model="m", prompt=PROMPT, max_tokens=8,
                                  extra_body={"sampling_seed": 7}).choices[0].text
    b = client.completions.create(model="m", prompt=PROMPT, max_tokens=8,
                                  seed=7).choices[0].text
    assert a == b


@pytest.mark.parametrize("extra,param", [
    ({"custom_params": {"a": 1}}, "custom_params"),
    ({"frobnicate": True}, "frobnicate"),
    ({"stop_regex": "("}, "stop_regex"),
])
def test_fields_we_cannot_honour_are_400s_naming_them(client, extra: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=CHAT, max_tokens=1, extra_body=extra)
    assert e.value.body["param"] == param and param in e.value.body["message"]


def test_ignored_fields_are_accepted(client) -> None:
    out = client.chat.completions.create(
        model="m", messages=[{**CHAT[0]}, {"role": "assistant", "content": "Paris.",
                                           "refusal": None}, {**CHAT[0]}],
        max_tokens=1, user="u1", metadata={"k": "v"}, store=False, service_tier="auto")
    assert out.choices[0].finish_reason in ("stop", "length")
    assert json.loads(out.model_dump_json())["usage"]["prompt_tokens"] > 0

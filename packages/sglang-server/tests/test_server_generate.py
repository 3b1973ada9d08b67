"""The native API of a live server on the embedded SmolLM2: /generate (single, batch, n,
streaming), prefix caching, batching under concurrency, aborts on disconnect, errors, info."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from live_server import LiveServer, metric, wait_idle

GREEDY = {"temperature": 0.0, "max_new_tokens": 16}


def post(server: LiveServer, body: Any, path: str = "/generate") -> httpx.Response:
    with server.client() as c:
        return c.post(path, json=body)


def sse_events(text: str) -> list[Any]:
    events = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def test_generate_single(live_server: LiveServer) -> None:
    r = post(live_server, {"text": "The capital of France is", "sampling_params": GREEDY})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"text", "output_ids", "meta_info"}
    meta = out["meta_info"]
    assert {"id", "prompt_tokens", "completion_tokens", "cached_tokens", "finish_reason"} <= set(meta)
    assert meta["completion_tokens"] == len(out["output_ids"]) <= 16
    assert meta["finish_reason"]["type"] in ("length", "stop")
    assert "Paris" in out["text"]


def test_generate_batch_and_input_ids(live_server: LiveServer) -> None:
    prompts = ["The capital of France is", "def fibonacci(n):"]
    r = post(live_server, {"text": prompts, "sampling_params": GREEDY})
    assert r.status_code == 200, r.text
    batch = r.json()
    assert isinstance(batch, list) and len(batch) == 2
    single = post(live_server, {"text": prompts[1], "sampling_params": GREEDY}).json()
    assert batch[1]["text"] == single["text"]  # greedy: batching changes nothing
    with live_server.client() as c:
        ids = c.post("/generate", json={"input_ids": [[1, 2, 3], [4, 5]],
                                        "sampling_params": {"max_new_tokens": 2}}).json()
    assert [o["meta_info"]["prompt_tokens"] for o in ids] == [3, 2]


def test_n_fans_out_with_distinct_seeds(live_server: LiveServer) -> None:
    body = {"text": "Once upon a time", "rid": "story",
            "sampling_params": {"max_new_tokens": 8, "temperature": 1.0, "n": 3, "seed": 7}}
    outs = post(live_server, body).json()
    assert [o["meta_info"]["id"] for o in outs] == ["story-0", "story-1", "story-2"]
    assert len({o["text"] for o in outs}) > 1


def test_stream_deltas_join_into_the_final_text(live_server: LiveServer) -> None:
    body = {"text": "List three primary colors:\n1.",
            "sampling_params": {"temperature": 0.0, "max_new_tokens": 24}}
    full = post(live_server, body).json()
    with live_server.client() as c:
        r = c.post("/generate", json={**body, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(r.text)
    assert "".join(ch["delta"] for ch in chunks) == full["text"]
    assert chunks[-1]["text"] == full["text"]
    assert chunks[-1]["output_ids"] == full["output_ids"]
    assert chunks[-1]["meta_info"]["finish_reason"] == full["meta_info"]["finish_reason"]
    assert all(ch["meta_info"]["finish_reason"] is None for ch in chunks[:-1])


def test_logprobs(live_server: LiveServer) -> None:
    body = {"text": "Hello world", "sampling_params": {"max_new_tokens": 3, "temperature": 0},
            "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 2,
            "return_text_in_logprobs": True}
    meta = post(live_server, body).json()["meta_info"]
    assert len(meta["output_token_logprobs"]) == 3
    lp, tok, text = meta["output_token_logprobs"][0]
    assert lp <= 0 and isinstance(tok, int) and isinstance(text, str)
    assert len(meta["output_top_logprobs"][0]) == 2
    assert meta["input_token_logprobs"][0][0] is None  # the first prompt token has none
    assert meta["normalized_prompt_logprob"] < 0


def test_shared_prefix_is_cached(live_server: LiveServer) -> None:
    prefix = "You are a helpful assistant who answers briefly. " * 12
    first = post(live_server, {"text": prefix + "What is 2+2?", "sampling_params": GREEDY})
    second = post(live_server, {"text": prefix + "Name a color.", "sampling_params": GREEDY})
    assert first.status_code == second.status_code == 200
    meta = second.json()["meta_info"]
    assert meta["cached_tokens"] > 100, meta


def test_64_concurrent_requests_run_batched(live_server: LiveServer) -> None:
    with live_server.client() as c:
        before = c.get("/metrics").text

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=300) as client:
            return await asyncio.gather(*(
                client.post("/generate", json={
                    "text": f"Request {i}: count from {i} to {i + 5}:",
                    "sampling_params": {"max_new_tokens": 8, "temperature": 0.5, "seed": i},
                }) for i in range(64)
            ))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 64
    assert all(r.json()["meta_info"]["completion_tokens"] >= 1 for r in responses)
    with live_server.client() as c:
        after = c.get("/metrics").text
    name = "sglang_mean_decode_batch_size"
    steps0, steps1 = metric(before, "sglang_decode_steps"), metric(after, "sglang_decode_steps")
    tokens = metric(after, name) * steps1 - metric(before, name) * steps0
    assert steps1 > steps0
    assert tokens / (steps1 - steps0) > 4, "64 concurrent requests should decode together"
    assert metric(after, "sglang_requests_total") >= 64
    assert "sglang_time_to_first_token_seconds_bucket" in after
    wait_idle(live_server)


def test_client_disconnect_aborts_the_request(live_server: LiveServer) -> None:
    # Asks for the whole context (~1000 tokens, tens of seconds): only an abort frees the
    # scheduler within wait_idle's few seconds.
    body = {"text": "Tell me a very long story.",
            "sampling_params": {"max_new_tokens": 4000, "temperature": 0, "ignore_eos": True}}
    with live_server.client() as c:
        aborts_before = _aborts(c.get("/metrics").text)
        # Streaming: read a few chunks, then hang up.
        with c.stream("POST", "/generate", json={**body, "stream": True}) as r:
            seen = 0
            for line in r.iter_lines():
                seen += line.startswith("data: ")
                if seen >= 3:
                    break
    wait_idle(live_server, timeout=8)
    # Non-streaming: the client gives up waiting.
    with pytest.raises(httpx.ReadTimeout):
        with live_server.client(timeout=2.0) as c:
            c.post("/generate", json=body)
    wait_idle(live_server, timeout=8)
    with live_server.client() as c:
        assert c.get("/health").status_code == 200
        m = c.get("/metrics").text
    assert metric(m, "sglang_num_running_reqs") == 0
    assert _aborts(m) == aborts_before + 2
    assert post(live_server, {"text": "Hi", "sampling_params": GREEDY}).status_code == 200


def _aborts(metrics: str) -> float:
    m = re.search(r'^sglang_requests_total\{finish_reason="abort"[^}]*\} (\S+)$', metrics, re.M)
    return float(m.group(1)) if m else 0.0


BAD_BODIES = [
    (b'{"text": "unterminated', None),
    (b"[1, 2]", None),
    (b"", None),
    (b'{"text": 5}', "text"),
    (b'{"sampling_params": {"max_new_tokens": 4}}', None),
    (b'{"text": "a", "unknown_field": 1}', None),
    (b'{"input_ids": [1, [2]]}', "input_ids"),
    (b'{"input_ids": [99999999]}', "input_ids"),
    (b'{"text": "a", "sampling_params": {"max_new_tokens": -1}}', "sampling_params.max_new_tokens"),
    (b'{"text": "a", "sampling_params": {"temperature": -0.5}}', "sampling_params.temperature"),
    (b'{"text": "a", "sampling_params": {"top_p": 1.5}}', "sampling_params.top_p"),
    (b'{"text": "a", "sampling_params": {"top_p": 0}}', "sampling_params.top_p"),
    (b'{"text": "a", "sampling_params": {"temperature": "hot"}}', "sampling_params.temperature"),
    (b'{"text": ["a", "b"], "sampling_params": [{}]}', None),
    (b'{"text": "a", "stream": "yes"}', "stream"),
]


@pytest.mark.parametrize("body,param", BAD_BODIES, ids=[b[0][:40].decode() or "empty" for b in BAD_BODIES])
def test_bad_requests_are_400(live_server: LiveServer, body: bytes, param: str | None) -> None:
    with live_server.client() as c:
        r = c.post("/generate", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param, err


def test_prompt_longer_than_the_context_is_400_and_server_keeps_serving(
    live_server: LiveServer,
) -> None:
    with live_server.client() as c:
        ctx = c.get("/get_model_info").json()["context_length"]
        r = c.post("/generate", json={"input_ids": [5] * ctx, "sampling_params": GREEDY})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        # max_new_tokens beyond the context is clipped to fit, not refused.
        r = c.post("/generate", json={"input_ids": [5] * (ctx - 2),
                                      "sampling_params": {"max_new_tokens": 10 * ctx}})
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["completion_tokens"] <= 2
        assert c.get("/health").status_code == 200
    wait_idle(live_server)


def test_info_endpoints(live_server: LiveServer) -> None:
    with live_server.client() as c:
        info = c.get("/get_model_info").json()
        assert info["is_generation"] is True
        assert info["model_path"].endswith(".gguf") and info["served_model_name"]
        assert c.get("/get_server_args").json()["port"] == live_server.port
        assert c.get("/health_generate").status_code == 200
        wait_idle(live_server)
        flushed = c.post("/flush_cache")
        assert flushed.status_code == 200 and flushed.json()["success"] is True
        assert c.get("/nope").status_code == 404

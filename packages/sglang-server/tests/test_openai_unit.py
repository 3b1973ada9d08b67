"""OpenAI-compatible layer over a fake tokenizer manager: response shapes, streaming, n > 1,
logprobs, usage, echo, and every validation error as a 400 naming the parameter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.inputs import ModelLimits, PreparedRequest
from sglang.runtime.messages import DetokOutput, FinishReason, TokenizedGenerateReq
from sglang.runtime.result import ResultAccumulator, ResultStep
from sglang.server.chat_templates import ChatTemplate, get_chat_template
from sglang.server.errors import APIError
from sglang.server.openai import build_openai_router
from sglang.server.validation import prepare_http

SCRIPT = "The quick brown fox jumps over the lazy dog. "
IM_END_ID = 1  # the fake tokenizer's one added token


class FakeTokenizer:
    """One token per character (id = code point)."""

    bos_token = None
    chat_template = "fake"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids)

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"

    def get_added_vocab(self) -> dict[str, int]:
        return {"<|im_end|>": IM_END_ID}


class FakeTM:
    """Generates SCRIPT (rotated by the seed) a character at a time, honouring max_new_tokens,
    stop strings, stop token ids and no_stop_trim. Prompts containing ABORT are aborted. Its
    outputs go through the real accumulator, as the tokenizer manager's do."""

    def __init__(self, chat_template: ChatTemplate | None = None) -> None:
        self.tokenizer = FakeTokenizer()
        self.context_len = 4096
        self.served_model_name = "fake-model"
        self.chat_template = chat_template
        self.requests: list[GenerateReqInput] = []  # as the OpenAI layer asked
        self.prepared: list[TokenizedGenerateReq] = []  # each generation, after the front door

    async def prepare(self, obj: GenerateReqInput) -> PreparedRequest:
        self.requests.append(obj)
        return prepare_http(obj, self.tokenizer, ModelLimits(self.context_len, 0x110000))

    async def stream(self, obj: GenerateReqInput, request: Request | None = None,
                     prepared: TokenizedGenerateReq | None = None) -> AsyncIterator[ResultStep]:
        assert prepared is not None, "the OpenAI layer prepares through the front door"
        self.prepared.append(prepared)
        sp, ids = prepared.sampling_params, prepared.input_ids
        acc = ResultAccumulator(
            prepared.rid, sp, self.tokenizer, return_logprob=obj.return_logprob,
            top_logprobs_num=obj.top_logprobs_num, with_text=obj.return_text_in_logprobs,
        )
        counts = {"rid": prepared.rid, "prompt_tokens": len(ids), "cached_tokens": len(ids) // 2}
        if "ABORT" in self.tokenizer.decode(ids):
            acc.fold(DetokOutput(**counts, new_token_ids=[], finished=True,
                                 finish_reason=FinishReason.abort("aborted by the test", 503)))
            yield acc.step("")
            return
        out, text, reason = self._run(sp, len(ids))
        lps, tops = self._logprobs(out, obj.top_logprobs_num)
        steps = range(1, len(out) + 1) if obj.stream and out else [len(out)]
        sent, prev = 0, 0
        for i in steps:
            visible = text[:i]
            done = i == len(out)
            msg = DetokOutput(
                **counts, new_token_ids=out[prev:i], completion_tokens=i, finished=done,
                finish_reason=reason if done else None, text=visible[sent:],
            )
            if obj.return_logprob:
                msg.output_token_logprobs = lps[prev:i]
                msg.output_top_logprobs = tops[prev:i] if tops is not None else None
                if prev == 0:
                    msg.input_token_logprobs, msg.input_top_logprobs = self._input_logprobs(
                        ids, obj)
            yield acc.step(acc.fold(msg))
            sent, prev = len(visible), i
            await asyncio.sleep(0)  # let concurrent generations interleave

    def _run(self, sp: SamplingParams, prompt_len: int) -> tuple[list[int], str, FinishReason]:
        out: list[int] = []
        text = ""
        start = (sp.seed or 0) % len(SCRIPT)
        for step in range(sp.max_new_tokens):
            tok = ord(SCRIPT[(start + step) % len(SCRIPT)])
            out.append(tok)
            if tok in (sp.stop_token_ids or []):
                return out, text, FinishReason.stop(tok)
            text += chr(tok)
            for s in sp.stop_strs:
                if text.endswith(s):
                    return out, text if sp.no_stop_trim else text[: -len(s)], \
                        FinishReason.stop(s)
        return out, text, FinishReason.at_length(sp.max_new_tokens)

    def _logprobs(self, out: list[int], top_n: int) -> tuple[list, list | None]:
        lps = [(-0.1 * (i % 7) - 0.01, t) for i, t in enumerate(out)]
        tops = [[lp] + [(lp[0] - 1 - r, 97 + r) for r in range(top_n - 1)] for lp in lps]
        return lps, tops if top_n else None

    def _input_logprobs(self, ids: list[int], obj: GenerateReqInput) -> tuple[list, list]:
        if obj.logprob_start_len != 0:
            return [], []
        lps = [(None if i == 0 else -0.5, t) for i, t in enumerate(ids)]
        tops = [None] + [[lp] * obj.top_logprobs_num for lp in lps[1:]]
        return lps, tops


def make_app(tm: FakeTM) -> FastAPI:
    app = FastAPI()
    app.include_router(build_openai_router(tm))

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    return app


def call(tm: FakeTM, path: str, body: Any = None, *, content: bytes | None = None,
         method: str = "POST") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=make_app(tm))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if content is not None:
                return await client.request(method, path, content=content)
            return await client.request(method, path, json=body)

    return asyncio.run(go())


def sse_events(resp: httpx.Response) -> list[Any]:
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in resp.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: ")
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    assert events[-1] == "[DONE]"
    return events[:-1]


def joined(events: list[dict], field: str = "text") -> dict[int, str]:
    out: dict[int, str] = {}
    for e in events:
        for c in e["choices"]:
            piece = c[field] if field == "text" else c["delta"].get("content") or ""
            out[c["index"]] = out.get(c["index"], "") + piece
    return out


# ---- models -------------------------------------------------------------------------------


def test_models() -> None:
    tm = FakeTM()
    body = call(tm, "/v1/models", method="GET").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "fake-model" and card["object"] == "model"
    assert card["owned_by"] == "sglang" and card["max_model_len"] == 4096
    assert isinstance(card["created"], int)
    assert call(tm, "/v1/models/fake-model", method="GET").json()["id"] == "fake-model"
    assert call(tm, "/v1/models/other", method="GET").status_code == 404


# ---- completions --------------------------------------------------------------------------


def test_completion_defaults_and_usage() -> None:
    tm = FakeTM()
    resp = call(tm, "/v1/completions", {"model": "anything", "prompt": "Hello", "user": "u1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["model"] == "fake-model" and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice == {"index": 0, "text": SCRIPT[:16], "logprobs": None,
                      "finish_reason": "length"}
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21,
                             "prompt_tokens_details": {"cached_tokens": 2}}
    (obj,) = tm.requests
    assert obj.text == "Hello" and obj.sampling_params == {"max_new_tokens": 16}


def test_completion_sampling_params_mapping() -> None:
    tm = FakeTM()
    call(tm, "/v1/completions", {
        "prompt": "x", "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": "fox",
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "top_k": 4, "min_p": 0.05,
        "repetition_penalty": 1.1, "ignore_eos": True, "min_tokens": 1, "regex": "a+",
        "stop_token_ids": [7], "skip_special_tokens": False, "no_stop_trim": True,
    })
    assert tm.requests[0].sampling_params == {
        "max_new_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": ["fox"],
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "top_k": 4, "min_p": 0.05,
        "repetition_penalty": 1.1, "ignore_eos": True, "min_new_tokens": 1, "regex": "a+",
        "stop_token_ids": [7], "skip_special_tokens": False, "no_stop_trim": True,
    }


def test_completion_stop_string() -> None:
    body = call(FakeTM(), "/v1/completions", {"prompt": "x", "max_tokens": 40,
                                              "stop": ["fox"]}).json()
    assert body["choices"][0]["text"] == "The quick brown "
    assert body["choices"][0]["finish_reason"] == "stop"


def test_completion_stream_matches_non_stream() -> None:
    req = {"prompt": "Hello", "max_tokens": 20, "stop": ["brown"]}
    plain = call(FakeTM(), "/v1/completions", req).json()
    events = sse_events(call(FakeTM(), "/v1/completions", {
        **req, "stream": True, "stream_options": {"include_usage": True}}))
    assert all(e["object"] == "text_completion" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert joined(events)[0] == plain["choices"][0]["text"] == "The quick "
    finals = [c for e in events for c in e["choices"] if c["finish_reason"]]
    assert [c["finish_reason"] for c in finals] == ["stop"]
    usage = events[-1]
    assert usage["choices"] == [] and usage["usage"] == plain["usage"]
    assert all(e["usage"] is None for e in events[:-1])


def test_completion_stream_without_usage() -> None:
    events = sse_events(call(FakeTM(), "/v1/completions",
                             {"prompt": "x", "max_tokens": 3, "stream": True}))
    assert all("usage" not in e and e["choices"] for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_completion_n2_with_seed() -> None:
    tm = FakeTM()
    body = call(tm, "/v1/completions", {"prompt": "Hi", "max_tokens": 4, "n": 2,
                                        "seed": 10}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert [c["text"] for c in body["choices"]] == [SCRIPT[10:14], SCRIPT[11:15]]
    assert [r.sampling_params.seed for r in tm.prepared] == [10, 11]
    assert len({r.rid for r in tm.prepared}) == 2
    # The shared prompt counts once; completions add up.
    assert body["usage"]["prompt_tokens"] == 2 and body["usage"]["completion_tokens"] == 8


def test_completion_batch_prompts_times_n() -> None:
    body = call(FakeTM(), "/v1/completions", {"prompt": ["a", "bcd"], "max_tokens": 2,
                                              "n": 2}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["prompt_tokens"] == 4 and body["usage"]["completion_tokens"] == 8
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 1


@pytest.mark.parametrize(("prompt", "expected"), [([72, 105], [[72, 105]]),
                                                  ([[72], [105, 33]], [[72], [105, 33]])])
def test_completion_token_id_prompts(prompt: list, expected: list) -> None:
    tm = FakeTM()
    body = call(tm, "/v1/completions", {"prompt": prompt, "max_tokens": 1, "echo": True}).json()
    assert [r.input_ids for r in tm.requests] == expected
    assert body["choices"][0]["text"] == "".join(map(chr, expected[0])) + "T"


def test_completion_logprobs() -> None:
    tm = FakeTM()
    body = call(tm, "/v1/completions", {"prompt": "Hi", "max_tokens": 5, "logprobs": 2}).json()
    lp = body["choices"][0]["logprobs"]
    assert lp["tokens"] == list("The q")
    assert len(lp["token_logprobs"]) == 5 and all(x < 0 for x in lp["token_logprobs"])
    assert all(len(t) == 2 for t in lp["top_logprobs"])
    assert lp["text_offset"] == [0, 1, 2, 3, 4]
    obj = tm.requests[0]
    assert obj.return_logprob and obj.top_logprobs_num == 2 and obj.logprob_start_len == -1
    # Streamed logprobs add up to the same lists.
    events = sse_events(call(FakeTM(), "/v1/completions",
                             {"prompt": "Hi", "max_tokens": 5, "logprobs": 2, "stream": True}))
    streamed = [c["logprobs"] for e in events for c in e["choices"] if c["logprobs"]]
    assert sum((s["tokens"] for s in streamed), []) == lp["tokens"]
    assert sum((s["text_offset"] for s in streamed), []) == lp["text_offset"]


def test_completion_echo_with_logprobs() -> None:
    tm = FakeTM()
    body = call(tm, "/v1/completions", {"prompt": "Hey", "max_tokens": 2, "echo": True,
                                        "logprobs": 1}).json()
    choice = body["choices"][0]
    assert choice["text"] == "HeyTh"
    lp = choice["logprobs"]
    assert lp["tokens"] == list("HeyTh")
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:3] == [-0.5, -0.5]
    assert lp["text_offset"] == [0, 1, 2, 3, 4]
    assert tm.requests[0].logprob_start_len == 0
    events = sse_events(call(FakeTM(), "/v1/completions", {
        "prompt": "Hey", "max_tokens": 2, "echo": True, "stream": True}))
    assert joined(events)[0] == "HeyTh"


def test_completion_echo_max_tokens_zero_scores_prompt() -> None:
    body = call(FakeTM(), "/v1/completions", {"prompt": "Hey", "max_tokens": 0, "echo": True,
                                              "logprobs": 0}).json()
    assert body["choices"][0]["text"] == "Hey"
    assert body["choices"][0]["logprobs"]["tokens"] == ["H", "e", "y"]
    assert body["usage"]["completion_tokens"] == 0


def test_completion_abort() -> None:
    resp = call(FakeTM(), "/v1/completions", {"prompt": "ABORT"})
    assert resp.status_code == 503
    assert resp.json()["error"]["message"] == "aborted by the test"
    events = sse_events(call(FakeTM(), "/v1/completions", {"prompt": "ABORT", "stream": True}))
    assert events[-1]["error"]["message"] == "aborted by the test"


# ---- chat ---------------------------------------------------------------------------------

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


def test_chat_with_tokenizer_template() -> None:
    tm = FakeTM()
    resp = call(tm, "/v1/chat/completions", {"model": "m", "messages": CONV, "max_tokens": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": "The q"},
                      "logprobs": None, "finish_reason": "length"}
    prompt = "<system>Be brief.\n<user>Hi!\n<assistant>"
    assert tm.requests[0].input_ids == [ord(c) for c in prompt]
    assert body["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": 5,
                             "total_tokens": len(prompt) + 5,
                             "prompt_tokens_details": {"cached_tokens": len(prompt) // 2}}
    assert "stop" not in tm.requests[0].sampling_params


def test_chat_with_server_template_adds_stops() -> None:
    tm = FakeTM(chat_template=get_chat_template("chatml"))
    call(tm, "/v1/chat/completions", {"messages": CONV, "max_tokens": 3, "stop": "x"})
    obj = tm.requests[0]
    assert tm.tokenizer.decode(obj.input_ids) == get_chat_template("chatml").render(CONV)
    assert obj.sampling_params["stop"] == ["x", "<|im_end|>"]
    assert obj.sampling_params["stop_token_ids"] == [IM_END_ID]


def test_chat_content_parts_and_developer_role() -> None:
    tm = FakeTM()
    call(tm, "/v1/chat/completions", {"max_tokens": 1, "messages": [
        {"role": "developer", "content": "D"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None},
    ]})
    assert tm.tokenizer.decode(tm.requests[0].input_ids) == \
        "<system>D\n<user>a\nb\n<assistant>\n<assistant>"


def test_chat_max_tokens_defaults_and_precedence() -> None:
    tm = FakeTM()
    call(tm, "/v1/chat/completions", {"messages": CONV, "stop": "."})
    prompt_len = len(tm.requests[0].input_ids)
    assert tm.requests[0].sampling_params["max_new_tokens"] == 4096 - prompt_len
    call(tm, "/v1/chat/completions", {"messages": CONV, "max_tokens": 9,
                                      "max_completion_tokens": 3})
    assert tm.requests[1].sampling_params["max_new_tokens"] == 3


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream(include_usage: bool) -> None:
    req = {"messages": CONV, "max_tokens": 8, "seed": 3}
    plain = call(FakeTM(), "/v1/chat/completions", req).json()
    events = sse_events(call(FakeTM(), "/v1/chat/completions", {
        **req, "stream": True, "stream_options": {"include_usage": include_usage}}))
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    first = events[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""}
    assert joined(events, "delta")[0] == plain["choices"][0]["message"]["content"]
    finals = [c for e in events for c in e["choices"] if c["finish_reason"]]
    assert len(finals) == 1 and finals[0]["delta"] == {} and finals[0]["finish_reason"] == "length"
    if include_usage:
        assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]
    else:
        assert all("usage" not in e for e in events)


def test_chat_stream_n2_interleaved() -> None:
    req = {"messages": CONV, "max_tokens": 6, "n": 2, "seed": 0}
    plain = call(FakeTM(), "/v1/chat/completions", req).json()
    events = sse_events(call(FakeTM(), "/v1/chat/completions", {**req, "stream": True}))
    texts = joined(events, "delta")
    assert texts == {c["index"]: c["message"]["content"] for c in plain["choices"]}
    assert texts == {0: SCRIPT[0:6], 1: SCRIPT[1:7]}
    order = [e["choices"][0]["index"] for e in events]
    assert order[:2] == [0, 1]  # both role chunks first
    assert order.index(1, 2) < len(order) - order[::-1].index(0) - 1  # interleaved


def test_chat_logprobs() -> None:
    tm = FakeTM()
    req = {"messages": CONV, "max_tokens": 4, "logprobs": True, "top_logprobs": 3}
    body = call(tm, "/v1/chat/completions", req).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert [c["token"] for c in content] == list("The ")
    for c in content:
        assert c["bytes"] == list(c["token"].encode()) and c["logprob"] < 0
        assert len(c["top_logprobs"]) == 3
        assert set(c["top_logprobs"][0]) == {"token", "logprob", "bytes"}
    assert tm.requests[0].top_logprobs_num == 3
    events = sse_events(call(FakeTM(), "/v1/chat/completions",
                             {**req, "stream": True}))
    streamed = [x for e in events for c in e["choices"] if c["logprobs"]
                for x in c["logprobs"]["content"]]
    assert streamed == content
    body = call(FakeTM(), "/v1/chat/completions", {**req, "top_logprobs": None}).json()
    assert all(c["top_logprobs"] == [] for c in body["choices"][0]["logprobs"]["content"])


@pytest.mark.parametrize(("fmt", "schema"), [
    ({"type": "text"}, None),
    ({"type": "json_object"}, {"type": "object"}),
    ({"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "integer"}}},
     {"type": "integer"}),
])
def test_chat_response_format(fmt: dict, schema: dict | None) -> None:
    tm = FakeTM()
    call(tm, "/v1/chat/completions", {"messages": CONV, "max_tokens": 1,
                                      "response_format": fmt})
    got = tm.requests[0].sampling_params.get("json_schema")
    assert (json.loads(got) if got else None) == schema


def test_chat_abort() -> None:
    msgs = [{"role": "user", "content": "ABORT"}]
    resp = call(FakeTM(), "/v1/chat/completions", {"messages": msgs})
    assert resp.status_code == 503 and resp.json()["error"]["type"] == "server_error"
    events = sse_events(call(FakeTM(), "/v1/chat/completions", {"messages": msgs,
                                                                "stream": True}))
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["error"]["message"] == "aborted by the test"


# ---- validation ---------------------------------------------------------------------------

C, CH = "/v1/completions", "/v1/chat/completions"
BAD: list[tuple[str, Any, str | None]] = [
    (C, b"{not json", None),
    (CH, b"", None),
    (C, b"[1, 2]", None),
    (C, {}, "prompt"),
    (CH, {"model": "m"}, "messages"),
    (C, {"prompt": "x", "model": 3}, "model"),
    (C, {"prompt": "x", "max_tokens": "16"}, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": -1}, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": 0}, "max_tokens"),
    (CH, {"messages": CONV, "max_tokens": 0}, "max_tokens"),
    (CH, {"messages": CONV, "max_completion_tokens": 0}, "max_completion_tokens"),
    (C, {"prompt": "x", "n": 0}, "n"),
    (CH, {"messages": CONV, "n": 129}, "n"),
    (C, {"prompt": "x", "logprobs": 21}, "logprobs"),
    (C, {"prompt": "x", "logprobs": -1}, "logprobs"),
    (CH, {"messages": CONV, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    (CH, {"messages": CONV, "top_logprobs": 2}, "top_logprobs"),
    (CH, {"messages": CONV, "logprobs": 1}, "logprobs"),
    (CH, {"messages": []}, "messages"),
    (CH, {"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    (CH, {"messages": [{"role": "tool"}]}, "messages[0].content"),
    (CH, {"messages": [{"content": "x"}]}, "messages[0].role"),
    (CH, {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (CH, {"messages": [{"role": "user"}]}, "messages[0].content"),
    (CH, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url.url"),
    (CH, {"messages": CONV, "response_format": {"type": "xml"}}, "response_format.type"),
    (CH, {"messages": CONV, "response_format": {"type": "json_schema"}},
     "response_format.json_schema"),
    (CH, {"messages": CONV, "tools": [{"type": "function"}]}, "tools[0].function"),
    (CH, {"messages": CONV, "tool_choice": "required"}, "tool_choice"),
    (CH, {"messages": CONV, "stream_options": {"include_usage": "yes"}},
     "stream_options.include_usage"),
    (C, {"prompt": "x", "suffix": "y"}, "suffix"),
    (C, {"prompt": "x", "best_of": 3}, "best_of"),
    (C, {"prompt": "x", "logit_bias": {"5": 101.0}}, "logit_bias"),
    (C, {"prompt": "x", "logit_bias": {"five": 1.0}}, "logit_bias"),
    (C, {"prompt": "x", "custom_params": {"a": 1}}, "custom_params"),
    (C, {"prompt": "x", "stop_regex": "("}, "stop_regex"),
    (C, {"prompt": "x", "no_such_field": 1}, "no_such_field"),
    (CH, {"messages": [{"role": "user", "content": "x", "foo": 1}]}, "messages[0].foo"),
    (CH, {"messages": [{"role": "user", "content": "x", "audio": {"id": "a"}}]},
     "messages[0].audio"),
    (C, {"prompt": []}, "prompt"),
    (C, {"prompt": [1, "a"]}, "prompt"),
    (C, {"prompt": [[1], []]}, "prompt"),
    (C, {"prompt": None}, "prompt"),
    (C, {"prompt": "x", "stop": 3}, "stop"),
    (C, {"prompt": "x", "echo": "true"}, "echo"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD)
def test_validation_errors(path: str, body: Any, param: str | None) -> None:
    tm = FakeTM()
    if isinstance(body, bytes):
        resp = call(tm, path, content=body)
    else:
        resp = call(tm, path, body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == 400
    assert err["param"] == param and err["message"]
    assert tm.requests == []  # rejected before reaching the tokenizer manager


@pytest.mark.parametrize("stream", [False, True])
def test_runtime_validation_error_is_400_before_streaming(stream: bool) -> None:
    # Ranges are the tokenizer manager's job; its APIError arrives before any chunk.
    resp = call(FakeTM(), C, {"prompt": "x", "temperature": -1, "n": 3, "stream": stream})
    assert resp.status_code == 400 and "temperature" in resp.json()["error"]["message"]


# ---- the official openai client -----------------------------------------------------------


def test_official_openai_client() -> None:
    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(FakeTM())),
                                 base_url="http://test")
        client = openai.AsyncOpenAI(base_url="http://test/v1", api_key="none", http_client=http)
        models = await client.models.list()
        assert [m.id for m in models.data] == ["fake-model"]

        cmpl = await client.completions.create(model="x", prompt="Hi", max_tokens=3, n=2,
                                               seed=1, logprobs=1)
        assert [c.text for c in cmpl.choices] == [SCRIPT[1:4], SCRIPT[2:5]]
        assert cmpl.choices[0].logprobs.tokens == list(SCRIPT[1:4])
        assert cmpl.usage.total_tokens == 2 + 6

        chat = await client.chat.completions.create(model="x", messages=CONV, max_tokens=4,
                                                    logprobs=True, top_logprobs=2)
        assert chat.choices[0].message.content == "The "
        assert chat.choices[0].message.role == "assistant"
        assert len(chat.choices[0].logprobs.content[0].top_logprobs) == 2
        assert chat.usage.prompt_tokens_details.cached_tokens > 0

        stream = await client.chat.completions.create(
            model="x", messages=CONV, max_tokens=4, stream=True,
            stream_options={"include_usage": True})
        pieces, usage = [], None
        async for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        assert "".join(pieces) == "The " and usage.completion_tokens == 4

        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="x", messages=CONV, n=0)
        assert info.value.body["param"] == "n"
        await http.aclose()

    asyncio.run(go())

"""The official `openai` client against a live server on the embedded SmolLM2: completions and
chat (plain, streamed, n > 1, logprobs, echo), usage accounting against the tokenizer, prefix
caching, batching under 64 concurrent requests, and errors as `openai.BadRequestError`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from live_server import LiveServer, metric, wait_idle

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


# ---- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[openai.OpenAI]:
    # No retries: a retried 5xx would hide the failure, and 4xx are never retried anyway.
    with openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="x", max_retries=0,
                       timeout=180) as c:
        yield c


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def tokenizer(live_server: LiveServer) -> Any:
    """The served model's tokenizer, loaded here: usage is checked against it independently
    of the server's own counting."""
    from sglang.runtime.loading.source import load_tokenizer

    with live_server.client() as c:
        return load_tokenizer(c.get("/get_model_info").json()["tokenizer_path"])


def chat_prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # The rendered template already starts with its special tokens: add none.
    return len(tokenizer.encode(text, add_special_tokens=False))


def generate(server: LiveServer, text: str, max_new_tokens: int) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/generate", json={
            "text": text, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0},
        })
    assert r.status_code == 200, r.text
    return r.json()


def counts(usage: Any) -> tuple[int, int, int]:
    # cached_tokens is left out: a repeated prompt is served from the prefix cache.
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def check_usage(usage: Any, prompt_tokens: int, completion_tokens: int) -> None:
    assert usage.prompt_tokens == prompt_tokens
    assert usage.completion_tokens == completion_tokens
    assert usage.total_tokens == prompt_tokens + completion_tokens


# ---- models ---------------------------------------------------------------------------------


def test_models_lists_the_served_model(live_server: LiveServer, client: openai.OpenAI) -> None:
    with live_server.client() as c:
        served = c.get("/get_model_info").json()["served_model_name"]
    models = client.models.list()
    assert [m.id for m in models.data] == [served]
    assert client.models.retrieve(served).id == served


# ---- completions ----------------------------------------------------------------------------


def test_completion_equals_generate_greedy(
    live_server: LiveServer, client: openai.OpenAI, model: str, tokenizer: Any
) -> None:
    native = generate(live_server, PROMPT, 12)
    out = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
    choice = out.choices[0]
    assert out.object == "text_completion" and len(out.choices) == 1
    assert choice.text == native["text"]
    assert "Paris" in choice.text
    completion = native["meta_info"]["completion_tokens"]
    check_usage(out.usage, len(tokenizer.encode(PROMPT)), completion)
    if choice.finish_reason == "length":
        assert completion == 12
    else:
        assert choice.finish_reason == "stop" and completion <= 12


def test_completion_stream_joins_into_the_non_stream_text(
    client: openai.OpenAI, model: str
) -> None:
    args = {"model": model, "prompt": "List three primary colors:\n1.", "max_tokens": 16,
            "temperature": 0}
    full = client.completions.create(**args)
    chunks = list(client.completions.create(
        **args, stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == full.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    # The usage chunk comes last, with no choices; every other chunk has usage null.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert counts(chunks[-1].usage) == counts(full.usage)


def test_completion_logprobs_are_consistent_for_greedy(
    client: openai.OpenAI, model: str
) -> None:
    out = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0,
                                    logprobs=3)
    choice = out.choices[0]
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    n = out.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(n)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert top is not None and len(top) == 3
        assert logprob <= 0
        # Greedy: the chosen token is the most likely one, with the same logprob.
        best = max(top, key=top.__getitem__)
        assert best == token
        assert math.isclose(top[token], logprob, abs_tol=1e-4)
        assert all(v <= logprob + 1e-4 for v in top.values())


def test_completion_echo_returns_prompt_and_text(client: openai.OpenAI, model: str) -> None:
    args = {"model": model, "prompt": PROMPT, "max_tokens": 4, "temperature": 0}
    plain = client.completions.create(**args).choices[0]
    echoed = client.completions.create(**args, echo=True, logprobs=1)
    choice = echoed.choices[0]
    assert choice.text == PROMPT + plain.text
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs
    # Prompt tokens come first (the very first has no logprob), then the generated ones.
    prompt_n = echoed.usage.prompt_tokens
    assert len(lp.tokens) == prompt_n + echoed.usage.completion_tokens
    assert "".join(lp.tokens) == choice.text
    assert lp.token_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])


def test_completion_n2_with_seed(client: openai.OpenAI, model: str) -> None:
    out = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6,
                                    temperature=0.9, seed=11, n=2)
    assert sorted(c.index for c in out.choices) == [0, 1]
    assert all(c.text for c in out.choices)
    # The prompt is counted once; completion tokens of both choices add up.
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out.usage.completion_tokens <= 12


# ---- chat -----------------------------------------------------------------------------------


def test_chat_capital_of_france(client: openai.OpenAI, model: str, tokenizer: Any) -> None:
    out = client.chat.completions.create(model=model, messages=CAPITAL, temperature=0,
                                         max_tokens=16)
    choice = out.choices[0]
    assert out.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert "Paris" in (choice.message.content or "")
    assert choice.finish_reason in ("stop", "length")
    completion = out.usage.completion_tokens
    check_usage(out.usage, chat_prompt_tokens(tokenizer, CAPITAL), completion)
    assert 1 <= completion <= 16
    if choice.finish_reason == "length":
        assert completion == 16


def test_chat_multi_turn_with_system(client: openai.OpenAI, model: str, tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "You are a geography tutor. Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And what is the capital of Germany?"},
    ]
    out = client.chat.completions.create(model=model, messages=messages, temperature=0,
                                         max_tokens=12)
    assert (out.choices[0].message.content or "").strip()
    # The whole conversation, system message included, went into the prompt.
    check_usage(out.usage, chat_prompt_tokens(tokenizer, messages), out.usage.completion_tokens)
    single = chat_prompt_tokens(tokenizer, messages[1:2])
    assert out.usage.prompt_tokens > single


def test_chat_stream_joins_into_the_non_stream_text(client: openai.OpenAI, model: str) -> None:
    args = {"model": model, "messages": CAPITAL, "max_tokens": 16, "temperature": 0}
    full = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(
        **args, stream=True, stream_options={"include_usage": True}
    ))
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == full.choices[0].message.content
    assert with_choices[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert counts(chunks[-1].usage) == counts(full.usage)
    # Without include_usage, no chunk carries usage.
    plain = list(client.chat.completions.create(**args, stream=True))
    assert all(c.usage is None for c in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == text


def test_chat_n2_with_seed(client: openai.OpenAI, model: str) -> None:
    out = client.chat.completions.create(model=model, messages=CAPITAL, max_tokens=6,
                                         temperature=0.9, seed=5, n=2)
    assert sorted(c.index for c in out.choices) == [0, 1]
    assert all(c.message.content for c in out.choices)


def test_chat_logprobs_are_consistent_for_greedy(client: openai.OpenAI, model: str) -> None:
    out = client.chat.completions.create(model=model, messages=CAPITAL, max_tokens=6,
                                         temperature=0, logprobs=True, top_logprobs=2)
    choice = out.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert len(entries) == out.usage.completion_tokens
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 2
        best = max(e.top_logprobs, key=lambda t: t.logprob)
        assert best.token == e.token  # greedy: the chosen token is the most likely one
        assert math.isclose(best.logprob, e.logprob, abs_tol=1e-4)
        assert e.bytes == list(e.token.encode("utf-8"))
    # Generation may stop on the end-of-turn token, which the text leaves out.
    joined = "".join(e.token for e in entries)
    assert joined.startswith(choice.message.content or "")


# ---- usage and caching ----------------------------------------------------------------------


def test_length_finish_counts_max_tokens(client: openai.OpenAI, model: str,
                                         tokenizer: Any) -> None:
    prompt = "Count: 1, 2, 3,"
    out = client.completions.create(model=model, prompt=prompt, max_tokens=5, temperature=0,
                                    extra_body={"ignore_eos": True}, logprobs=0)
    choice = out.choices[0]
    assert choice.finish_reason == "length"
    assert choice.logprobs is not None and choice.logprobs.tokens is not None
    check_usage(out.usage, len(tokenizer.encode(prompt)), 5)
    assert len(choice.logprobs.tokens) == 5


def test_shared_prefix_reports_cached_tokens(client: openai.OpenAI, model: str) -> None:
    system = "You are a helpful assistant who answers every question briefly and politely. " * 8
    first = client.chat.completions.create(
        model=model, max_tokens=2, temperature=0,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi!"}],
    )
    second = client.chat.completions.create(
        model=model, max_tokens=2, temperature=0,
        messages=[{"role": "system", "content": system},
                  {"role": "user", "content": "Name a color."}],
    )
    assert first.usage.prompt_tokens > 100
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens is not None
    assert 100 < details.cached_tokens < second.usage.prompt_tokens


# ---- concurrency ----------------------------------------------------------------------------


def test_64_concurrent_chat_requests_run_batched(live_server: LiveServer, model: str) -> None:
    with live_server.client() as c:
        before = c.get("/metrics").text

    async def run() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=f"{live_server.url}/v1", api_key="x",
                                      max_retries=0, timeout=300) as aclient:
            return await asyncio.gather(*(
                aclient.chat.completions.create(
                    model=model, max_tokens=6, temperature=0.7, seed=i,
                    messages=[{"role": "user", "content": f"Give me a fun fact about {i}."}],
                ) for i in range(64)
            ))

    outs = asyncio.run(run())
    assert len(outs) == 64
    assert all(o.choices[0].message.content and o.usage.completion_tokens >= 1 for o in outs)
    with live_server.client() as c:
        after = c.get("/metrics").text
    # mean decode batch size is cumulative: recover this test's share from the step counts.
    name = "sglang_mean_decode_batch_size"
    steps0, steps1 = metric(before, "sglang_decode_steps"), metric(after, "sglang_decode_steps")
    assert steps1 > steps0
    mean = (metric(after, name) * steps1 - metric(before, name) * steps0) / (steps1 - steps0)
    assert mean > 4, f"64 concurrent requests should decode together (mean batch {mean:.1f})"
    wait_idle(live_server)


# ---- accepted and refused inputs ------------------------------------------------------------


def test_unknown_harmless_fields_are_accepted(client: openai.OpenAI, model: str) -> None:
    out = client.chat.completions.create(
        model=model, messages=CAPITAL, max_tokens=2, user="user-1234",
        extra_body={"store": False, "metadata": {"team": "tests"}},
    )
    assert out.choices[0].message.content is not None
    out = client.completions.create(model=model, prompt=PROMPT, max_tokens=2, user="user-1234")
    assert out.choices[0].text


BAD = [
    ("chat", {"max_tokens": 0}, "max_tokens"),
    ("chat", {"temperature": -1}, "temperature"),
    ("chat", {"top_p": 2}, "top_p"),
    ("chat", {"n": 0}, "n"),
    ("completions", {"logprobs": 50}, "logprobs"),
    ("completions", {"n": 0}, "n"),
    ("completions", {"top_p": 2}, "top_p"),
]


@pytest.mark.parametrize("api,args,param", BAD, ids=[f"{a}-{p}" for a, _, p in BAD])
def test_bad_inputs_raise_bad_request(
    client: openai.OpenAI, model: str, api: str, args: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        if api == "chat":
            client.chat.completions.create(model=model, messages=CAPITAL,
                                           **{"max_tokens": 2, **args})
        else:
            client.completions.create(model=model, prompt=PROMPT, **{"max_tokens": 2, **args})
    assert exc.value.status_code == 400
    assert exc.value.param is not None and param in exc.value.param, exc.value.body


def test_prompt_longer_than_the_context_is_refused_and_server_keeps_serving(
    live_server: LiveServer, client: openai.OpenAI, model: str
) -> None:
    with live_server.client() as c:
        ctx = c.get("/get_model_info").json()["context_length"]
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=model, prompt=[5] * (ctx + 10), max_tokens=2)
    assert exc.value.code == "context_length_exceeded", exc.value.body
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=model, max_tokens=2,
            messages=[{"role": "user", "content": "hello " * (ctx + 10)}],
        )
    # Still serving, nothing leaked.
    assert httpx.get(f"{live_server.url}/health").status_code == 200
    out = client.chat.completions.create(model=model, messages=CAPITAL, max_tokens=2)
    assert out.choices[0].message.content is not None
    wait_idle(live_server)


def test_tools_refused_by_a_template_that_cannot_render_them(client: openai.OpenAI) -> None:
    # SmolLM2-Instruct's template shows role and content only: tools would vanish silently.
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=CAPITAL, tools=[tool], max_tokens=2)
    assert e.value.body["param"] == "tools" and "cannot render tools" in e.value.body["message"]
    # Not offered (tool_choice="none"), the history's tool turns still reach the template.
    history = [*CAPITAL, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris"}]
    r = client.chat.completions.create(model="m", messages=history, tools=[tool],
                                       tool_choice="none", max_tokens=2)
    assert r.choices[0].message.tool_calls is None

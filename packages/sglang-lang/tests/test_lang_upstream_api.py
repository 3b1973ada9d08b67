"""The API SGLang's frontend scripts use (issue 19): global_config, TokenUsage.reset,
select(choices_method=), gen(n=, stop_regex=, logprob arguments), run_batch(generator_style=),
RuntimeEndpoint's defaults; all on test doubles, no server."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from fake_backend import FakeBackend

import sglang as sgl
from sglang.lang.backend.base import Context, GenParams, TokenUsage
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint
from sglang.lang.chat_speculative import ChatSpecPlan
from sglang.lang.choices import ChoiceScores


@pytest.fixture(autouse=True)
def _reset_default_backend():
    yield
    sgl.set_default_backend(None)


# ---- global_config and token usage ---------------------------------------------------------


def test_global_config_holds_the_default_backend_as_given() -> None:
    be = FakeBackend(["x"])
    sgl.set_default_backend(be)
    assert sgl.global_config.default_backend is be

    class FakeRuntime:  # a sgl.Runtime-like object: programs use its endpoint
        endpoint = FakeBackend(["from the endpoint"])

    rt = FakeRuntime()
    sgl.set_default_backend(rt)
    assert sgl.global_config.default_backend is rt  # .endpoint reads as upstream

    @sgl.function
    def prog(s):
        s += sgl.gen("a")

    assert prog.run()["a"] == "from the endpoint"
    sgl.global_config.default_backend = be  # assigning it directly works too
    assert prog.run()["a"] == "x"


def test_token_usage_reset_and_concurrent_adds() -> None:
    usage = TokenUsage()
    threads = [threading.Thread(target=lambda: [usage.add(1, 2) for _ in range(1000)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (usage.prompt_tokens, usage.completion_tokens) == (4000, 8000)
    usage.reset()
    assert (usage.prompt_tokens, usage.completion_tokens) == (0, 0)
    assert sgl.TokenUsage is TokenUsage


def test_precache_and_parallel_encoding_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    @sgl.function
    def prog(s, q):
        s += "Shared prefix. "
        s += q + sgl.gen("a", max_tokens=2)

    be = FakeBackend()
    prog.run_batch([{"q": "a"}, {"q": "b"}], backend=be)
    assert be.cached_prefixes == ["Shared prefix. "]
    monkeypatch.setattr(sgl.global_config, "enable_precache_with_tracing", False)
    be = FakeBackend()
    prog.run_batch([{"q": "a"}, {"q": "b"}], backend=be)
    assert be.cached_prefixes == []

    @sgl.function
    def forks(s):
        s += "Prefix"
        f = s.fork(2)
        f += sgl.gen("x", max_tokens=1)
        f.join()

    monkeypatch.setattr(sgl.global_config, "enable_parallel_encoding", False)
    be = FakeBackend()
    forks.run(backend=be).sync()
    assert be.cached_prefixes == []


# ---- select(choices_method=) ---------------------------------------------------------------


def test_choices_methods_disagree_where_they_should() -> None:
    # "a" has the better first token, "b" the better mean; "c" is likely even without the
    # prompt, so unconditional normalization discounts it.
    lps = {"a": [-0.1, -5.0, -5.0], "b": [-0.5, -0.6], "c": [-0.2, -0.3]}
    uncond = {"a": [-3.0, -4.0], "b": [-3.0], "c": [-0.1]}
    be = FakeBackend(token_logprobs=lps, unconditional_logprobs=uncond)

    @sgl.function
    def pick(s, method):
        s += "Q:" + sgl.select("x", choices=["a", "b", "c"], choices_method=method)

    default = pick.run(method=sgl.token_length_normalized, backend=be)
    assert default["x"] == "c"
    meta = default.get_meta_info("x")
    assert meta["normalized_prompt_logprobs"] == pytest.approx([-10.1 / 3, -0.55, -0.25])
    assert pick.run(method=sgl.greedy_token_selection, backend=be)["x"] == "a"
    state = pick.run(method=sgl.unconditional_likelihood_normalized, backend=be)
    assert state["x"] == "b"
    assert state.get_meta_info("x")["normalized_unconditional_prompt_logprobs"] == (
        pytest.approx([-10.1 / 3 + 3.5, -0.55 + 3.0, -0.25 + 0.1]))
    with pytest.raises(TypeError, match="choices_method"):
        sgl.select("x", ["a"], choices_method="greedy")  # type: ignore[arg-type]
    assert pick.run(method=sgl.token_length_normalized, backend=be)["x"] == "c"


def test_greedy_ties_go_to_later_tokens_and_short_choices_pad_with_their_mean() -> None:
    scores = ChoiceScores(["x", "y", "z"], [[-1.0, -2.0], [-1.0, -0.5, -9.0], [-1.0]])
    # Position 1: x -2.0, y -0.5, z pads with its mean -1.0: y wins.
    assert sgl.greedy_token_selection(scores).index == 1
    assert sgl.greedy_token_selection(ChoiceScores(["x"], [[]])).index == 0
    with pytest.raises(ValueError, match="without the prompt"):
        sgl.unconditional_likelihood_normalized(ChoiceScores(["x"], [[-1.0]]))


def test_runtime_endpoint_scores_choices_alone_for_unconditional() -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        texts = body["text"] if isinstance(body["text"], list) else [body["text"]]
        # One token per character, logprob -len(text) for each (the first has none).
        out = [{"text": "", "meta_info": {"prompt_tokens": len(t), "completion_tokens": 0,
                "input_token_logprobs": [[None if i == 0 else -float(len(t)), ord(c), c]
                                         for i, c in enumerate(t)]}} for t in texts]
        return httpx.Response(200, json=out if isinstance(body["text"], list) else out[0])

    ep = RuntimeEndpoint("http://test")
    ep._client = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    res = ep.select(Context("Q"), ["ab", "c"], choices_method=sgl.unconditional_likelihood_normalized)
    assert bodies[-1]["text"] == ["ab", "c"] and bodies[-1]["logprob_start_len"] == 0
    # Conditional means: "Qab" -> -3, "Qc" -> -2; alone: "ab" -> -2 (one scored token), "c" -> 0.
    assert res.meta["normalized_unconditional_prompt_logprobs"] == [-1.0, -2.0]
    assert res.choice == "ab"
    assert ep.select(Context("Q"), ["ab", "c"]).choice == "c"  # the default: -2 beats -3


# ---- gen(n=, stop_regex=, logprob arguments) -----------------------------------------------


def test_gen_n_returns_the_list_and_continues_with_the_first() -> None:
    be = FakeBackend(["one", "two", "three", "next"])

    @sgl.function
    def prog(s):
        s += "A:" + sgl.gen("a", n=3, max_tokens=8) + "|" + sgl.gen("b")

    state = prog.run(backend=be)
    assert state["a"] == ["one", "two", "three"]
    assert state.text() == "A:one|next"
    assert len(state.get_meta_info("a")["n_meta_info"]) == 3
    with pytest.raises(ValueError, match="n >= 1"):
        sgl.gen("a", n=0)
    streamed = prog.run(backend=FakeBackend(["x"] * 4), stream=True)
    with pytest.raises(ValueError, match="can't be streamed"):
        list(streamed.text_iter())


def test_stop_regex_n_and_logprob_fields_reach_the_native_request() -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # /get_model_info, for the chat template
            return httpx.Response(200, json={"model_path": "m", "chat_template": None})
        body = json.loads(request.content)
        bodies.append(body)
        meta = {"prompt_tokens": 1, "completion_tokens": 1, "output_token_logprobs": [[-0.5, 7, "x"]]}
        n = body["sampling_params"].get("n", 1)
        if n > 1:
            return httpx.Response(200, json=[{"text": f"s{i}", "meta_info": meta} for i in range(n)])
        return httpx.Response(200, json={"text": "x", "meta_info": meta})

    ep = RuntimeEndpoint("http://test")
    ep._client = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))

    @sgl.function
    def prog(s):
        s += "Q:" + sgl.gen("a", stop_regex=r"\d+", return_logprob=True, top_logprobs_num=2)
        s += sgl.gen("b", n=2)

    state = prog.run(backend=ep, logprob_start_len=0, return_text_in_logprobs=True)
    assert state["a"] == "x" and state["b"] == ["s0", "s1"]
    first, second = bodies
    assert first["sampling_params"]["stop_regex"] == r"\d+"
    assert "return_logprob" not in first["sampling_params"]
    assert (first["return_logprob"], first["top_logprobs_num"], first["logprob_start_len"],
            first["return_text_in_logprobs"]) == (True, 2, 0, True)
    assert state.get_meta_info("a")["output_token_logprobs"] == [[-0.5, 7, "x"]]
    assert second["sampling_params"]["n"] == 2 and "return_logprob" not in second


def test_logprob_meta_from_the_fake_backend_and_run_batch_defaults() -> None:
    @sgl.function
    def prog(s, q):
        s += q + sgl.gen("a", max_tokens=3)

    states = prog.run_batch([{"q": "ab"}], backend=FakeBackend(), return_logprob=True)
    assert states[0].get_meta_info("a")["output_token_logprobs"] == [
        [-1.0, 97, "a"], [-1.0, 98, "b"]]
    with pytest.raises(TypeError, match="unexpected"):
        prog.run_batch([{"q": "a"}], backend=FakeBackend(), logprobs=True)


# ---- run_batch(generator_style=True) -------------------------------------------------------


def test_run_batch_generator_yields_states_as_they_finish() -> None:
    gates = {q: threading.Event() for q in "abc"}

    def answer(ctx: Context, params: GenParams) -> str:
        q = ctx.text[-1]
        gates[q].wait(timeout=10)
        return q.upper()

    @sgl.function
    def prog(s, q):
        s += q + sgl.gen("a", max_tokens=1)

    it = prog.run_batch([{"q": q} for q in "abc"], backend=FakeBackend(answer),
                        generator_style=True, num_threads=3)
    assert not isinstance(it, list)
    gates["c"].set()
    assert next(it)["a"] == "C"  # the last input finished first and comes first
    gates["a"].set()
    assert next(it)["a"] == "A"
    gates["b"].set()
    assert [s["a"] for s in it] == ["B"]
    ordered = prog.run_batch([{"q": q} for q in "abc"], backend=FakeBackend(answer))
    assert [s["a"] for s in ordered] == ["A", "B", "C"]


# ---- RuntimeEndpoint defaults --------------------------------------------------------------


def test_runtime_endpoint_has_no_read_timeout_and_names_its_model() -> None:
    ep = RuntimeEndpoint("http://test")
    assert ep._client.timeout.read is None and ep._client.timeout.connect == 30.0
    ep._client = httpx.Client(base_url="http://test", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"model_path": "org/model", "chat_template": None})))
    assert ep.get_model_name() == "org/model"


# ---- chat speculation: splitting one answer along the block's fixed text -------------------


def _plan(*terms: object) -> ChatSpecPlan:
    plan = ChatSpecPlan(64)
    for t in terms:
        if isinstance(t, str):
            plan.add_text(t)
        else:
            plan.add_gen(*t)  # type: ignore[misc]
    return plan


def test_chat_spec_plan_split() -> None:
    stop_nl = GenParams(stop="\n")
    plan = _plan("Name:", ("name", stop_nl), "\nAge:", ("age", GenParams()))
    assert plan.split("Name: Ann\nAge: 3\nmore")
    assert [t.value for t in plan.terms if t.text is None] == [" Ann", " 3\nmore"]
    # No stop string: the next fixed text ends the gen; reworded whitespace is tolerated.
    plan = _plan("Name:", ("name", GenParams()), " Age:", ("age", stop_nl))
    assert plan.split("Name: Bob\n\nAge: 40\nbye")
    assert [t.value for t in plan.terms if t.text is None] == [" Bob\n\n", " 40"]
    assert not _plan("Name:", ("n", stop_nl), "\nAge:", ("a", stop_nl)).split("Bob\nBob")
    with pytest.raises(ValueError, match="plain gens only"):
        _plan(("n", GenParams(regex="a+")))


def test_chat_speculation_on_a_fake_chat_backend() -> None:
    from sglang.lang.chat_template import ChatTemplate

    template = ChatTemplate(name="t", role_prefix_and_suffix={
        r: (f"<{r}>", f"</{r}>") for r in ("system", "user", "assistant")})
    be = FakeBackend(["City: Rome\nRiver: Tiber"], chat_template=template,
                     supports_chat_speculation=True)

    @sgl.function(num_api_spec_tokens=64)
    def prog(s):
        s += sgl.user("A city and its river?")
        s += sgl.assistant("City:" + sgl.gen("city", stop="\n") + "\nRiver:" + sgl.gen("river"))

    state = prog.run(backend=be)
    assert (state["city"], state["river"]) == (" Rome", " Tiber")
    assert be.count("generate") == 1 and be.calls[0][2].max_new_tokens == 64
    assert be.calls[0][1].text == "<user>A city and its river?</user><assistant>"
    assert state.text().endswith("<assistant>City: Rome\nRiver: Tiber</assistant>")
    # Without num_api_spec_tokens the same backend runs gen by gen.
    plain = sgl.function(prog.func)
    be = FakeBackend([" Oslo", " Akerselva"], chat_template=template,
                     supports_chat_speculation=True)
    assert plain.run(backend=be)["river"] == " Akerselva" and be.count("generate") == 2


def test_reading_a_speculated_variable_inside_its_block_fails_instead_of_hanging() -> None:
    be = FakeBackend(["Name: Ann"], supports_chat_speculation=True)

    @sgl.function(num_api_spec_tokens=32)
    def prog(s):
        with s.assistant():
            s += "Name:" + sgl.gen("name", stop="\n")
            s += s["name"]

    with pytest.raises(ValueError, match="inside the speculative assistant block"):
        prog.run(backend=be)

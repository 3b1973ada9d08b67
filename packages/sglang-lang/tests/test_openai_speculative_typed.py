"""The OpenAI backend on SGLang's test programs, against a recorded fake of the API
(`fake_openai`): speculative execution (completion and chat models), typed gens on completion
models, n samples."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("openai")

from fake_openai import char_logprob, fake_openai  # noqa: E402

import sglang as sgl  # noqa: E402
from sglang.lang.chat_speculative import MAX_TRIES  # noqa: E402

FULL = "Name: Ada Lovelace\nBirthday: December 10, 1815\nJob: mathematician\nName: more"


def _character(s: Any) -> None:
    s += "Construct a character within the following format:\n"
    s += "Name: Steve Jobs.\nBirthday: February 24, 1955.\nJob: Apple CEO.\n"
    s += "\nPlease generate new Name, Birthday and Job.\n"
    s += "Name:" + sgl.gen("name", stop="\n") + "\nBirthday:" + sgl.gen("birthday", stop="\n")
    s += "\nJob:" + sgl.gen("job", stop="\n") + "\n"


spec_character = sgl.function(num_api_spec_tokens=64)(_character)
plain_character = sgl.function(_character)


def _script(body: dict[str, Any]) -> str:
    """A model that knows FULL: after a field name it answers the rest of FULL from there."""
    field = next(f for f in ("Birthday:", "Job:", "Name:") if body["prompt"].endswith(f))
    return FULL[FULL.index(field) + len(field):]


def test_completion_speculation_serves_three_gens_with_one_call() -> None:
    be, requests = fake_openai(_script)
    state = spec_character.run(backend=be)
    assert (state["name"], state["birthday"], state["job"]) == (
        " Ada Lovelace", " December 10, 1815", " mathematician")
    assert len(requests) == 1
    assert "stop" not in requests[0] and requests[0]["max_tokens"] == 128  # max(128, 64)
    assert state.text().endswith("Name: Ada Lovelace\nBirthday: December 10, 1815\n"
                                 "Job: mathematician\n")

    # SGLang's test_completion_speculative: fewer prompt tokens with speculation.
    sgl.set_default_backend(be)
    try:
        usage = sgl.global_config.default_backend.token_usage
        usage.reset()
        spec_character().sync()
        with_spec = usage.prompt_tokens
        usage.reset()
        plain_character().sync()
        without = usage.prompt_tokens
    finally:
        sgl.set_default_backend(None)
    assert len(requests) == 1 + 1 + 3
    assert with_spec < without


def test_chat_models_do_not_speculate_completions_but_answer_assistant_blocks_once() -> None:
    answers = iter(["Name: Grace Hopper\nBirthday: December 9, 1906\nJob: admiral"])
    be, requests = fake_openai(lambda body: next(answers), is_chat_model=True)

    @sgl.function(num_api_spec_tokens=256)
    def chat_character(s):
        s += sgl.system("You are a helpful assistant.")
        s += sgl.user("Construct a character within the following format:")
        s += sgl.assistant("Name: Steve Jobs.\nBirthday: February 24, 1955.\nJob: Apple CEO.\n")
        s += sgl.user("Please generate new Name, Birthday and Job.\n")
        s += sgl.assistant("Name:" + sgl.gen("name", stop="\n") + "\nBirthday:"
                           + sgl.gen("birthday", stop="\n") + "\nJob:" + sgl.gen("job", stop="\n"))

    state = chat_character.run(backend=be)
    assert (state["name"], state["birthday"], state["job"]) == (
        " Grace Hopper", " December 9, 1906", " admiral")
    assert len(requests) == 1 and requests[0]["max_tokens"] == 256
    assert [m["role"] for m in requests[0]["messages"]] == ["system", "user", "assistant", "user"]
    assert state.messages()[-1] == {"role": "assistant", "content":
                                    "Name: Grace Hopper\nBirthday: December 9, 1906\nJob: admiral"}
    assert state.get_meta_info("job")["speculative"] is True


def test_chat_speculation_retries_then_names_the_answer() -> None:
    be, requests = fake_openai(lambda body: "I can't help with that.", is_chat_model=True)

    @sgl.function(num_api_spec_tokens=32)
    def two(s):
        s += sgl.user("Name and age?")
        s += sgl.assistant("Name:" + sgl.gen("name", stop="\n") + "\nAge:" + sgl.gen("age"))

    state = two.run(backend=be)
    assert isinstance(state.error(), ValueError) and "I can't help" in str(state.error())
    assert len(requests) == MAX_TRIES

    @sgl.function(num_api_spec_tokens=32)
    def with_select(s):
        s += sgl.user("Yes?")
        s += sgl.assistant(sgl.select("x", ["yes", "no"]))

    assert "only text and sgl.gen" in str(with_select.run(backend=be).error())


def test_typed_gens_on_completion_models() -> None:
    answers = {"hours in a day is ": "24 hours.\nThe", "days in a year is ": " 365\n",
               '"name": "': 'Paris", "x"', "value of pi? ": "3.14159 roughly", "blue? ": "True."}

    def answer(body: dict[str, Any]) -> str:
        return next(v for k, v in answers.items() if body["prompt"].endswith(k))

    be, requests = fake_openai(answer)

    @sgl.function
    def typed(s):
        s += "The number of hours in a day is " + sgl.gen_int("hours") + "\n"
        s += "The number of days in a year is " + sgl.gen("days", dtype=int) + "\n"
        s += '{"name": ' + sgl.gen_string("name") + "}\n"
        s += "What is the value of pi? " + sgl.gen("pi", dtype=float) + "\n"
        s += "Is the sky blue? " + sgl.gen("blue", dtype=bool)

    state = typed.run(backend=be, temperature=0.1)
    assert (state["hours"], state["days"], state["pi"], state["blue"]) == (24, 365, 3.14159, True)
    assert state["name"] == '"Paris"' and json.loads(state["name"]) == "Paris"
    assert requests[2]["prompt"].endswith('{"name": "') and requests[2]["stop"] == ['"']
    assert requests[0]["stop"] == ["\n"] and "regex" not in json.dumps(requests)

    bad, _ = fake_openai(lambda body: "many")
    with pytest.raises(ValueError, match="'many', which does not start with a int"):
        typed.run(backend=bad)["hours"]
    chat, _ = fake_openai(lambda body: "1", is_chat_model=True)

    @sgl.function
    def chat_int(s):
        s += sgl.user("A number?") + sgl.assistant(sgl.gen_int("n"))

    with pytest.raises(ValueError, match="need a completion model"):
        chat_int.run(backend=chat)["n"]


def test_n_samples_and_refusals() -> None:
    be, requests = fake_openai(lambda body: f"s{body['sample']}\n")

    @sgl.function
    def samples(s):
        s += "Q:" + sgl.gen("a", n=3, stop="\n")

    state = samples.run(backend=be)
    assert state["a"] == ["s0", "s1", "s2"] and requests[0]["n"] == 3
    assert state.text() == "Q:s0"

    @sgl.function
    def with_logprobs(s):
        s += "Q:" + sgl.gen("a", return_logprob=True)

    assert "does not return logprobs" in str(with_logprobs.run(backend=be).error())

    @sgl.function
    def stop_regex(s):
        s += "Q:" + sgl.gen("a", stop_regex=r"\d")

    stop_regex.run(backend=be).sync()
    assert requests[-1]["stop_regex"] == r"\d"  # SGLang-compatible servers take it


def test_select_choices_methods_on_completion_models() -> None:
    be, requests = fake_openai(lambda body: "")
    prompt, choices = "Q: x? A: ", ["ae", "xyzq", "ai"]

    def mean_after(text: str, start: int) -> float:
        values = [char_logprob(text[:k], text[k]) for k in range(max(start, 1), len(text))]
        return sum(values) / len(values)

    @sgl.function
    def pick(s, method):
        s += prompt + sgl.select("x", choices=choices, choices_method=method)

    state = pick.run(method=sgl.token_length_normalized, backend=be)
    expected = [mean_after(prompt + c, len(prompt)) for c in choices]
    assert state.get_meta_info("x")["normalized_prompt_logprobs"] == pytest.approx(expected)
    assert state["x"] == "ae" and len(requests) == 1 and requests[0]["echo"] is True
    state = pick.run(method=sgl.unconditional_likelihood_normalized, backend=be)
    state.sync()
    assert requests[-1]["prompt"] == choices  # the choices scored alone
    uncond = [expected[i] - mean_after(c, 1) for i, c in enumerate(choices)]
    meta = state.get_meta_info("x")
    assert meta["normalized_unconditional_prompt_logprobs"] == pytest.approx(uncond)
    assert state["x"] == choices[max(range(3), key=lambda i: uncond[i])]
    assert pick.run(method=sgl.greedy_token_selection, backend=be)["x"] in ("ae", "ai")

    chat, _ = fake_openai(lambda body: "ae", is_chat_model=True)

    @sgl.function
    def chat_pick(s):
        s += sgl.user("Pick") + sgl.assistant(
            sgl.select("x", choices=choices, choices_method=sgl.greedy_token_selection))

    assert "only the default choices_method" in str(chat_pick.run(backend=chat).error())

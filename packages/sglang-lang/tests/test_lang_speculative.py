"""@sgl.function(num_api_spec_tokens=N): several gens served by one backend call."""

from __future__ import annotations

from fake_backend import FakeBackend

import sglang as sgl


@sgl.function(num_api_spec_tokens=64)
def profile(s):
    s += "Name:" + sgl.gen("name", stop="\n") + "\nAge:" + sgl.gen("age", stop="\n") + "\n"


def test_one_call_serves_consecutive_gens() -> None:
    be = FakeBackend([" Alice\nAge: 30\nJob: pilot"], supports_speculative_gen=True)
    state = profile.run(backend=be)
    assert (state["name"], state["age"]) == (" Alice", " 30")
    assert state.text() == "Name: Alice\nAge: 30\n"
    assert be.count("generate") == 1
    params = be.calls[0][2]
    assert params.stop is None and params.max_new_tokens == 128  # max(run default, 64)
    assert state.get_meta_info("age") == {"speculative": True}
    assert profile.num_api_spec_tokens == 64


def test_mismatching_constant_text_calls_the_backend_again() -> None:
    be = FakeBackend([" Alice\nCity: Paris\n", " 30\nmore"], supports_speculative_gen=True)
    state = profile.run(backend=be)
    assert (state["name"], state["age"]) == (" Alice", " 30")
    assert be.count("generate") == 2
    assert be.calls[1][1].text == "Name: Alice\nAge:"


def test_missing_stop_in_speculated_text_regenerates() -> None:
    be = FakeBackend([" Alice\nAge: 30", " 31\n"], supports_speculative_gen=True)
    state = profile.run(backend=be)
    assert state["age"] == " 31" and be.count("generate") == 2


def test_speculation_needs_backend_support_and_stop_strings() -> None:
    be = FakeBackend([" Alice\nAge: 30\n", " 30\n"])  # no supports_speculative_gen
    state = profile.run(backend=be)
    assert state["name"] == " Alice" and be.count("generate") == 2
    assert be.calls[0][2].stop == "\n"

    @sgl.function(num_api_spec_tokens=8)
    def no_stop(s):
        s += sgl.gen("a", max_tokens=3) + sgl.gen("b", max_tokens=3)

    be = FakeBackend(["abcdef", "ghi"], supports_speculative_gen=True)
    state = no_stop.run(backend=be)
    assert (state["a"], state["b"]) == ("abc", "ghi") and be.count("generate") == 2


def test_without_spec_tokens_every_gen_calls() -> None:
    @sgl.function
    def plain(s):
        s += "Name:" + sgl.gen("name", stop="\n") + "\nAge:" + sgl.gen("age", stop="\n")

    be = FakeBackend([" A\nAge: 1", " 2"], supports_speculative_gen=True)
    state = plain.run(backend=be)
    assert (state["name"], state["age"]) == (" A", " 2") and be.count("generate") == 2

"""run(stream=True): text_iter() and text_iter(var)."""

from __future__ import annotations

import threading

import pytest
from fake_backend import FakeBackend

import sglang as sgl


@sgl.function
def story(s, topic):
    s += "Topic: " + topic + "\n"
    s += "Title: " + sgl.gen("title", stop="\n") + "\n"
    s += "Body: " + sgl.gen("body")


def test_text_iter_yields_constant_text_then_gen_pieces() -> None:
    be = FakeBackend(["The Sea\nxx", "Waves roll."], stream_chunk=3)
    state = story.run(topic="sea", stream=True, backend=be)
    pieces = list(state.text_iter())
    assert pieces == ["Topic: sea\n", "Title: ", "The", " Se", "a", "\n", "Body: ",
                      "Wav", "es ", "rol", "l."]  # fmt: skip
    assert "".join(pieces) == state.text()
    assert state["title"] == "The Sea"


def test_text_iter_of_one_variable() -> None:
    be = FakeBackend(["The Sea", "Waves roll."], stream_chunk=4)
    state = story.run(topic="sea", stream=True, backend=be)
    assert list(state.text_iter("title")) == ["The ", "Sea"]
    assert "".join(state.text_iter("body")) == "Waves roll."


def test_text_iter_var_scope_pieces() -> None:
    @sgl.function
    def prog(s):
        s += "a"
        with s.var_scope("v"):
            s += "b" + sgl.gen("g")
        s += "c"

    state = prog.run(stream=True, backend=FakeBackend(["xyz"], stream_chunk=2))
    assert list(state.text_iter("v")) == ["b", "xy", "z"]
    assert state["v"] == "bxyz"


def test_first_piece_arrives_before_the_program_finishes() -> None:
    gate = threading.Event()
    state = story.run(topic="t", stream=True, backend=FakeBackend(["x", "y"], gate=gate))
    it = state.text_iter()
    assert next(it) == "Topic: t\n"
    assert next(it) == "Title: "
    gate.set()
    assert "".join(it) == "x\nBody: y"


def test_surrogate_pairs_are_never_split() -> None:
    text = "a\ud83d\ude00b\ud83d\ude01"  # surrogate-pair code units, as some decoders produce

    @sgl.function
    def prog(s):
        s += sgl.gen("g")

    state = prog.run(stream=True, backend=FakeBackend([text], stream_chunk=2))
    pieces = list(state.text_iter("g"))
    assert "".join(pieces) == text
    assert all(not ("\ud800" <= p[-1] <= "\udbff") for p in pieces)
    assert pieces == ["a", "\ud83d\ude00b", "\ud83d\ude01"]


def test_stream_errors_raise_after_the_pieces_before_them() -> None:
    state = story.run(topic="t", stream=True, backend=FakeBackend(fail_on="Title"))
    got: list[str] = []
    with pytest.raises(RuntimeError, match="fake backend failure"):
        for piece in state.text_iter():
            got.append(piece)
    assert got == ["Topic: t\n", "Title: "]
    assert isinstance(state.error(), RuntimeError)


def test_stream_body_errors_are_recorded() -> None:
    @sgl.function
    def broken(s):
        s += "x"
        raise KeyError("body")

    state = broken.run(stream=True, backend=FakeBackend())
    assert isinstance(state.error(), KeyError)
    assert state.text() == "x"


def test_text_iter_without_stream_yields_the_final_text() -> None:
    state = story.run(topic="t", backend=FakeBackend(["T", "B"]))
    assert list(state.text_iter()) == ["Topic: t\nTitle: T\nBody: B"]
    assert list(state.text_iter("title")) == ["T"]

"""`sgl.separate_reasoning`: the gen's variable keeps the answer, `<name>_reasoning_content` the
thinking; reads wait for the split; the program text keeps the whole output; bad uses refused."""

from __future__ import annotations

import threading

import pytest
from fake_backend import FakeBackend

import sglang as sgl

R1_OUTPUT = "Two and two.\nThat makes 4.\n</think>\n\nIt is 4."


@sgl.function
def ask(s, model_type):
    s += "Q: 2+2?\nA: <think>\n"
    s += sgl.separate_reasoning(sgl.gen("answer", max_tokens=64), model_type=model_type)
    s += "\nQ: and 3+3?\nA: " + sgl.gen("second", max_tokens=8)


def test_gen_variable_split_into_answer_and_reasoning() -> None:
    be = FakeBackend([R1_OUTPUT, "6"])
    state = ask.run(model_type="deepseek-r1", backend=be)
    assert state["answer"] == "It is 4."
    assert state["answer_reasoning_content"] == "Two and two.\nThat makes 4."
    assert state["second"] == "6"
    assert R1_OUTPUT in state.text()  # the model's own text stays in the prompt


def test_qwen3_output_without_a_block_is_all_answer() -> None:
    state = ask.run(model_type="qwen3", backend=FakeBackend(["It is 4.", "6"]))
    assert state["answer"] == "It is 4." and state["answer_reasoning_content"] == ""


def test_reads_of_the_gen_wait_for_the_split() -> None:
    gate = threading.Event()
    be = FakeBackend([R1_OUTPUT, "6"], gate=gate)
    state = ask.run(model_type="deepseek-r1", backend=be)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(state["answer"]))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive()
    gate.set()
    reader.join(5)
    assert got == ["It is 4."]  # never the raw text with the thinking


def test_bad_uses_are_refused() -> None:
    with pytest.raises(ValueError, match="model_type"):
        sgl.separate_reasoning(sgl.gen("x"))
    with pytest.raises(ValueError, match="deepseek-r1"):
        sgl.separate_reasoning(sgl.gen("x"), model_type="nope")
    with pytest.raises(ValueError, match="named sgl.gen"):
        sgl.separate_reasoning(sgl.gen(), model_type="qwen3")

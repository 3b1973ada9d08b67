"""Role blocks: rendered text, messages, what chat backends see, default system prompt."""

from __future__ import annotations

import pytest
from fake_backend import FakeBackend

import sglang as sgl
from sglang.lang.chat_template import ChatTemplate

TEMPLATE = ChatTemplate(
    name="test",
    role_prefix_and_suffix={
        "system": ("<s>", "</s>\n"),
        "user": ("<u>", "</u>\n"),
        "assistant": ("<a>", "</a>\n"),
    },
)
WITH_DEFAULT = ChatTemplate(
    name="test-default",
    role_prefix_and_suffix=TEMPLATE.role_prefix_and_suffix,
    default_system_prompt="Be helpful.",
)


@sgl.function
def chat(s, question):
    s += sgl.system("You are terse.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=8))
    s += sgl.user("Why?")
    s += sgl.assistant(sgl.gen("why"))


def test_roles_render_text_and_messages() -> None:
    be = FakeBackend(["Four.", "Math."], chat_template=TEMPLATE)
    state = chat.run(question="2+2?", backend=be)
    assert state.text() == (
        "<s>You are terse.</s>\n<u>2+2?</u>\n<a>Four.</a>\n<u>Why?</u>\n<a>Math.</a>\n"
    )
    assert state.messages() == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "Math."},
    ]


def test_a_gen_in_an_assistant_block_sees_messages_up_to_the_user_turn() -> None:
    be = FakeBackend(["Four.", "Math."], chat_template=TEMPLATE)
    chat.run(question="2+2?", backend=be).sync()
    first, second = be.calls[0][1], be.calls[1][1]
    assert first.text == "<s>You are terse.</s>\n<u>2+2?</u>\n<a>"
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == "Four."


def test_default_system_prompt_is_inserted_before_the_first_non_system_block() -> None:
    @sgl.function
    def no_system(s):
        s += sgl.user("hi") + sgl.assistant(sgl.gen("a"))

    state = no_system.run(backend=FakeBackend(["yo"], chat_template=WITH_DEFAULT))
    assert state.text() == "<s>Be helpful.</s>\n<u>hi</u>\n<a>yo</a>\n"
    assert state.messages()[0] == {"role": "system", "content": "Be helpful."}

    # An explicit system block replaces the default one.
    state = chat.run(question="q", backend=FakeBackend(["a", "b"], chat_template=WITH_DEFAULT))
    assert state.text().count("<s>") == 1 and "Be helpful." not in state.text()


def test_with_blocks_and_begin_end_functions() -> None:
    be = FakeBackend(["fine"], chat_template=TEMPLATE)

    @sgl.function
    def blocks(s):
        with s.system():
            s += "sys"
        with s.user():
            s += "How " + "are you?"
        s += sgl.assistant_begin()
        s += "I am " + sgl.gen("mood")
        s += sgl.assistant_end()
        s += sgl.user_begin() + "bye" + sgl.user_end()
        s += sgl.system_begin() + sgl.system_end()
        s.assistant("ok")

    state = blocks.run(backend=be)
    assert state.messages() == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "I am fine"},
        {"role": "user", "content": "bye"},
        {"role": "system", "content": ""},
        {"role": "assistant", "content": "ok"},
    ]
    # The open assistant block's "I am " is in the text, not in the messages.
    ctx = be.calls[0][1]
    assert ctx.text.endswith("<a>I am ") and ctx.messages[-1]["role"] == "user"


def test_plain_template_is_the_fake_default() -> None:
    state = chat.run(question="q", backend=FakeBackend(["a", "b"]))
    assert state.text().startswith("SYSTEM: You are terse.\nUSER: q\nASSISTANT: a\n")


def test_mismatched_role_blocks_are_errors() -> None:
    @sgl.function
    def nested(s):
        s += sgl.user_begin() + sgl.assistant_begin()

    @sgl.function
    def wrong_end(s):
        s += sgl.user_begin() + "x" + sgl.assistant_end()

    assert "inside the open 'user' block" in str(nested.run(backend=FakeBackend()).error())
    assert "open block is 'user'" in str(wrong_end.run(backend=FakeBackend()).error())


def test_role_with_nested_gen_and_select_expression() -> None:
    be = FakeBackend(["Bob"], select_scores={"B": 1.0}, chat_template=TEMPLATE)

    @sgl.function
    def prog(s):
        s += sgl.user(
            "Name? " + sgl.gen("name", stop="\n") + " grade " + sgl.select("g", ["A", "B"])
        )

    state = prog.run(backend=be)
    assert state.messages() == [{"role": "user", "content": "Name? Bob grade B"}]


@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_state_role_methods_append(role: str) -> None:
    @sgl.function
    def prog(s):
        getattr(s, role)("hello")

    state = prog.run(backend=FakeBackend(chat_template=TEMPLATE))
    assert state.messages() == [{"role": role, "content": "hello"}]

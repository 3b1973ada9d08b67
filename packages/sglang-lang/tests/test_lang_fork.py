"""fork / join, fork groups, nested functions, var_scope and reading variables in a program."""

from __future__ import annotations

import pytest
from fake_backend import FakeBackend

import sglang as sgl


def _tips(ctx, params) -> str:
    # Answer with the tip number found at the end of the prompt, so forks get different text.
    return "detail " + ctx.text.rstrip(":\n").rsplit(" ", 1)[-1] + "\n\nrest"


def test_fork_reads_fork_vars_and_caches_the_prefix() -> None:
    be = FakeBackend(_tips)

    @sgl.function
    def tips(s):
        s += "Here are two tips.\n"
        forks = s.fork(2)
        for i, f in enumerate(forks):
            f += f"Expand tip {i + 1}:\n"
            f += sgl.gen("detail", max_tokens=64, stop="\n\n")
        s += "Tip 1: " + forks[0]["detail"] + "\n"
        s += "Tip 2: " + forks[1]["detail"] + "\n"

    state = tips.run(backend=be)
    assert state.text() == "Here are two tips.\nTip 1: detail 1\nTip 2: detail 2\n"
    assert be.cached_prefixes == ["Here are two tips.\n"]


def test_join_gather_variable_lists_each_forks_values() -> None:
    be = FakeBackend(_tips)

    @sgl.function
    def prog(s):
        s += "Start\n"
        forks = s.fork(3)
        forks += lambda i: f"Expand tip {i}:\n"
        forks += sgl.gen("detail", stop="\n\n")
        forks.join()
        s += "done"

    state = prog.run(backend=be)
    assert state["detail"] == ["detail 0", "detail 1", "detail 2"]
    assert state.text() == "Start\ndone"  # gather mode leaves the parent's text alone
    assert len(be.cached_prefixes) == 1


def test_join_concate_and_append_appends_fork_text_in_order() -> None:
    be = FakeBackend(_tips)

    @sgl.function
    def prog(s):
        s += "Go\n"
        forks = s.fork(2)
        for i in range(len(forks)):
            forks[i] += f"Expand tip {i}:\n" + sgl.gen("d", stop="\n\n") + "|"
        forks.join(mode="concate_and_append")
        s += "end"

    state = prog.run(backend=be)
    assert state.text() == "Go\nExpand tip 0:\ndetail 0|Expand tip 1:\ndetail 1|end"


def test_fork_of_one_does_not_cache_and_forks_keep_roles() -> None:
    be = FakeBackend(["a", "b"])
    kept = []

    @sgl.function
    def prog(s):
        s += sgl.user("hi")
        with s.assistant():
            (f,) = list(s.fork(1))
            f += sgl.gen("x") + sgl.assistant_end()  # the fork inherited the open block
            kept.append(f)
            s += "outer"

    state = prog.run(backend=be)
    assert be.cached_prefixes == []
    assert state.text() == "USER: hi\nASSISTANT: outer\n"
    assert kept[0].text() == "USER: hi\nASSISTANT: a\n"
    assert kept[0].messages()[-1] == {"role": "assistant", "content": "a"}
    assert kept[0]["x"] == "a" and "x" not in state.variables()


def test_fork_error_becomes_the_parents_error() -> None:
    be = FakeBackend(fail_on="boom")

    @sgl.function
    def prog(s):
        s += "x"
        forks = s.fork(2)
        forks += lambda i: "boom" if i else "ok"
        forks += sgl.gen("y")
        forks.join()
        s += sgl.gen("after")

    state = prog.run(backend=be)
    assert isinstance(state.error(), RuntimeError)
    assert "after" not in state.variables()


def test_nested_function_calls() -> None:
    be = FakeBackend({"Q: 1+1=": "2", "Q: 2+2=": "4"})

    @sgl.function
    def ask(s, q):
        s += "Q: " + q + "=" + sgl.gen("a", max_tokens=2) + "\n"
        return "asked"

    @sgl.function
    def both(s):
        s += "Quiz\n"
        s += ask("1+1")  # a nested call, added like an expression
        first = s["a"]
        ret = ask(s, q="2+2")  # or called on the state directly
        s += f"first={first} second={s['a']} ret={ret}"

    state = both.run(backend=be)
    assert state.text() == "Quiz\nQ: 1+1=2\nQ: 2+2=4\nfirst=2 second=4 ret=asked"


def test_nested_call_inside_role_and_fork_group() -> None:
    be = FakeBackend(["x", "y", "z"])

    @sgl.function
    def part(s, tag):
        s += f"<{tag}>" + sgl.gen(tag)

    @sgl.function
    def prog(s):
        s += sgl.user(part("u"))
        forks = s.fork(2)
        forks += part("f")
        forks.join()

    state = prog.run(backend=be)
    assert state.messages() == [{"role": "user", "content": "<u>x"}]
    assert sorted(state["f"]) == ["y", "z"]


def test_var_scope_captures_appended_text() -> None:
    be = FakeBackend(["Alice"])

    @sgl.function
    def prog(s):
        s += "Intro. "
        with s.var_scope("bio"):
            s += "Name: " + sgl.gen("name", stop="\n") + "."
        s += " Outro."

    state = prog.run(backend=be)
    assert state["bio"] == "Name: Alice."
    assert state["name"] == "Alice"
    assert state.text() == "Intro. Name: Alice. Outro."


def test_reading_variables_inside_the_program_waits_and_branches() -> None:
    be = FakeBackend(["7", "big"])

    @sgl.function
    def prog(s):
        s += "n=" + sgl.gen_int("n") + "\n"
        if s["n"] > 5:  # waits for the gen, converted to int
            s += "It is " + sgl.gen("size")
        s["doubled"] = s["n"] * 2

    state = prog.run(backend=be)
    assert state["size"] == "big" and state["doubled"] == 14
    assert state.text() == "n=7\nIt is big"


def test_reading_a_fork_variable_on_the_parent_says_to_join() -> None:
    be = FakeBackend(_tips)

    @sgl.function
    def prog(s):
        s += "Start\n"
        forks = s.fork(2)
        forks += lambda i: f"Expand tip {i}:\n"
        forks += sgl.gen("detail", stop="\n\n")
        s["detail"]  # before forks.join(): the parent has no such variable yet

    with pytest.raises(KeyError) as error:  # the body runs in this thread: it raises here
        prog.run(backend=be)
    text = str(error.value)
    assert "'detail'" in text and "join()" in text and "fork" in text

    @sgl.function
    def plain(s):
        s += "Start\n"
        s.fork(2)
        s["nothing"]

    with pytest.raises(KeyError) as other:  # a name no fork sets keeps the plain message
        plain.run(backend=be)
    assert "join()" not in str(other.value)

"""run's asynchronous semantics and error surfacing; run_batch."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest
from fake_backend import FakeBackend

import sglang as sgl
from sglang.lang.backend.base import GenParams
from sglang.lang.chat_template import ChatTemplate
from sglang.lang.tracing import trace_prefix


@sgl.function
def echo(s, name):
    s += "Hello " + name + "\n"
    s += sgl.gen("out", stop="\n")


def test_run_returns_before_the_gen_and_reads_wait() -> None:
    gate = threading.Event()
    be = FakeBackend(["done"], gate=gate)
    start = time.monotonic()
    state = echo.run(name="x", backend=be)
    assert time.monotonic() - start < 1.0  # did not wait for the (blocked) generate
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(state["out"]))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not result  # the read is waiting for the gen
    gate.set()
    reader.join(5)
    assert result == ["done"]


def test_backend_errors_surface_at_reads_and_in_error() -> None:
    be = FakeBackend(fail_on="Hello")
    state = echo.run(name="x", backend=be)
    with pytest.raises(RuntimeError, match="fake backend failure"):
        state["out"]
    assert isinstance(state.error(), RuntimeError)
    assert state.text() == "Hello x\n"  # what ran before the failure stays
    with pytest.raises(KeyError):
        echo.run(name="x", backend=FakeBackend(["ok"]))["nope"]


def test_nodes_after_an_error_are_skipped() -> None:
    be = FakeBackend(["a"])  # the second gen exhausts the script

    @sgl.function
    def prog(s):
        s += sgl.gen("one") + sgl.gen("two") + "tail" + sgl.gen("three")

    state = prog.run(backend=be)
    assert "exhausted" in str(state.error())
    assert state["one"] == "a" and state.text() == "a"
    with pytest.raises(RuntimeError):
        state["three"]


def test_body_exceptions_propagate_from_run() -> None:
    @sgl.function
    def broken(s):
        s += "x"
        raise ZeroDivisionError("body")

    with pytest.raises(ZeroDivisionError):
        broken.run(backend=FakeBackend())


def test_run_batch_keeps_order_and_isolates_errors() -> None:
    be = FakeBackend(delay=0.01, fail_on="bad")
    batch = [{"name": f"n{i}"} for i in range(10)] + [{"name": "bad"}]
    states = echo.run_batch(batch, backend=be, temperature=0.0)
    assert [s["out"] for s in states[:10]] == [f"Hello n{i}" for i in range(10)]
    assert isinstance(states[10].error(), RuntimeError)
    assert all(s.error() is None for s in states[:10])
    assert all(c[2].temperature == 0.0 for c in be.calls)


def test_run_batch_body_exception_is_recorded_not_raised() -> None:
    @sgl.function
    def maybe(s, x):
        s += "v" + sgl.gen("v")
        if x == 1:
            raise ValueError("bad x")

    states = maybe.run_batch([{"x": 0}, {"x": 1}, {"x": 2}], backend=FakeBackend(["a", "b", "c"]))
    assert [type(s.error()) for s in states] == [type(None), ValueError, type(None)]
    assert states[1]["v"] in {"a", "b", "c"}  # what it submitted before failing still ran


def test_run_batch_threads_and_positional_items() -> None:
    be = FakeBackend()
    assert echo.run_batch([], backend=be) == []
    states = echo.run_batch([("a",), ("b",)], num_threads=1, backend=be)
    assert [s["out"] for s in states] == ["Hello a", "Hello b"]
    states = echo.run_batch([{"name": "c"}] * 3, num_threads=2, backend=be)
    assert [s.text() for s in states] == ["Hello c\nHello c"] * 3


def test_run_batch_waits_for_every_program() -> None:
    be = FakeBackend(delay=0.05)
    states = echo.run_batch([{"name": str(i)} for i in range(4)], backend=be)
    assert all(s._ex.finished for s in states)


def test_run_batch_caches_the_constant_prefix() -> None:
    template = ChatTemplate("t", {r: (f"[{r}]", "\n") for r in ("system", "user", "assistant")},
                            default_system_prompt="SYS")  # fmt: skip
    be = FakeBackend(chat_template=template)

    @sgl.function
    def prog(s, q, n=3):
        s += "Shared intro. "
        with s.user():
            s += "Question: "
            s += q
        s += sgl.assistant(sgl.gen("a"))

    states = prog.run_batch([{"q": "a"}, {"q": "b"}], backend=be)
    assert be.cached_prefixes == ["Shared intro. [system]SYS\n[user]Question: "]
    assert states[1].text().startswith("Shared intro. [system]SYS\n[user]Question: b\n[assistant]")

    @sgl.function
    def inline(s, q):
        s += "Shared. "
        s += "More. " + sgl.user("Q: " + q)  # `"Q: " + q` uses the argument: stops the trace

    be.cached_prefixes.clear()
    inline.run_batch([{"q": "a"}, {"q": "b"}], backend=be)
    assert be.cached_prefixes == ["Shared. "]
    # One program: nothing to share.
    be.cached_prefixes.clear()
    prog.run_batch([{"q": "a"}], backend=be)
    assert be.cached_prefixes == []


@pytest.mark.parametrize(
    ("body", "prefix"),
    [
        (lambda s, x: s.__iadd__(f"A {x}"), ""),  # formatting an argument ends the trace
        (lambda s, x: (s.__iadd__("A "), s.__iadd__(x)), "A "),
        (lambda s, x: (s.__iadd__("A "), x > 3), "A "),
        (lambda s, x: (s.__iadd__("A "), s.fork(2)), "A "),
        (lambda s, x: (s.__iadd__("A "), s["v"]), "A "),
        (lambda s, x: s.__iadd__("A " + sgl.gen("v") + "B"), "A "),
        (lambda s, x: (s.__iadd__("A "), 1 / 0), "A "),
    ],
)
def test_trace_prefix_stops_at_the_first_non_constant_step(body, prefix) -> None:
    fn = sgl.function(body)
    assert trace_prefix(fn, FakeBackend(), GenParams()) == prefix


def test_trace_prefix_with_bound_arguments_and_broad_excepts() -> None:
    def body(s, x, y):
        s += "Fixed " + y + " "
        try:
            s += x
        except Exception:  # user code cannot swallow the end of the trace
            s += "swallowed"

    fn = sgl.function(body).bind(y="Y")
    assert trace_prefix(fn, FakeBackend(), GenParams()) == "Fixed Y "


def test_progress_bar_with_and_without_tqdm(monkeypatch) -> None:
    updates: list[int] = []

    class Bar:
        def __init__(self, total: int) -> None:
            self.total = total

        def update(self, n: int) -> None:
            updates.append(n)

        def close(self) -> None:
            updates.append(-1)

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=Bar))
    states = echo.run_batch(
        [{"name": "a"}, {"name": "b"}], progress_bar=True, backend=FakeBackend()
    )
    assert len(states) == 2 and updates == [1, 1, -1]

    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    states = echo.run_batch([{"name": "a"}], progress_bar=True, backend=FakeBackend())
    assert states[0]["out"] == "Hello a"

"""ProgramState (the `s` of a program and the result of `f.run`) and fork groups."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sglang.lang import ir
from sglang.lang.interpreter import StreamExecutor


class ProgramState:
    def __init__(self, executor: StreamExecutor) -> None:
        self._ex = executor
        self.ret_value: Any = None  # what the program body returned

    # ---- building the program ---------------------------------------------------------------

    def __iadd__(self, other: Any) -> ProgramState:
        self._append(other)
        return self

    def _append(self, other: Any) -> None:
        for node in ir.flatten(other):
            if isinstance(node, ir.SglCall):
                node.func.invoke(self, node.args, node.kwargs)  # a nested program, inline
            else:
                self._ex.submit(node)

    def _role(self, role: str, expr: Any = None) -> Any:
        if expr is not None:
            self._append(ir.SglRoleBegin(role) + expr + ir.SglRoleEnd(role))
            return None
        return self._block(ir.SglRoleBegin(role), ir.SglRoleEnd(role))

    @contextmanager
    def _block(self, begin: ir.SglExpr, end: ir.SglExpr) -> Iterator[None]:
        self._ex.submit(begin)
        yield
        self._ex.submit(end)

    def system(self, expr: Any = None) -> Any:
        """`s.system("...")` appends a system block; `with s.system():` opens one."""
        return self._role("system", expr)

    def user(self, expr: Any = None) -> Any:
        return self._role("user", expr)

    def assistant(self, expr: Any = None) -> Any:
        return self._role("assistant", expr)

    def var_scope(self, name: str) -> Any:
        """`with s.var_scope("x"):` stores everything appended inside as variable x."""
        return self._block(ir.SglVarScopeBegin(name), ir.SglVarScopeEnd(name))

    def fork(self, n: int = 1) -> ProgramStateGroup:
        return ProgramStateGroup([ProgramState(ex) for ex in self._ex.fork(int(n))], self)

    # ---- reading ---------------------------------------------------------------------------

    def _wait_body(self) -> None:
        # From outside a streaming body, "the program's text" means after the body has finished.
        ex = self._ex
        if threading.get_ident() != ex.body_ident and not ex.tracing:
            ex.body_done.wait()

    def sync(self) -> None:
        self._wait_body()
        self._ex.sync()

    def __getitem__(self, name: str) -> Any:
        return self._ex.get_var(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set_var(name, value)

    def get_var(self, name: str) -> Any:
        return self._ex.get_var(name)

    def set_var(self, name: str, value: Any) -> None:
        self._ex.submit(ir.SglSetVar(name, value))

    def get_meta_info(self, name: str) -> dict[str, Any]:
        self._ex.get_var(name)  # waits for it
        return self._ex.vars.meta.get(name, {})

    def variables(self) -> dict[str, Any]:
        self.sync()
        return {name: self._ex.get_var(name) for name in list(self._ex.vars.values)}

    def text(self) -> str:
        self.sync()
        return self._ex.text_

    def messages(self) -> list[dict[str, str]]:
        """The completed role blocks as chat messages ({"role", "content"})."""
        self.sync()
        return [dict(m) for m in self._ex.messages_]

    def error(self) -> BaseException | None:
        self.sync()
        return self._ex.error_

    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        """Yield text as it is produced (all of it, or only variable `var_name`'s pieces).

        Without `stream=True` the program is not streamed: this yields the final text (or value)
        once. An error is raised after the pieces produced before it.
        """
        ex = self._ex
        if not ex.stream:
            yield self.text() if var_name is None else str(self.get_var(var_name))
            return
        index = 0
        while True:
            with ex.cond:
                while index >= len(ex.pieces) and not ex.finished and ex.error_ is None:
                    ex.cond.wait()
                new, index = ex.pieces[index:], len(ex.pieces)
                done = ex.finished or ex.error_ is not None
            for piece, tags in new:
                if piece is None:  # a variable finished
                    if var_name is not None and tags == var_name:
                        return
                elif var_name is None or var_name in tags:
                    yield piece
            if done and index == len(ex.pieces):
                if ex.error_ is not None:
                    raise ex.error_
                return

    def __repr__(self) -> str:
        return f"ProgramState({self.text()!r})"


class ProgramStateGroup:
    """The states `s.fork(n)` returns: index them, iterate them, or `forks += X` to append X to
    every fork (X may be a callable taking the fork index)."""

    def __init__(self, states: list[ProgramState], parent: ProgramState) -> None:
        self.states = states
        self.parent = parent

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __setitem__(self, i: int, state: ProgramState) -> None:
        # `forks[i] += x` stores the (same) state back; replacing a fork is not meaningful.
        if state is not self.states[i]:
            raise TypeError("fork states cannot be replaced")

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Any | Callable[[int], Any]) -> ProgramStateGroup:
        for i, state in enumerate(self.states):
            state._append(other(i) if callable(other) else other)
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """Wait for every fork, then bring its results into the parent, in the parent's order:

        - "gather_variable": each variable set in the forks becomes, in the parent, the list of
          its values across the forks (None where a fork did not set it).
        - "concate_and_append": the text the forks added is concatenated and appended.
        A fork's error becomes the parent's error.
        """
        if mode not in ("gather_variable", "concate_and_append"):
            raise ValueError(f"unknown join mode {mode!r}")
        executors = [state._ex for state in self.states]
        for ex in executors:
            ex.sync()
        failed = [ex.error_ for ex in executors if ex.error_ is not None]
        if failed:
            self.parent._ex.submit(ir.SglFail(failed[0]))
        elif mode == "gather_variable":
            names = list(dict.fromkeys(name for ex in executors for name in ex.vars.assigned))
            for name in names:
                values = [
                    ex.get_var(name) if name in ex.vars.assigned else None for ex in executors
                ]
                self.parent._ex.submit(ir.SglSetVar(name, values))
        else:
            self.parent._append("".join(ex.text_[ex.fork_start :] for ex in executors))
        for ex in executors:
            ex.end()

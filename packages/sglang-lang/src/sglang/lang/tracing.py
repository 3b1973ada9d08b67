"""Finding the constant text every run of a program starts with (run_batch caches it first).

The body runs once, with placeholder arguments, on a tracing executor: constant text and role
blocks render exactly as in a real run (chat template and default system prompt included), and
the trace stops at the first thing that is not constant: a gen/select/image, a fork, a variable
read, or any use of an argument (adding, formatting, comparing, indexing it...). The text
rendered by then is the same for every argument values, so it is a safe prefix to cache.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, NoReturn

from sglang.lang.backend.base import BaseBackend, GenParams
from sglang.lang.interpreter import StopTracing, StreamExecutor
from sglang.lang.ir import SglExpr
from sglang.lang.state import ProgramState

if TYPE_CHECKING:
    from sglang.lang.program import SglFunction


class _Placeholder(SglExpr):
    """Stands for an argument whose value differs between runs: any use of it ends the trace.
    An SglExpr so that `s += arg` reaches the tracing executor (which stops) instead of failing
    with a TypeError that user code could catch."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _stop(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise StopTracing

    __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _stop
    __str__ = __repr__ = __format__ = __bool__ = __len__ = __iter__ = __contains__ = _stop
    __getitem__ = __setattr__ = __call__ = __int__ = __float__ = __index__ = _stop
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _stop  # type: ignore[assignment]

    def __getattr__(self, name: str) -> NoReturn:
        raise StopTracing


def trace_prefix(func: SglFunction, backend: BaseBackend, defaults: GenParams) -> str:
    """The text the program renders before its first non-constant step ("" if none)."""
    from sglang.lang.program import run_body

    executor = StreamExecutor(backend, defaults, backend.get_chat_template(), tracing=True)
    state = ProgramState(executor)
    kwargs: dict[str, Any] = {}
    params = list(inspect.signature(func.func).parameters.values())[1:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in func.bind_arguments:
            continue
        kwargs[p.name] = _Placeholder(p.name)
    try:
        run_body(func, state, (), kwargs)
    except (StopTracing, Exception):
        pass  # whatever was rendered before the stop is still constant
    return executor.text_

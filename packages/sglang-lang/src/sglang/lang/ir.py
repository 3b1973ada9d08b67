"""The intermediate representation of sgl programs.

`s += X` turns X into a flat list of these nodes; the interpreter executes them in order. Nodes
are plain data: all behaviour lives in `sglang.lang.interpreter`, so the same program can run on
any backend (or be traced for its constant prefix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sglang.lang.backend.base import GenParams

# Output constraints for `sgl.gen(dtype=...)`, sent to the runtime as `regex` (SGLang's values).
REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r"\"[\w\d\s]*\""

DTYPE_REGEX: dict[type, str] = {
    int: REGEX_INT,
    float: REGEX_FLOAT,
    bool: REGEX_BOOL,
    str: REGEX_STR,
}
# `dtype="int"` is accepted too, as in SGLang's examples.
DTYPE_NAMES: dict[str, type] = {t.__name__: t for t in DTYPE_REGEX}


class SglExpr:
    """Base of every node; `+` builds an expression list so `"Q: " + sgl.gen("a")` works."""

    def __add__(self, other: Any) -> SglExprList:
        return SglExprList([self, to_expr(other)])

    def __radd__(self, other: Any) -> SglExprList:
        return SglExprList([to_expr(other), self])


@dataclass(eq=False)
class SglExprList(SglExpr):
    exprs: list[SglExpr]


@dataclass(eq=False)
class SglConstantText(SglExpr):
    value: str


@dataclass(eq=False)
class SglGen(SglExpr):
    name: str | None
    params: GenParams


@dataclass(eq=False)
class SglSelect(SglExpr):
    name: str | None
    choices: list[str]
    temperature: float = 0.0
    choices_method: Any = None  # a sglang.lang.choices method; None: the default


@dataclass(eq=False)
class SglImage(SglExpr):
    source: str | bytes  # a path, a URL or the raw bytes; the backend decides how to load it


@dataclass(eq=False)
class SglVideo(SglExpr):
    source: str | bytes
    num_frames: int


@dataclass(eq=False)
class SglRoleBegin(SglExpr):
    role: str


@dataclass(eq=False)
class SglRoleEnd(SglExpr):
    role: str


@dataclass(eq=False)
class SglVarScopeBegin(SglExpr):
    name: str


@dataclass(eq=False)
class SglVarScopeEnd(SglExpr):
    name: str


@dataclass(eq=False)
class SglCall(SglExpr):
    """`other_fn(...)` evaluated inside a running program: `s += call` runs other_fn's body on s.

    `func` is an `SglFunction` (typed Any to keep this module free of the program layer).
    """

    func: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


# ---- internal nodes: the state submits these so they run in order with the program's nodes ----


@dataclass(eq=False)
class SglSetVar(SglExpr):
    name: str
    value: Any


@dataclass(eq=False)
class SglCachePrefix(SglExpr):
    """Ask the backend to cache the text so far (before a fork)."""


@dataclass(eq=False)
class SglFail(SglExpr):
    """Record an error raised outside the worker (the program body, a failed fork) in order."""

    error: BaseException


def to_expr(value: Any) -> SglExpr:
    if isinstance(value, SglExpr):
        return value
    if isinstance(value, str):
        return SglConstantText(value)
    raise TypeError(
        f"cannot add {type(value).__name__} to an sgl program; use a str or an sgl expression "
        "(sgl.gen, sgl.select, sgl.image, ...)"
    )


def flatten(value: Any) -> list[SglExpr]:
    """The primitive nodes of `value`, in execution order (expression lists are spliced)."""
    expr = to_expr(value)
    if not isinstance(expr, SglExprList):
        return [expr]
    out: list[SglExpr] = []
    for sub in expr.exprs:
        out.extend(flatten(sub))
    return out

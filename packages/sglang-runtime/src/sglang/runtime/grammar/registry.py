"""Grammar backends by name. Entries import their library only when a backend is created, so
a runtime that never sees a constraint never loads xgrammar or outlines-core."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sglang.runtime.grammar.base import GrammarBackend
from sglang.runtime.grammar.vocab import TokenVocab


@dataclass(frozen=True)
class BackendEntry:
    target: str  # "module:Class"
    kinds: tuple[str, ...]


_BACKENDS: dict[str, BackendEntry] = {
    "xgrammar": BackendEntry(
        "sglang.runtime.grammar.xgrammar_backend:XGrammarBackend", ("regex", "json_schema", "ebnf")
    ),
    "outlines": BackendEntry(
        "sglang.runtime.grammar.outlines_backend:OutlinesBackend", ("regex", "json_schema")
    ),
}


def register_backend(name: str, target: str, kinds: tuple[str, ...]) -> None:
    _BACKENDS[name] = BackendEntry(target, kinds)


def backend_names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def backend_kinds(name: str) -> tuple[str, ...]:
    return _entry(name).kinds


def create_backend(name: str, vocab: TokenVocab) -> GrammarBackend:
    module, cls = _entry(name).target.split(":")
    backend: GrammarBackend = getattr(importlib.import_module(module), cls)(vocab)
    return backend


def _entry(name: str) -> BackendEntry:
    if name not in _BACKENDS:
        raise ValueError(f"unknown grammar backend {name!r}; expected one of {tuple(_BACKENDS)}")
    return _BACKENDS[name]

"""Grammar backends by name: the classes live in `plugins.GRAMMAR_BACKENDS` (entry-point group
"sglang.grammar_backends"). A backend module imports its library (xgrammar, outlines-core) only
when a backend is created, so listing names or reading a class's `kinds` loads neither, and a
runtime that never sees a constraint never loads them."""

from __future__ import annotations

from sglang.runtime.grammar.base import GrammarBackend
from sglang.runtime.grammar.vocab import TokenVocab
from sglang.runtime.plugins import GRAMMAR_BACKENDS


def register_backend(name: str, cls: type[GrammarBackend]) -> type[GrammarBackend]:
    """Register a backend class in this process (tests, scripts); a distribution declares an
    entry point instead, which spawned processes find too."""
    registered: type[GrammarBackend] = GRAMMAR_BACKENDS.register(name, cls)
    return registered


def backend_names() -> tuple[str, ...]:
    return GRAMMAR_BACKENDS.names()


def backend_class(name: str) -> type[GrammarBackend]:
    cls: type[GrammarBackend] = GRAMMAR_BACKENDS.get(name)
    return cls


def backend_kinds(name: str) -> tuple[str, ...]:
    """The constraint kinds the backend compiles (its class's `kinds`)."""
    return tuple(backend_class(name).kinds)


def create_backend(name: str, vocab: TokenVocab) -> GrammarBackend:
    return backend_class(name)(vocab)

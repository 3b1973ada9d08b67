"""Constrained decoding: regex, JSON schema and EBNF constraints over a pluggable backend.

`GrammarManager` is what the scheduler holds; backends (xgrammar, outlines-core) live behind
`registry`; `bitmask` applies the token masks to the logits; `jump_forward` appends forced text.
"""

from sglang.runtime.grammar.base import (
    GRAMMAR_KINDS,
    GrammarBackend,
    GrammarError,
    Matcher,
    constraint_of,
)
from sglang.runtime.grammar.bitmask import mask_logits
from sglang.runtime.grammar.manager import GrammarFailure, GrammarManager
from sglang.runtime.grammar.registry import backend_names, create_backend, register_backend

__all__ = [
    "GRAMMAR_KINDS",
    "GrammarBackend",
    "GrammarError",
    "GrammarFailure",
    "GrammarManager",
    "Matcher",
    "backend_names",
    "constraint_of",
    "create_backend",
    "mask_logits",
    "register_backend",
]

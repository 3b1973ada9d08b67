"""The default backend: xgrammar (regex, JSON schema, EBNF), with its own jump-forward search."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch

from sglang.runtime.grammar.base import GrammarBackend, GrammarError, Matcher, parse_json_schema
from sglang.runtime.grammar.vocab import TokenVocab

# xgrammar's C++ errors start with "[12:00:00] /path/file.cc:83: " and sometimes a failed-check
# banner; the rest is the message a user can act on.
_LOG_PREFIX = re.compile(r"^\s*\[[\d:]+\]\s+\S+:\d+:\s*")
_CHECK_PREFIX = re.compile(r"^Check failed: .*? is false:\s*")


def clean_error(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    text = _LOG_PREFIX.sub("", lines[0] if lines else type(e).__name__)
    return _CHECK_PREFIX.sub("", text).strip() or type(e).__name__


class XGrammarMatcher(Matcher):
    def __init__(self, matcher: Any) -> None:
        self._m = matcher

    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        self._m.fill_next_token_bitmask(bitmask, row)

    def accept(self, token: int) -> bool:
        return bool(self._m.accept_token(token))

    def is_terminated(self) -> bool:
        return bool(self._m.is_terminated())

    def forced_string(self) -> str:
        try:
            return str(self._m.find_jump_forward_string())
        except UnicodeDecodeError:
            # The output so far ends inside a multi-byte character, so the forced bytes start
            # with its continuation and are no str: no jump from here.
            return ""

    def rollback(self, num_tokens: int) -> None:
        self._m.rollback(num_tokens)


class XGrammarBackend(GrammarBackend):
    name: ClassVar[str] = "xgrammar"
    kinds: ClassVar[tuple[str, ...]] = ("regex", "json_schema", "ebnf")

    def __init__(self, vocab: TokenVocab) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.vocab = vocab
        # Compiles already run on the grammar pool's worker; one thread each keeps the
        # scheduler's core free on small machines.
        self.compiler = xgr.GrammarCompiler(vocab.tokenizer_info, max_threads=1)

    def compile(self, kind: str, spec: str) -> Any:
        try:
            if kind == "regex":
                return self.compiler.compile_regex(spec)
            if kind == "json_schema":
                parse_json_schema(spec)
                # No free whitespace: small models otherwise pad JSON with newlines until they
                # run out of tokens, and fixed separators make keys a forced (jump-forward) run.
                return self.compiler.compile_json_schema(spec, any_whitespace=False)
            if kind == "ebnf":
                return self.compiler.compile_grammar(spec)
        except GrammarError:
            raise
        except Exception as e:  # xgrammar raises RuntimeError/ValueError subclasses
            raise GrammarError(f"invalid {kind}: {clean_error(e)}") from e
        raise GrammarError(f"the xgrammar backend does not support {kind}")

    def matcher(self, compiled: Any) -> Matcher:
        return XGrammarMatcher(
            self._xgr.GrammarMatcher(compiled, override_stop_tokens=self.vocab.eos_ids or None)
        )

"""A matcher that lets a reasoning model think freely and constrains only its answer.

With `SamplingParams.constraint_after` set (the server sets it to the reasoning parser's end tag,
"</think>"), the request's grammar stays inactive, every token allowed, until the generated text
contains that string; the grammar then starts from its beginning on the next token. The match is
on the tokens' bytes, so it holds however the model spells the tag (one added token or several
BPE pieces). Bytes that the closing token carries after the tag are outside the grammar.
"""

from __future__ import annotations

import torch

from sglang.runtime.grammar.base import Matcher


class ReasoningGate(Matcher):
    def __init__(self, inner: Matcher, after: str, token_bytes: list[bytes]) -> None:
        self.inner = inner
        self.after = after.encode("utf-8")
        self.token_bytes = token_bytes
        self.free_ids: list[int] = []  # tokens accepted before the grammar opened
        self.inner_count = 0  # tokens the inner matcher accepted
        self.open = False

    def _tail(self) -> bytes:
        """Enough of the free text's end to find the tag in (it spans at most len(tag) tokens
        of one byte or more)."""
        pieces = [self.token_bytes[t] if t < len(self.token_bytes) else b""
                  for t in self.free_ids[-len(self.after):]]
        return b"".join(pieces)

    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        if self.open:
            self.inner.fill_mask(bitmask, row)
        else:
            bitmask[row].fill_(-1)  # all 32 bits of every word: every token allowed

    def accept(self, token: int) -> bool:
        if self.open:
            if not self.inner.accept(token):
                return False
            self.inner_count += 1
            return True
        self.free_ids.append(token)
        self.open = self.after in self._tail()
        return True

    def is_terminated(self) -> bool:
        return self.open and self.inner.is_terminated()

    def forced_string(self) -> str:
        return self.inner.forced_string() if self.open else ""

    def rollback(self, num_tokens: int) -> None:
        undo_inner = min(num_tokens, self.inner_count)
        if undo_inner:
            self.inner.rollback(undo_inner)
            self.inner_count -= undo_inner
        rest = num_tokens - undo_inner
        if rest:
            del self.free_ids[len(self.free_ids) - rest:]
        if self.inner_count == 0 and rest:
            self.open = self.after in self._tail()

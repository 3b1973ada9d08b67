"""What a grammar backend needs to know about the tokenizer: the raw bytes of every token, the
model's vocabulary size (the logits' width, which may exceed the tokenizer's) and the stop ids."""

from __future__ import annotations

from functools import cached_property
from typing import Any


class TokenVocab:
    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_ids = sorted(eos_ids)

    @cached_property
    def tokenizer_info(self) -> Any:
        """xgrammar's view of the tokenizer. Its byte decoding of tokens (byte-level BPE,
        SentencePiece byte fallback, ...) is also what the outlines backend builds on, so the two
        backends agree on what text a token stands for."""
        import xgrammar as xgr

        # A model without an EOS id: xgrammar finds the stop tokens itself when given None (an
        # empty list is refused, which failed every constrained request of such a model).
        return xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.eos_ids or None
        )

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """The bytes each token id stands for; b"" for ids past the tokenizer."""
        decoded = [bytes(b) for b in self.tokenizer_info.decoded_vocab]
        return decoded + [b""] * (self.vocab_size - len(decoded))

    @cached_property
    def special_ids(self) -> set[int]:
        """Control tokens (BOS, EOS, chat markers): never text a grammar can match."""
        ids = set(getattr(self.tokenizer, "all_special_ids", ()) or ())
        added = getattr(self.tokenizer, "added_tokens_decoder", None) or {}
        ids.update(i for i, tok in added.items() if getattr(tok, "special", False))
        return ids

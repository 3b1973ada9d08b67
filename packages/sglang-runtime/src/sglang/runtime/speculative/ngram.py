"""N-gram (prompt-lookup) drafting: copy what followed the last time the recent tokens appeared.

For n from the max window down to the min, the last n tokens of the request's history (prompt
plus output) are looked up among its earlier n-grams; at the most recent earlier occurrence,
the tokens that followed it are the draft. This pays off when the output copies its input
(editing code, quoting, summarising with the text's own words) and costs nothing otherwise.

Each request keeps an incremental index (n-gram -> where it last ended), so a step costs a few
dict look-ups, never a scan of the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sglang.runtime.config import RuntimeArgs


class NgramIndex:
    """A token history and, for each n in [min_n, max_n], the last position each n-gram ended
    at. The index lags the history by one token: the n-grams ending at the last token are the
    ones being looked up, and must not find themselves."""

    def __init__(self, min_n: int, max_n: int) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"n-gram window sizes need 1 <= min <= max, got {min_n}, {max_n}")
        self.min_n, self.max_n = min_n, max_n
        self.tokens: list[int] = []
        self._ends: dict[int, dict[tuple[int, ...], int]] = {
            n: {} for n in range(min_n, max_n + 1)
        }
        self._indexed = 0  # n-grams ending at positions < this are in _ends

    def extend(self, tokens: Sequence[int]) -> None:
        self.tokens.extend(tokens)

    def _catch_up(self) -> None:
        toks, last = self.tokens, len(self.tokens) - 1
        for end in range(self._indexed, last):
            for n in range(self.min_n, min(self.max_n, end + 1) + 1):
                self._ends[n][tuple(toks[end - n + 1 : end + 1])] = end
        self._indexed = max(self._indexed, last)

    def propose(self, max_tokens: int) -> list[int]:
        """Up to `max_tokens` tokens that followed the longest (then most recent) earlier match
        of the history's tail; [] when nothing matches."""
        if max_tokens <= 0:
            return []
        self._catch_up()
        toks, length = self.tokens, len(self.tokens)
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            end = self._ends[n].get(tuple(toks[length - n :]))
            if end is not None:
                return toks[end + 1 : end + 1 + max_tokens]
        return []


class NgramProposer:
    """`--speculative-algorithm ngram`: prompt lookup over each request's own tokens."""

    def __init__(self, min_n: int, max_n: int) -> None:
        NgramIndex(min_n, max_n)  # validates the window sizes now, not at the first request
        self.min_n, self.max_n = min_n, max_n

    @classmethod
    def from_args(cls, args: RuntimeArgs) -> NgramProposer:
        return cls(args.speculative_ngram_min_match_window_size,
                   args.speculative_ngram_max_match_window_size)

    def propose(self, req: Any, max_tokens: int) -> list[int]:
        index = req.draft_state
        if not isinstance(index, NgramIndex):
            index = req.draft_state = NgramIndex(self.min_n, self.max_n)
            index.extend(req.prompt_ids)
        # Only the tokens generated since the last call (output only ever grows).
        index.extend(req.output_ids[len(index.tokens) - len(req.prompt_ids) :])
        return index.propose(max_tokens)

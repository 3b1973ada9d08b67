"""N-gram (prompt-lookup) drafting: copy what followed the last time the recent tokens appeared.

For n from the max window down to the min, the last n tokens of the request's history (prompt
plus output) are looked up among its earlier n-grams; at the most recent earlier occurrence,
the tokens that followed it are the draft. This pays off when the output copies its input
(editing code, quoting, summarising with the text's own words) and costs nothing otherwise.

Each request keeps an incremental index (n-gram -> where it last ended), so a step costs a few
dict look-ups, never a scan of the history.

While a request's last token is still on the GPU (an overlapped decode step), `may_draft` tells
from the tokens before it whether any window could match once it arrives: with windows of at
least n tokens, the last n - 1 known tokens must have occurred earlier. When they have not, the
scheduler lets the step overlap instead of waiting for the token only to find nothing.
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
        # Also the (min_n - 1)-grams, which `may_match` looks up.
        self._ends: dict[int, dict[tuple[int, ...], int]] = {
            n: {} for n in range(max(min_n - 1, 1), max_n + 1)
        }
        self._indexed = 0  # n-grams ending at positions < this are in _ends

    def extend(self, tokens: Sequence[int]) -> None:
        self.tokens.extend(tokens)

    def _catch_up(self) -> None:
        toks, last = self.tokens, len(self.tokens) - 1
        for end in range(self._indexed, last):
            for n, ends in self._ends.items():
                if n <= end + 1:
                    ends[tuple(toks[end - n + 1 : end + 1])] = end
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

    def may_match(self) -> bool:
        """Whether `propose` could find a match after one more token: the history's last
        min_n - 1 tokens occurred earlier (and so were followed by something)."""
        n = self.min_n - 1
        if n == 0:
            return True
        self._catch_up()
        return len(self.tokens) > n and tuple(self.tokens[-n:]) in self._ends[n]


class NgramProposer:
    """`--speculative-algorithm ngram`: prompt lookup over each request's own tokens."""

    def __init__(self, min_n: int, max_n: int) -> None:
        NgramIndex(min_n, max_n)  # validates the window sizes now, not at the first request
        self.min_n, self.max_n = min_n, max_n

    @classmethod
    def from_args(cls, args: RuntimeArgs) -> NgramProposer:
        return cls(args.speculative_ngram_min_match_window_size,
                   args.speculative_ngram_max_match_window_size)

    def _index(self, req: Any) -> NgramIndex:
        index = req.draft_state
        if not isinstance(index, NgramIndex):
            index = req.draft_state = NgramIndex(self.min_n, self.max_n)
            index.extend(req.prompt_ids)
        # Only the tokens generated since the last call (output only ever grows).
        index.extend(req.output_ids[len(index.tokens) - len(req.prompt_ids) :])
        return index

    def propose(self, req: Any, max_tokens: int) -> list[int]:
        return self._index(req).propose(max_tokens)

    def may_draft(self, req: Any) -> bool:
        return self._index(req).may_match()

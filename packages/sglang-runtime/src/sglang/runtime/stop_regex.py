"""`stop_regex` (SGLang's name): stop when the decoded output matches a pattern.

The scheduler checks the tail of the output after each token; the detokenizer trims the final
text at the match, as it trims stop strings. Torch-free (the server's detokenizer imports it).
"""

from __future__ import annotations

import functools
import re
from typing import Any

# Output tokens decoded for each check: a match must end in the newest token, and patterns
# that need more context than this are not what stop_regex is for (documented in the docs).
STOP_REGEX_WINDOW = 256


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def first_match(text: str, patterns: list[str]) -> tuple[str, int] | None:
    """(pattern, start of its match) for the earliest match in `text`, or None."""
    best: tuple[str, int] | None = None
    for pattern in patterns:
        m = _compiled(pattern).search(text)
        if m is not None and (best is None or m.start() < best[1]):
            best = (pattern, m.start())
    return best


def matched_stop_regex(tokenizer: Any, output_ids: list[int], patterns: list[str]) -> str | None:
    """The pattern that the output's tail now matches, or None (no tokenizer: never)."""
    if tokenizer is None or not output_ids:
        return None
    tail = tokenizer.decode(output_ids[-STOP_REGEX_WINDOW:], skip_special_tokens=False)
    found = first_match(tail, patterns)
    return None if found is None else found[0]


def trim_at_stop_regex(text: str, matched: str, patterns: list[str]) -> str | None:
    """`text` cut where `matched` (one of `patterns`) first matches; None when it is no
    stop_regex pattern or no longer matches the text as decoded for the client."""
    if matched not in patterns:
        return None
    m = _compiled(matched).search(text)
    return None if m is None else text[: m.start()]

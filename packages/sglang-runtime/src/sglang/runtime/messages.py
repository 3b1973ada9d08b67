"""Messages that leave the scheduler (to the Engine now, to the detokenizer process later)."""

from __future__ import annotations

from typing import Any

import msgspec

# (logprob, token_id); a prompt's first token has no logprob.
TokenLogprob = tuple[float | None, int]
TopLogprobs = list[tuple[float, int]]


class TokenOutput(msgspec.Struct, kw_only=True):
    """What one scheduler step produced for one request: new tokens, and at the end why it
    finished. Logprob lists are deltas, in step with `new_token_ids`."""

    rid: str
    new_token_ids: list[int]
    finished: bool = False
    finish_reason: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    output_token_logprobs: list[TokenLogprob] | None = None
    output_top_logprobs: list[TopLogprobs] | None = None
    # Sent once, with the first output of a request that asked for prompt logprobs.
    input_token_logprobs: list[TokenLogprob] | None = None
    input_top_logprobs: list[TopLogprobs | None] | None = None
    error: str | None = None

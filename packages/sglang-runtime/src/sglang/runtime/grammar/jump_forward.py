"""Jump-forward: where the grammar allows one continuation only, append its tokens at once.

The forced text is tokenized together with the token just sampled (its KV is not computed yet,
so it may still change) and a few tokens of context before it, so the ids are what the tokenizer
gives for the whole text. The context must come back unchanged (those tokens were already sent
and cached); otherwise there is no jump this step. The last forced token is left to the model:
BPE would merge it with whatever text follows, so appending it could steer the model onto a
tokenization it never saw.
"""

from __future__ import annotations

from typing import Any

from sglang.runtime.grammar.base import Matcher

CONTEXT_TOKENS = 4
# A jump costs one extend step (and the request's place in the decode batch for a step), so
# it only pays when it saves at least this many decode steps.
MIN_JUMP_TOKENS = 2
MAX_JUMP_TOKENS = 64


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=False,
                                clean_up_tokenization_spaces=False))


def _retokenize(tokenizer: Any, prefix: list[int], head: list[int], forced: str) -> list[int] | None:
    """Ids of text(head) + forced, tokenized after up to CONTEXT_TOKENS of `prefix`."""
    for n_ctx in range(min(CONTEXT_TOKENS, len(prefix)), 0, -1):
        ctx = prefix[len(prefix) - n_ctx:]
        text = _decode(tokenizer, ctx + head)
        if "\ufffd" in text:  # a character split across the context's edge
            continue
        ids = list(tokenizer.encode(text + forced, add_special_tokens=False))
        if ids[:n_ctx] == ctx:
            return ids[n_ctx:]
    return None


def plan_jump(
    matcher: Matcher, tokenizer: Any, prefix: list[int], last: int | None, budget: int
) -> list[int] | None:
    """Tokens that replace `last` (the token just sampled and accepted; None before the first
    output token) and carry on through the forced text, at most `budget` more than that.

    On success the matcher has accepted exactly the returned tokens in place of `last`; on None
    it is as it was. `prefix` is everything before `last` (prompt and earlier output).
    """
    forced = matcher.forced_string()
    if len(forced) <= MIN_JUMP_TOKENS:  # too short to yield enough whole tokens
        return None
    head = [last] if last is not None else []
    ids = _retokenize(tokenizer, prefix, head, forced)
    if ids is None:
        return None
    tail = ids[:-1][: len(head) + min(budget, MAX_JUMP_TOKENS)]
    if len(tail) - len(head) < MIN_JUMP_TOKENS:
        return None
    if head:
        matcher.rollback(1)
    for i, tok in enumerate(tail):
        if not matcher.accept(tok):
            if i:
                matcher.rollback(i)
            if head:
                matcher.accept(head[0])
            return None
    return tail

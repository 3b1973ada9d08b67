"""Token bitmasks: filled on the host by the matchers, applied to the logits on their device.

Only the rows of constrained requests are touched; free rows keep their logits bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sglang.runtime.grammar.base import Matcher


def mask_words(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def fill_bitmask(matchers: Sequence[Matcher], vocab_size: int) -> torch.Tensor:
    """[len(matchers), words] int32 on the host, one row per matcher."""
    bitmask = torch.zeros(len(matchers), mask_words(vocab_size), dtype=torch.int32)
    for row, matcher in enumerate(matchers):
        matcher.fill_mask(bitmask, row)
    return bitmask


def unpack_bitmask(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    """[n, words] int32 -> [n, width] bool, True where the token is allowed."""
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    allowed = bits.view(bitmask.shape[0], -1).bool()
    if allowed.shape[1] < width:  # ids past the mask are never allowed
        allowed = torch.nn.functional.pad(allowed, (0, width - allowed.shape[1]))
    return allowed[:, :width]


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """`logits` with disallowed tokens of `rows` at -inf: a new tensor, the input is unchanged
    (its raw values are what reported logprobs use). `bitmask[i]` belongs to `rows[i]`."""
    device = logits.device
    allowed = unpack_bitmask(bitmask.to(device, non_blocking=True), logits.shape[1])
    if len(rows) == logits.shape[0] and list(rows) == list(range(len(rows))):
        return logits.masked_fill(~allowed, float("-inf"))
    index = torch.tensor(list(rows), dtype=torch.int64).to(device, non_blocking=True)
    out = logits.clone()
    out[index] = logits[index].masked_fill(~allowed, float("-inf"))
    return out


def mask_logits(logits: torch.Tensor, matchers: Sequence[Matcher | None]) -> torch.Tensor:
    """Apply each row's matcher (None: a free row) to `logits` [B, V]; `logits` itself when no
    row is constrained."""
    rows = [i for i, m in enumerate(matchers) if m is not None]
    if not rows:
        return logits
    bitmask = fill_bitmask([matchers[i] for i in rows], logits.shape[1])  # type: ignore[misc]
    return apply_bitmask(logits, bitmask, rows)

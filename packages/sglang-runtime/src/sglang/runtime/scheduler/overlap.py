"""Overlapped decode: the CPU's bookkeeping of step N runs while the GPU computes step N+1.

Without overlap the scheduler waits for each step's sampled tokens before it builds the next
step, so the GPU idles while Python appends tokens, checks stop conditions and sends outputs.
With overlap, step N's tokens stay on the device as step N+1's input ids, step N+1 is launched,
and only then are step N's tokens read back (by now long computed) and processed.

The price is one step of lag: a request that finishes on step N's token has already been
given step N+1. That step's token is dropped; its KV (of the finishing token) is valid and goes
to the radix cache with the rest of the sequence. Requests whose sampling reads their latest
output tokens (penalties, `min_new_tokens` still pending, grammars, logprobs) make the scheduler
fall back to one synchronous step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang.runtime.layers.sampler import reads_no_history
from sglang.runtime.scheduler.request import Req
from sglang.runtime.transfer import copy_to_host, to_device


def overlap_safe(req: Req) -> bool:
    """Whether `req` can be sampled before its previous token is appended on the host."""
    # Penalties read the output, and the sampler blocks EOS while len(output_ids) <
    # min_new_tokens; with the in-flight token missing the output is one short, which only
    # matters while either applies.
    return (
        not req.return_logprob
        and reads_no_history(req.params, len(req.output_ids))
        and req.grammar is None
    )


@dataclass
class InFlightDecode:
    """A launched decode step whose sampled tokens the host has not read yet."""

    reqs: list[Req]
    next_ids: torch.Tensor  # [B] int64 on the device: the next step's input ids
    host_ids: torch.Tensor  # [B] pinned copy, valid once `ready` has fired
    ready: torch.cuda.Event | None  # None on CPU, where the tensor is already on the host

    @classmethod
    def launch(cls, reqs: list[Req], next_ids: torch.Tensor) -> InFlightDecode:
        # On the CPU the "copy" is the tensor itself: no asynchrony to gain, but the logic runs.
        host, ready = copy_to_host(next_ids)
        return cls(reqs, next_ids, host, ready)

    def tokens(self) -> list[int]:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host_ids.tolist()

    def inputs_for(self, running: list[Req]) -> torch.Tensor | None:
        """Device input ids for `running` when each of them has its last token in flight here
        (None otherwise: a newcomer's last token is on the host only)."""
        where = {id(r): i for i, r in enumerate(self.reqs)}
        index = [where.get(id(r), -1) for r in running]
        if -1 in index:
            return None
        if index == list(range(len(self.reqs))):
            return self.next_ids
        rows = to_device(torch.tensor(index, dtype=torch.int64), self.next_ids.device)
        return self.next_ids.index_select(0, rows)

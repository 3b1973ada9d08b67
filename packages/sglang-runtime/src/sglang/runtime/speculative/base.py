"""The proposer interface every speculative algorithm implements, and how one is built.

A proposer drafts up to `max_tokens` tokens that the model is likely to produce next for one
request; the scheduler verifies them all in one forward pass and keeps the longest prefix the
model agrees with. Proposers keep any per-request state on `req.draft_state` (it is dropped
with the request), so one proposer object serves every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sglang.runtime.plugins import SPECULATIVE_ALGORITHMS

if TYPE_CHECKING:
    from sglang.runtime.config import RuntimeArgs


class DraftProposer(Protocol):
    """What `SPECULATIVE_ALGORITHMS` entries build (through `from_args`)."""

    @classmethod
    def from_args(cls, args: RuntimeArgs) -> DraftProposer: ...

    def propose(self, req: Any, max_tokens: int) -> list[int]:
        """Up to `max_tokens` draft tokens to follow req.prompt_ids + req.output_ids."""
        ...

    def may_draft(self, req: Any) -> bool:
        """Whether `propose` could find anything once one more token (still on the device)
        is appended; False lets that step overlap with the next (no draft, no wait)."""
        ...


# After k verify steps that accepted nothing (with none since that accepted a run), a request
# skips drafting for min(2 ** (k - 1), MAX_BACKOFF_STEPS) steps: where nothing gets copied, a
# verify step costs more than the decode step it replaces (more rows, and on CUDA a synchronous
# step: drafting needs the last token on the host, so it cannot overlap with the next step).
# Measured on SmolLM2-135M, 4 open questions x 128 tokens (docs/benchmarks.md): a cap of 8
# left 13% of the steps verifying (61 of 472) for 8 accepted tokens; 64 leaves 7% (31).
MAX_BACKOFF_STEPS = 64
# Accepting fewer drafts than this neither ends the back-off nor deepens it: on text with
# nothing to copy, a single draft token is now and then accepted by chance, and one token does
# not pay for a synchronous step.
MIN_RUN_ACCEPTED = 2
# After k steps in a row that waited for the last token (to draft from it) and found nothing
# to draft, a request skips drafting for min(2 ** (k - 1), MAX_IDLE_SKIP) steps: on text with
# nothing to copy, each such wait cost about half a decode step (the host's work no longer
# overlaps the GPU's). Replaying SmolLM2-135M's greedy outputs of `spec_decode.py` through the
# proposer (windows 2..3): a cap of 32 left 28 such waits in 476 no-copy steps, against 36 with
# a cap of 8, and the copy workload lost nothing.
MAX_IDLE_SKIP = 32


@dataclass
class SpecCounters:
    """Per request: the counters meta_info reports (verify steps that carried drafts, the
    draft tokens they carried, how many the model accepted) and the drafting back-off."""

    verify_ct: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    misses: int = 0  # verify steps that accepted nothing since one accepted a run
    idle: int = 0  # waits for a draft that found nothing, in a row
    skip: int = 0  # decode steps left before the next draft

    @property
    def due(self) -> bool:
        """Whether the next `should_draft` says yes (not backing off)."""
        return self.skip == 0

    def should_draft(self) -> bool:
        """Called once per decode step: False while backing off (and counts the step)."""
        if self.skip > 0:
            self.skip -= 1
            return False
        return True

    def record_idle(self) -> None:
        """The step waited for the request's last token and found nothing to draft."""
        self.idle += 1
        self.skip = min(2 ** (self.idle - 1), MAX_IDLE_SKIP)

    def record(self, drafted: int, accepted: int) -> None:
        self.idle = 0
        self.verify_ct += 1
        self.draft_tokens += drafted
        self.accepted_tokens += accepted
        if accepted >= MIN_RUN_ACCEPTED:
            self.misses = 0
        elif accepted == 0:
            self.misses += 1
        self.skip = min(2 ** (self.misses - 1), MAX_BACKOFF_STEPS) if self.misses else 0


def make_proposer(args: RuntimeArgs) -> DraftProposer | None:
    """The proposer `args.speculative_algorithm` names, or None when speculation is off."""
    if args.speculative_algorithm is None:
        return None
    factory: Any = SPECULATIVE_ALGORITHMS.get(args.speculative_algorithm)
    proposer: DraftProposer = factory.from_args(args)
    return proposer

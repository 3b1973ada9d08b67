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


@dataclass
class SpecCounters:
    """Per request, reported in meta_info: verify steps that carried drafts, the draft tokens
    they carried, and how many of those the model accepted."""

    verify_ct: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0


def make_proposer(args: RuntimeArgs) -> DraftProposer | None:
    """The proposer `args.speculative_algorithm` names, or None when speculation is off."""
    if args.speculative_algorithm is None:
        return None
    factory: Any = SPECULATIVE_ALGORITHMS.get(args.speculative_algorithm)
    proposer: DraftProposer = factory.from_args(args)
    return proposer

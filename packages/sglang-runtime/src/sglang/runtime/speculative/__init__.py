"""Speculative decoding: a proposer drafts tokens, one forward pass verifies them.

Proposers are plug-ins (`plugins.SPECULATIVE_ALGORITHMS`, entry-point group
"sglang.speculative_algorithms"); `--speculative-algorithm` names one. The scheduler's verify
step lives in `scheduler/speculative.py`.
"""

from sglang.runtime.speculative.base import DraftProposer, SpecCounters, make_proposer

__all__ = ["DraftProposer", "SpecCounters", "make_proposer"]

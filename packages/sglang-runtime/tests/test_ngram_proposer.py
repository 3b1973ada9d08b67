"""The n-gram (prompt-lookup) proposer, the acceptance rule and the --speculative-* flags."""

from __future__ import annotations

import argparse
import random
from types import SimpleNamespace

import pytest

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.arg_fields import add_flag, arg_fields
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.plugins import SPECULATIVE_ALGORITHMS, UnknownPluginError
from sglang.runtime.scheduler.request import Req
from sglang.runtime.scheduler.speculative import accepted_length, can_speculate
from sglang.runtime.speculative import SpecCounters, make_proposer
from sglang.runtime.speculative.base import MAX_BACKOFF_STEPS, MAX_IDLE_SKIP, MIN_RUN_ACCEPTED
from sglang.runtime.speculative.ngram import NgramIndex, NgramProposer


def _index(tokens: list[int], min_n: int = 1, max_n: int = 3) -> NgramIndex:
    index = NgramIndex(min_n, max_n)
    index.extend(tokens)
    return index


def test_copies_what_followed_the_earlier_occurrence() -> None:
    assert _index([5, 6, 7, 8, 9, 1, 6, 7]).propose(3) == [8, 9, 1]


def test_longest_window_wins_over_a_more_recent_shorter_match() -> None:
    # Tail (1, 2, 3): the 3-gram occurs at the start (followed by 10); the 1-gram "3" occurs
    # more recently (followed by 20). Longest first.
    tokens = [1, 2, 3, 10, 11, 3, 20, 21, 1, 2, 3]
    assert _index(tokens).propose(2) == [10, 11]
    # With windows of 1 only, the most recent "3" is the match.
    assert _index(tokens, 1, 1).propose(2) == [20, 21]


def test_most_recent_occurrence_of_the_same_length() -> None:
    tokens = [4, 7, 1, 4, 7, 2, 4, 7]
    assert _index(tokens, 2, 2).propose(1) == [2]


def test_clipped_to_max_tokens_and_to_the_history() -> None:
    index = _index([1, 2, 3, 4, 5, 1, 2])
    assert index.propose(2) == [3, 4]
    assert index.propose(100) == [3, 4, 5, 1, 2]
    assert index.propose(0) == []


def test_no_match_no_drafts() -> None:
    assert _index([1, 2, 3, 4, 5]).propose(4) == []
    assert _index([9]).propose(4) == []
    assert _index([]).propose(4) == []
    # min window 2: a lone repeated token is not enough.
    assert _index([1, 8, 2, 8], 2, 3).propose(4) == []


def test_incremental_index_equals_a_fresh_one() -> None:
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3]
    grown = NgramIndex(1, 4)
    for i, tok in enumerate(tokens):
        grown.extend([tok])
        assert grown.propose(3) == _index(tokens[: i + 1], 1, 4).propose(3), i


def test_may_match_needs_the_last_tokens_seen_before() -> None:
    # Windows of 2 or more: the last known token must have occurred earlier.
    assert not _index([1, 2, 3], 2, 3).may_match()
    assert _index([1, 2, 3, 2], 2, 3).may_match()
    assert not _index([2], 2, 3).may_match()
    assert not _index([], 2, 3).may_match()
    # Windows of 3 or more: the last two.
    assert not _index([1, 2, 3, 2], 3, 3).may_match()
    assert _index([1, 2, 3, 1, 2], 3, 4).may_match()
    # Windows of 1: whatever token comes may have occurred.
    assert _index([1], 1, 3).may_match()


@pytest.mark.parametrize("min_n,max_n", [(1, 3), (2, 3), (2, 2), (3, 5)])
def test_may_match_is_never_wrong_to_say_no(min_n: int, max_n: int) -> None:
    """Whenever some next token gives a match, may_match said yes before it (incrementally,
    as the scheduler asks), over random histories with many repeats."""
    gen = random.Random(min_n * 10 + max_n)
    for _ in range(40):
        tokens = [gen.randrange(4) for _ in range(30)]
        grown = NgramIndex(min_n, max_n)
        for i in range(len(tokens) - 1):
            grown.extend([tokens[i]])
            may = grown.may_match()
            for nxt in range(4):
                if _index(tokens[: i + 1] + [nxt], min_n, max_n).propose(1):
                    assert may, (tokens[: i + 1], nxt)


def test_proposer_follows_the_request_history() -> None:
    proposer = NgramProposer(1, 3)
    req = Req(rid="r", prompt_ids=[10, 11, 12, 13, 14, 10], params=SamplingParams())
    assert proposer.propose(req, 2) == [11, 12]
    req.output_ids += [11, 12, 99]
    assert proposer.propose(req, 3) == []  # 99 never appeared before
    req.output_ids += [13]
    assert proposer.propose(req, 3) == [14, 10, 11]  # the 1-gram (13,) in the prompt


def test_bad_window_sizes() -> None:
    with pytest.raises(ValueError, match="window"):
        NgramProposer(3, 2)
    with pytest.raises(ValueError, match="window"):
        NgramIndex(0, 2)


def test_accepted_length() -> None:
    assert accepted_length([], [7]) == 0
    assert accepted_length([1, 2, 3], [1, 2, 3, 4]) == 3
    assert accepted_length([1, 2, 3], [1, 5, 3, 4]) == 1
    assert accepted_length([1, 2, 3], [0, 2, 3, 4]) == 0


def _skipped(spec: SpecCounters) -> int:
    """Steps until the counters allow a draft again."""
    n = 0
    while not spec.should_draft():
        n += 1
    return n


def test_drafting_backs_off_after_verify_steps_that_accept_nothing() -> None:
    spec = SpecCounters()

    def skipped() -> int:
        return _skipped(spec)

    assert skipped() == 0
    gaps = []
    for _ in range(9):
        spec.record(drafted=4, accepted=0)
        gaps.append(skipped())
    assert gaps == [1, 2, 4, 8, 16, 32, 64, 64, 64]
    assert MAX_BACKOFF_STEPS == 64
    # One token accepted by chance keeps the back-off where it was.
    spec.record(drafted=4, accepted=MIN_RUN_ACCEPTED - 1)
    assert skipped() == MAX_BACKOFF_STEPS
    spec.record(drafted=4, accepted=MIN_RUN_ACCEPTED)  # a run accepted: ends it at once
    assert skipped() == 0
    assert (spec.verify_ct, spec.draft_tokens) == (11, 44)
    assert spec.accepted_tokens == 2 * MIN_RUN_ACCEPTED - 1


def test_drafting_backs_off_after_waits_that_found_nothing() -> None:
    spec = SpecCounters()
    gaps = []
    for _ in range(8):
        spec.record_idle()
        gaps.append(_skipped(spec))
    assert gaps == [1, 2, 4, 8, 16, 32, 32, 32]
    assert MAX_IDLE_SKIP == 32
    spec.record(drafted=4, accepted=3)  # a verify step ends the idle back-off
    assert (_skipped(spec), spec.idle) == (0, 0)
    spec.record_idle()
    assert _skipped(spec) == 1


def test_chance_acceptances_do_not_end_the_back_off() -> None:
    spec = SpecCounters()
    spec.record(drafted=4, accepted=0)
    spec.record(drafted=4, accepted=0)
    spec.record(drafted=4, accepted=1)
    assert spec.skip == 2  # still two misses deep
    spec.record(drafted=4, accepted=0)
    assert spec.skip == 4


def test_which_requests_speculate() -> None:
    def req(**params: object) -> Req:
        return Req(rid="r", prompt_ids=[1], params=SamplingParams(**params))  # type: ignore[arg-type]

    assert can_speculate(req(temperature=0))
    assert can_speculate(req(top_k=1))
    assert can_speculate(req(temperature=0, frequency_penalty=0.5))  # rows see their history
    assert not can_speculate(req(temperature=0.7))
    assert not can_speculate(req(temperature=0, regex="[ab]+"))
    logprobs = req(temperature=0)
    logprobs.return_logprob = True
    assert not can_speculate(logprobs)


# ---- flags --------------------------------------------------------------------------------
def test_algorithm_is_a_registry_name_in_any_case() -> None:
    assert "ngram" in SPECULATIVE_ALGORITHMS.names()
    assert RuntimeArgs(speculative_algorithm="NGRAM").speculative_algorithm == "ngram"
    assert RuntimeArgs.from_kwargs(speculative_algorithm="NGram").speculative_algorithm == "ngram"
    assert RuntimeArgs().speculative_algorithm is None
    with pytest.raises(UnknownPluginError, match="ngram"):
        RuntimeArgs(speculative_algorithm="medusa")
    with pytest.raises(UnknownPluginError):
        RuntimeArgs.from_kwargs(speculative_algorithm="medusa")


def test_make_proposer_reads_the_flags() -> None:
    assert make_proposer(RuntimeArgs()) is None
    proposer = make_proposer(RuntimeArgs(
        speculative_algorithm="ngram", speculative_ngram_min_match_window_size=2,
        speculative_ngram_max_match_window_size=5,
    ))
    assert isinstance(proposer, NgramProposer)
    assert (proposer.min_n, proposer.max_n) == (2, 5)


@pytest.mark.parametrize("kwargs, field", [
    ({"speculative_num_draft_tokens": 0}, "speculative_num_draft_tokens"),
    ({"speculative_num_draft_tokens": 1000}, "speculative_num_draft_tokens"),
    ({"speculative_ngram_min_match_window_size": 0}, "speculative_ngram_min_match_window_size"),
    ({"speculative_ngram_min_match_window_size": 4,
      "speculative_ngram_max_match_window_size": 3}, "speculative_ngram_max_match_window_size"),
])
def test_bad_values_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RuntimeArgs.from_kwargs(**kwargs)


def test_command_line_flags_come_from_the_fields() -> None:
    parser = argparse.ArgumentParser()
    for field in arg_fields(RuntimeArgs):
        add_flag(parser, field)
    ns = parser.parse_args([
        "--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "6",
        "--speculative-ngram-min-match-window-size", "2",
        "--speculative-ngram-max-match-window-size", "4", "--log-level", "WARNING",
    ])
    args = RuntimeArgs(**{f.name: getattr(ns, f.name) for f in arg_fields(RuntimeArgs)})
    assert (args.speculative_algorithm, args.speculative_num_draft_tokens) == ("ngram", 6)
    assert (args.speculative_ngram_min_match_window_size,
            args.speculative_ngram_max_match_window_size) == (2, 4)
    assert args.log_level == "warning"
    with pytest.raises(SystemExit):
        parser.parse_args(["--speculative-algorithm", "medusa"])


def test_fake_request_namespace_is_enough_for_the_proposer() -> None:
    # Proposers only read prompt_ids / output_ids / draft_state (plug-ins can rely on that).
    req = SimpleNamespace(prompt_ids=[1, 2, 1], output_ids=[], draft_state=None)
    assert NgramProposer(1, 2).propose(req, 4) == [2, 1]

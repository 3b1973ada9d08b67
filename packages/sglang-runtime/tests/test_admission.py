"""Admission and retraction with a KV pool smaller than the context (issue 15).

The real Scheduler on a tiny random-weight Llama, stepped by hand so progress is counted in
steps, not seconds: a request whose prompt fits but prompt + output does not is clipped to the
pool and finishes with `length`; a short request behind a long one starts within a bounded
number of steps; and a seeded random load with retractions always drains, with the KV
integrity check after every step and no step that runs nothing while work waits.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import transformers
from tiny_models import save_tiny_model

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.builder import build_runtime
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.scheduler.admission import MAX_EXTENDS_IN_A_ROW, SKIP_AHEAD_LIMIT
from sglang.runtime.scheduler.request import Req
from sglang.runtime.scheduler.scheduler import Scheduler

SHAPE = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
POOL = 64
NEVER = SHAPE["vocab_size"] + 1  # a stop token id no sample can be


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = transformers.LlamaConfig(**SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    return save_tiny_model(config, tmp_path_factory.mktemp("tiny-pool"), with_tokenizer=False)


def make_scheduler(folder: str, **kw: Any) -> Scheduler:
    args = RuntimeArgs(model_path=folder, skip_tokenizer_init=True, device="cpu",
                       dtype="float32", debug_check_integrity=True, **kw)
    return build_runtime(args).scheduler


@pytest.fixture()
def sched(folder: str) -> Iterator[Scheduler]:
    yield make_scheduler(folder, max_total_tokens=POOL, schedule_policy="fcfs")


def req(rid: str, n_prompt: int, max_new: int, seed: int = 0, **params: Any) -> Req:
    rng = random.Random(seed)
    ids = [rng.randrange(1, SHAPE["vocab_size"]) for _ in range(n_prompt)]
    sp = SamplingParams(max_new_tokens=max_new, temperature=0, **params)
    return Req(rid=rid, prompt_ids=ids, params=sp)


def run_until_done(s: Scheduler, limit: int) -> tuple[dict[str, Any], dict[str, int]]:
    """Step until idle (at most `limit` steps); returns each rid's last output and the step on
    which it finished. Every step with work must run a forward pass."""
    last: dict[str, Any] = {}
    done_at: dict[str, int] = {}
    for step in range(limit):
        if not s.has_work:
            return last, done_at
        before = s.forward_steps
        for out in s.step():
            last[out.rid] = out
            if out.finished:
                done_at[out.rid] = step
        assert s.forward_steps == before + 1, f"step {step} ran nothing while work waited"
    raise AssertionError(f"not idle after {limit} steps: {len(s.waiting)} waiting, "
                         f"{len(s.running)} running")


def test_prompt_fits_output_does_not_is_clipped_and_finishes(sched: Scheduler) -> None:
    long = req("long", 40, 100, ignore_eos=True)
    short = req("short", 3, 2, seed=1, ignore_eos=True)
    sched.add_request(long)
    sched.add_request(short)
    assert long.params.max_new_tokens == POOL - 40  # clipped to the pool, not refused
    last, done_at = run_until_done(sched, limit=200)
    out = last["long"]
    assert out.finish_reason.type == "length"
    assert out.completion_tokens == POOL - 40
    assert out.finish_reason.length == out.completion_tokens
    assert last["short"].finish_reason.type == "length"
    assert last["short"].completion_tokens == 2
    # The long one reserved the whole pool for its output (ignore_eos: its length is certain),
    # so the short one starts as soon as it ends: within the pool's size in steps.
    assert done_at["short"] <= done_at["long"] + 3 <= POOL
    sched.check_integrity()


def test_prompt_that_leaves_no_slot_is_refused(sched: Scheduler) -> None:
    with pytest.raises(ValueError, match="KV pool holds only 64"):
        sched.add_request(req("huge", POOL, 1))
    assert not sched.has_work


def test_retracted_request_is_readmitted(folder: str) -> None:
    # A stop id: admission reserves only a share of the output (a small one here), so these
    # overcommit the pool and decode must retract; every one still finishes with all its tokens.
    sched = make_scheduler(folder, max_total_tokens=POOL, schedule_policy="fcfs",
                           init_new_token_ratio=0.1, min_new_token_ratio=0.05)
    reqs = [req(f"r{i}", 12, 40, seed=i, ignore_eos=True, stop_token_ids=[NEVER])
            for i in range(4)]
    for r in reqs:
        sched.add_request(r)
    last, _ = run_until_done(sched, limit=600)
    assert sched.num_retractions > 0
    for r in reqs:
        assert last[r.rid].finished
        assert last[r.rid].completion_tokens == r.params.max_new_tokens


def test_skip_ahead_is_bounded(sched: Scheduler) -> None:
    # One request holds most of the pool; a long one that does not fit beside it waits; a
    # stream of short ones (one arrives every step) may start ahead of it, but only for
    # SKIP_AHEAD_LIMIT steps: without the bound the stream would starve it (and, extend having
    # priority over decode, the hog too).
    hog_new = 30
    sched.add_request(req("hog", 20, hog_new, ignore_eos=True))
    sched.step()
    blocked = req("blocked", 30, 4, seed=1, ignore_eos=True)
    sched.add_request(blocked)
    # Skip-ahead stops after SKIP_AHEAD_LIMIT steps; then nothing is admitted, so the hog
    # decodes every step until it ends; `blocked` starts the step after and, short requests
    # starting again, decodes at least once every MAX_EXTENDS_IN_A_ROW + 1 steps. (Without
    # the skip-ahead bound this takes ~4x longer here; without the decode turn, forever.)
    bound = SKIP_AHEAD_LIMIT + hog_new + 1 + blocked.params.max_new_tokens * (
        MAX_EXTENDS_IN_A_ROW + 1) + 2
    done_at: dict[str, int] = {}
    for step in range(bound + 1):
        sched.add_request(req(f"s{step}", 2, 1, seed=10 + step, ignore_eos=True))
        before = sched.forward_steps
        done_at.update((o.rid, step) for o in sched.step() if o.finished)
        assert sched.forward_steps == before + 1
        if "blocked" in done_at:
            break
    assert done_at.get("blocked", 10**9) <= bound
    assert sum(r.startswith("s") and t < done_at["blocked"] for r, t in done_at.items()) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_load_with_retractions_always_drains(folder: str, seed: int) -> None:
    rng = random.Random(seed)
    s = make_scheduler(folder, max_total_tokens=POOL, max_running_requests=6,
                       chunked_prefill_size=16, init_new_token_ratio=0.2,
                       min_new_token_ratio=0.05,
                       schedule_policy=rng.choice(["fcfs", "lpm"]))
    shared = [rng.randrange(1, SHAPE["vocab_size"]) for _ in range(10)]
    reqs: list[Req] = []
    last: dict[str, Any] = {}
    steps = 0
    for i in range(30):
        n = rng.randrange(1, 50)
        # An unreachable stop id makes the output's length uncertain to admission, which then
        # reserves only a share of it and overcommits: decode retracts.
        stop = [NEVER] if rng.random() < 0.6 else None
        r = req(f"q{i}", n, rng.randrange(1, 120), seed=seed * 100 + i, ignore_eos=True,
                stop_token_ids=stop)
        if rng.random() < 0.3:  # shared prefixes exercise the radix cache under pressure
            r.prompt_ids[: min(n, len(shared))] = shared[: min(n, len(shared))]
        s.add_request(r)
        reqs.append(r)
        for _ in range(rng.randrange(0, 4)):  # arrivals between steps
            if s.has_work:
                before = s.forward_steps
                last.update((o.rid, o) for o in s.step())
                assert s.forward_steps == before + 1
                steps += 1
    more, _ = run_until_done(s, limit=3000)
    last.update(more)
    assert s.num_retractions > 0  # the pool is small enough to force them
    for r in reqs:
        out = last[r.rid]
        assert out.finished and out.finish_reason.type == "length", r.rid
        assert out.completion_tokens == r.params.max_new_tokens
        assert len(r.prompt_ids) + r.params.max_new_tokens <= POOL
    s.check_integrity()

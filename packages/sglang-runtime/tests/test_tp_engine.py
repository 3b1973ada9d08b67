"""sgl.Engine(tp_size=N) on SmolLM2-135M-Instruct (9 query / 3 KV heads) in float32 over gloo:
greedy output identical to tp=1, single and batched, with prefix caching; KV integrity on every
rank; a dead or hung rank fails the requests in flight with a message naming it, within
seconds."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from engine_fixtures import PROMPTS, make_engine

from sglang.runtime.procs.remote import RankFailure
from sglang.runtime.result import RequestError

MAX_NEW = 8
GREEDY = {"temperature": 0, "max_new_tokens": MAX_NEW}
PREFIX = (
    "You are a geography tutor. Answer with one word.\n"
    "Q: What is the capital of Italy?\nA: Rome\n"
    "Q: What is the capital of Spain?\nA: Madrid\n"
)
SHARED = [PREFIX + f"Q: What is the capital of {c}?\nA:" for c in ("France", "Japan", "Peru")]


# tp=2 splits SmolLM2's 3 KV groups 2 + 1; tp=3 evenly. Both run in one module, one at a time.
@pytest.fixture(scope="module", params=[2, 3], ids=lambda tp: f"tp{tp}")
def tp_engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    eng = make_engine(tp_size=request.param, max_total_tokens=8192)
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def expected(engine: Any) -> dict[str, Any]:
    """tp=1 answers (the session's in-process engine)."""
    engine.flush_cache()
    singles = [engine.generate(p, GREEDY)["output_ids"] for p in PROMPTS[:3]]
    batched = [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY)]
    shared = [o["output_ids"] for o in engine.generate(SHARED, GREEDY)]
    return {"singles": singles, "batched": batched, "shared": shared}


def test_greedy_single_and_batched_match_tp1(tp_engine: Any, expected: dict[str, Any]) -> None:
    singles = [tp_engine.generate(p, GREEDY)["output_ids"] for p in PROMPTS[:3]]
    assert singles == expected["singles"]
    batched = [o["output_ids"] for o in tp_engine.generate(PROMPTS, GREEDY)]
    assert batched == expected["batched"]
    tp_engine.check_integrity()


def test_prefix_cache_hits_and_still_matches_tp1(tp_engine: Any, expected: dict[str, Any]) -> None:
    assert tp_engine.flush_cache()
    first = tp_engine.generate(SHARED[0], GREEDY)
    rest = tp_engine.generate(SHARED[1:], GREEDY)
    assert first["meta_info"]["cached_tokens"] == 0
    assert all(o["meta_info"]["cached_tokens"] >= 30 for o in rest)  # the shared prefix
    assert [first["output_ids"], *(o["output_ids"] for o in rest)] == expected["shared"]
    tp_engine.check_integrity()


def test_every_rank_checks_integrity_and_they_agree(tp_engine: Any) -> None:
    # Unseeded sampling: each rank samples, rank 0's tokens win, so the ranks stay in step.
    outs = tp_engine.generate(PROMPTS[:5], {"temperature": 1.0, "max_new_tokens": 6})
    assert all(len(o["output_ids"]) >= 1 for o in outs)
    res = tp_engine._loop.check_integrity()
    assert res.ok and res.tp_ranks_checked == tp_engine.args.tp_size
    assert res.kv_used_tokens == 0 and res.idle_check_failures == 0


def test_dead_or_hung_rank_fails_requests_naming_it(tp_engine: Any) -> None:
    """Last in the module: it ends this engine (the next tp gets a fresh one). At tp=2 the last
    rank is killed; at tp=3 it is frozen (SIGSTOP) and found by its missing heartbeat."""
    tp = tp_engine.args.tp_size
    remote = tp_engine._loop
    victim = remote.children[tp - 1].proc
    hang = tp == 3
    remote.hang_timeout = 2.0
    box: dict[str, BaseException] = {}

    def long_request() -> None:
        try:
            tp_engine.generate("Tell me a long story.",
                               {"max_new_tokens": 2000, "ignore_eos": True, "temperature": 0})
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            box["error"] = e

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    os.kill(victim.pid, signal.SIGSTOP if hang else signal.SIGKILL)
    t.join(timeout=30)
    assert not t.is_alive(), "the request in flight never failed"
    assert time.monotonic() - t0 < 10
    assert isinstance(box.get("error"), RequestError)
    message = str(box["error"])
    assert f"tp rank {tp - 1}" in message
    assert ("stopped responding" if hang else "died") in message
    with pytest.raises(RankFailure, match=f"tp rank {tp - 1}"):
        tp_engine.generate("Hi", GREEDY)
    deadline = time.monotonic() + 10
    while any(c.proc.is_alive() for c in remote.children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(c.proc.is_alive() for c in remote.children), "ranks outlived the failure"

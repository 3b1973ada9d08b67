"""N-gram speculative decoding on the embedded SmolLM2-135M: greedy outputs are token for token
those of plain decoding (copying and non-copying prompts, mixed batches, stops that fall inside
a draft, radix-cached prefixes, penalties, streaming), drafts really get accepted, and the KV
accounting holds (the engines check integrity after every step, and again when idle)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engine_fixtures import make_engine

from sglang.runtime.speculative.ngram import NgramProposer

PARAGRAPH = (
    "The committee met on Tuesday to discuss the budget for the new library. After a long "
    "debate, members agreed to fund the children's section first, then the archive room, and "
    "finally the reading garden behind the main building."
)
CODE = (
    "def area(width, height):\n    result = width * height\n    return result\n\n"
    "def perimeter(width, height):\n    result = 2 * (width + height)\n    return result\n"
)


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


COPY = chat(f"Repeat the following text exactly:\n{PARAGRAPH}")
EDIT = chat(f"Rename the variable `result` to `value` in this code:\n{CODE}")
NO_COPY = chat("Name a famous scientist and one thing they discovered.")
NEWLINE = 198  # "\n" in SmolLM2's vocabulary


@pytest.fixture(scope="module")
def spec_engine() -> Iterator[Any]:
    eng = make_engine(speculative_algorithm="NGRAM", speculative_num_draft_tokens=4)
    yield eng
    eng.shutdown()


def _key(out: dict[str, Any]) -> tuple[Any, ...]:
    meta = out["meta_info"]
    return out["output_ids"], out["text"], meta["finish_reason"], meta["completion_tokens"]


def _both(base: Any, spec: Any, prompts: Any, params: Any) -> list[dict[str, Any]]:
    """Run on both engines (cache flushed first), assert identical results, return spec's."""
    base.flush_cache()
    spec.flush_cache()
    want = base.generate(prompts, params)
    got = spec.generate(prompts, params)
    assert [_key(o) for o in got] == [_key(o) for o in want]
    base.check_integrity()
    spec.check_integrity()
    return got


def test_copying_prompts_match_and_accept_drafts(engine: Any, spec_engine: Any) -> None:
    got = _both(engine, spec_engine, [COPY, EDIT], {"temperature": 0, "max_new_tokens": 64})
    for out in got:
        meta = out["meta_info"]
        assert meta["spec_verify_ct"] > 0
        assert meta["spec_accepted_tokens"] <= meta["spec_draft_tokens"]
        # Accepted drafts are tokens emitted without a step of their own.
        assert meta["completion_tokens"] > meta["spec_verify_ct"]
    # The copy is accepted; SmolLM2 answers the edit with prose of its own (no copying), whose
    # drafts are accepted only by chance.
    assert got[0]["meta_info"]["spec_accepted_tokens"] > 0
    assert "reading garden" in got[0]["text"]


def test_nothing_to_copy_matches(engine: Any, spec_engine: Any) -> None:
    got = _both(engine, spec_engine, [NO_COPY, "The capital of France is"],
                {"temperature": 0, "max_new_tokens": 40})
    assert all(o["meta_info"]["spec_accepted_tokens"] <= o["meta_info"]["spec_draft_tokens"]
               for o in got)


def test_plain_engine_reports_no_spec_counters(engine: Any) -> None:
    out = engine.generate("Hi", {"temperature": 0, "max_new_tokens": 2})
    assert "spec_verify_ct" not in out["meta_info"]


def test_mixed_batch_with_stops_inside_drafts(engine: Any, spec_engine: Any) -> None:
    prompts = [COPY, COPY, COPY, EDIT, NO_COPY, COPY, COPY]
    params = [
        {"temperature": 0, "max_new_tokens": 64},
        {"temperature": 0, "max_new_tokens": 64, "stop": ["archive"]},  # a stop string
        {"temperature": 0, "max_new_tokens": 11},  # length limit inside a run of drafts
        {"temperature": 0, "max_new_tokens": 48, "stop_token_ids": [NEWLINE]},
        {"temperature": 0.8, "seed": 3, "max_new_tokens": 24},  # sampled: never drafts
        {"temperature": 0.7, "top_k": 1, "max_new_tokens": 30},  # top_k=1 is greedy
        {"temperature": 0, "max_new_tokens": 40, "stop": ["budget"], "no_stop_trim": True},
    ]
    got = _both(engine, spec_engine, prompts, params)
    assert got[1]["meta_info"]["finish_reason"] == {"type": "stop", "matched": "archive"}
    assert "archive" not in got[1]["text"] and "children" in got[1]["text"]
    assert got[2]["meta_info"]["finish_reason"] == {"type": "length", "length": 11}
    assert got[4]["meta_info"]["spec_verify_ct"] == 0
    assert got[5]["meta_info"]["spec_accepted_tokens"] > 0
    assert got[6]["text"].endswith("budget")


@pytest.mark.parametrize("overlap,as_decode", [(False, True), (True, False), (True, True)],
                         ids=["decode-rows", "overlap", "overlap-decode-rows"])
def test_verify_layouts_and_overlap(engine: Any, spec_engine: Any, overlap: bool,
                                    as_decode: bool) -> None:
    """Verify steps laid out as decode rows (what replays the CUDA graphs) and the overlapped
    scheduler around them (on between drafting steps) give plain decoding's outputs."""

    def configure(s: Any, on: bool) -> None:
        s.overlap = overlap and on
        s.verify_as_decode = as_decode if on else None
        if not on:
            assert s.in_flight is None
            del s.runner.forward
            return
        real = s.runner.forward

        def forward(batch: Any) -> Any:
            # A DECODE batch with a table row repeated is a verify step laid out as rows.
            rows = batch.req_pool_indices.tolist()
            if batch.mode.name == "DECODE" and len(set(rows)) < len(rows):
                seen["decode_verify"] += 1
            return real(batch)

        s.runner.forward = forward

    seen = {"decode_verify": 0}

    prompts = [COPY, EDIT, NO_COPY, COPY, "The capital of France is"]
    params = [
        {"temperature": 0, "max_new_tokens": 64},
        {"temperature": 0, "max_new_tokens": 48, "stop_token_ids": [NEWLINE]},
        {"temperature": 0, "max_new_tokens": 40},
        {"temperature": 0.8, "seed": 3, "max_new_tokens": 24},  # sampled: never drafts
        {"temperature": 0, "max_new_tokens": 30, "frequency_penalty": 0.4},
    ]
    spec_engine._call(lambda s: configure(s, True))
    try:
        got = _both(engine, spec_engine, prompts, params)
        # One at a time too: batch-1 copying, the benchmark's case.
        got += _both(engine, spec_engine, [COPY], {"temperature": 0, "max_new_tokens": 64})
    finally:
        spec_engine._call(lambda s: configure(s, False))
    assert got[0]["meta_info"]["spec_accepted_tokens"] > 0
    assert got[-1]["meta_info"]["spec_accepted_tokens"] > 0
    assert got[3]["meta_info"]["spec_verify_ct"] == 0
    assert (seen["decode_verify"] > 0) == as_decode


def test_overlapped_steps_skip_waits_that_cannot_draft(engine: Any, spec_engine: Any) -> None:
    """With windows of 2 or more, an overlapped step waits for a request's token only when its
    previous token occurred before (`may_draft`); outputs stay plain decoding's and copies are
    still drafted and accepted."""
    calls: list[bool] = []

    def configure(s: Any, on: bool) -> None:
        if not on:
            s.overlap, s.proposer = False, s.proposer.inner
            return
        inner = s.proposer

        class Counting(NgramProposer):
            def may_draft(self, req: Any) -> bool:
                calls.append(super().may_draft(req))
                return calls[-1]

        s.overlap = True
        s.proposer = Counting(2, 3)
        s.proposer.inner = inner

    spec_engine._call(lambda s: configure(s, True))
    try:
        got = _both(engine, spec_engine, [COPY, NO_COPY],
                    {"temperature": 0, "max_new_tokens": 48})
        got += _both(engine, spec_engine, [NO_COPY], {"temperature": 0, "max_new_tokens": 48})
    finally:
        spec_engine._call(lambda s: configure(s, False))
    assert got[0]["meta_info"]["spec_accepted_tokens"] > 0
    assert True in calls and False in calls


def test_shared_prefix_in_the_radix_cache(engine: Any, spec_engine: Any) -> None:
    params = {"temperature": 0, "max_new_tokens": 40}
    results = []
    for eng in (engine, spec_engine):
        eng.flush_cache()
        first = eng.generate(COPY, params)
        # Same instruction and paragraph, different endings: the prompt prefix is cached and
        # the earlier output too (the same prompt again hits it whole).
        again = eng.generate([COPY, COPY[:-30] + "assistant\n"], params)
        results.append([first, *again])
        eng.check_integrity()
    base, spec = results
    assert [_key(o) for o in spec] == [_key(o) for o in base]
    assert spec[1]["meta_info"]["cached_tokens"] >= len(spec_engine.tokenizer.encode(COPY)) - 1
    assert spec[2]["meta_info"]["cached_tokens"] > 0
    assert spec[1]["meta_info"]["spec_accepted_tokens"] > 0


def test_penalties_and_min_new_tokens_see_each_drafts_history(
    engine: Any, spec_engine: Any
) -> None:
    params = [
        {"temperature": 0, "max_new_tokens": 40, "frequency_penalty": 0.4},
        {"temperature": 0, "max_new_tokens": 40, "repetition_penalty": 1.2},
        {"temperature": 0, "max_new_tokens": 30, "min_new_tokens": 20,
         "presence_penalty": 0.3},
    ]
    _both(engine, spec_engine, [COPY, EDIT, COPY], params)


def test_streaming_delivers_several_tokens_per_chunk(engine: Any, spec_engine: Any) -> None:
    params = {"temperature": 0, "max_new_tokens": 48}
    engine.flush_cache()
    want = engine.generate(COPY, params)
    chunks = list(spec_engine.generate(COPY, params, stream=True))
    ids = [t for c in chunks for t in c["output_ids"]]
    assert ids == want["output_ids"]
    assert "".join(c["text"] for c in chunks) == want["text"]
    assert max(len(c["output_ids"]) for c in chunks) > 1
    assert chunks[-1]["meta_info"]["finish_reason"] == want["meta_info"]["finish_reason"]
    spec_engine.check_integrity()


def test_no_room_for_drafts_decodes(engine: Any, spec_engine: Any) -> None:
    """When the pool cannot hold the drafts, the step is a plain decode (which may retract)."""

    def refuse_drafts(s: Any) -> None:
        real_verify, real_alloc = s._run_verify, s.kv.alloc_slots
        inside = [False]

        def verify(drafts: Any, outputs: Any) -> bool:
            inside[0] = True
            try:
                return bool(real_verify(drafts, outputs))
            finally:
                inside[0] = False

        s._run_verify = verify
        s.kv.alloc_slots = lambda n: None if inside[0] else real_alloc(n)

    def restore(s: Any) -> None:
        del s._run_verify, s.kv.alloc_slots

    spec_engine._call(refuse_drafts)
    try:
        got = _both(engine, spec_engine, [COPY, EDIT], {"temperature": 0, "max_new_tokens": 30})
    finally:
        spec_engine._call(restore)
    assert [o["meta_info"]["spec_verify_ct"] for o in got] == [0, 0]


def test_small_kv_pool() -> None:
    """A pool so small that plain decoding retracts: speculation gives the same outputs and
    leaks nothing."""
    prompts = [COPY, EDIT, COPY[:-40] + "assistant\n"]
    params = {"temperature": 0, "max_new_tokens": 30}
    outs, retractions = [], []
    for extra in ({}, {"speculative_algorithm": "ngram", "speculative_num_draft_tokens": 8}):
        eng = make_engine(max_total_tokens=170, **extra)
        try:
            outs.append(eng.generate(prompts, params))
            retractions.append(eng._call(lambda s: s.num_retractions))
            eng.check_integrity()
        finally:
            eng.shutdown()
    assert retractions[0] > 0  # the pool really was too small for everyone at once
    assert [_key(o) for o in outs[1]] == [_key(o) for o in outs[0]]

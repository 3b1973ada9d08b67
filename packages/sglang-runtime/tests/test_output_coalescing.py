"""A request that is not streamed gets one output, when it finishes (the scheduler holds its
tokens back until then), and that output holds everything the streamed outputs would have
carried: ids, text, stops, logprobs, speculative counters. Plain and n-gram engines, greedy
speculative output identical to plain; the engines check KV integrity after every step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engine_fixtures import make_engine

from sglang.runtime.engine import Engine

PARAGRAPH = ("The committee met on Tuesday to discuss the budget for the new library. After a "
             "long debate, members agreed to fund the children's section first.")
COPY = f"<|im_start|>user\nRepeat exactly:\n{PARAGRAPH}<|im_end|>\n<|im_start|>assistant\n"

CASES = [
    ({"temperature": 0, "max_new_tokens": 40}, {}),
    ({"temperature": 0, "max_new_tokens": 48, "stop": ["children"]}, {}),
    ({"temperature": 0, "max_new_tokens": 9}, {}),
    ({"temperature": 0, "max_new_tokens": 12},
     {"return_logprob": True, "top_logprobs_num": 2, "logprob_start_len": 3}),
]


@pytest.fixture(scope="module")
def spec_engine() -> Iterator[Any]:
    eng = make_engine(speculative_algorithm="ngram", speculative_num_draft_tokens=4)
    yield eng
    eng.shutdown()


@pytest.fixture
def fold_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many outputs the engine received (one fold each)."""
    count = [0]
    real = Engine._fold

    def counting(res: Any, out: Any) -> Any:
        count[0] += 1
        return real(res, out)

    monkeypatch.setattr(Engine, "_fold", staticmethod(counting))
    return count


def _key(result: dict[str, Any]) -> dict[str, Any]:
    """A result without its request id."""
    return {**result, "meta_info": {k: v for k, v in result["meta_info"].items() if k != "id"}}


def _joined(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The streamed chunks folded together, as a result (without its request id)."""
    meta = {k: v for k, v in chunks[-1]["meta_info"].items() if k != "id"}
    if "output_token_logprobs" in meta:
        meta["output_token_logprobs"] = [lp for c in chunks
                                         for lp in c["meta_info"]["output_token_logprobs"]]
        meta["output_top_logprobs"] = [lp for c in chunks
                                       for lp in c["meta_info"]["output_top_logprobs"]]
    return {"text": "".join(c["text"] for c in chunks),
            "output_ids": [t for c in chunks for t in c["output_ids"]], "meta_info": meta}


@pytest.mark.parametrize("case", range(len(CASES)))
def test_one_output_per_unstreamed_request(engine: Any, spec_engine: Any, fold_count: list[int],
                                           case: int) -> None:
    params, extra = CASES[case]
    results = {}
    for name, eng in (("plain", engine), ("ngram", spec_engine)):
        eng.flush_cache()
        fold_count[0] = 0
        whole = eng.generate(COPY, params, **extra)
        assert fold_count[0] == 1
        eng.flush_cache()
        fold_count[0] = 0
        chunks = list(eng.generate(COPY, params, stream=True, **extra))
        # Streamed: an output per step (several tokens per step when drafts are accepted).
        assert fold_count[0] > 1 and len(chunks) > 1
        assert _key(whole) == _joined(chunks)
        eng.check_integrity()
        results[name] = whole
    plain, spec = results["plain"], results["ngram"]
    assert (spec["output_ids"], spec["text"]) == (plain["output_ids"], plain["text"])
    assert spec["meta_info"]["finish_reason"] == plain["meta_info"]["finish_reason"]
    if case == 1:
        assert plain["meta_info"]["finish_reason"] == {"type": "stop", "matched": "children"}


def test_batch_gets_one_output_per_request(spec_engine: Any, fold_count: list[int]) -> None:
    prompts = [COPY, "The capital of France is", COPY]
    params = [{"temperature": 0, "max_new_tokens": n} for n in (30, 12, 5)]
    outs = spec_engine.generate(prompts, params)
    assert fold_count[0] == 3
    assert [o["meta_info"]["completion_tokens"] for o in outs] == [30, 12, 5]
    assert all(len(o["output_ids"]) == o["meta_info"]["completion_tokens"] for o in outs)
    assert outs[0]["meta_info"]["spec_accepted_tokens"] > 0
    spec_engine.check_integrity()


async def _async_results(eng: Any, params: dict[str, Any]) -> tuple[dict, list[dict]]:
    whole = await eng.async_generate(COPY, params)
    stream = await eng.async_generate(COPY, params, stream=True)
    return whole, [c async for c in stream]


def test_async_generate_coalesces_too(spec_engine: Any, fold_count: list[int]) -> None:
    import asyncio

    params = {"temperature": 0, "max_new_tokens": 24}
    whole, chunks = asyncio.run(_async_results(spec_engine, params))
    # One output for the unstreamed request, one per step for the streamed one.
    assert fold_count[0] == 1 + len(chunks)
    assert _key(whole) == _joined(chunks)


def test_stream_interval_sends_every_n_tokens(spec_engine: Any) -> None:
    from sglang.runtime.config import RuntimeArgs

    with pytest.raises(ValueError, match="stream_interval=0"):
        RuntimeArgs(stream_interval=0)
    params = {"temperature": 0, "max_new_tokens": 40}
    spec_engine.flush_cache()
    want = spec_engine.generate(COPY, params)
    eng = make_engine(speculative_algorithm="ngram", speculative_num_draft_tokens=4,
                      stream_interval=3)  # the fixture's, so the spec counters agree too
    try:
        chunks = list(eng.generate(COPY, params, stream=True))
        eng.check_integrity()
    finally:
        eng.shutdown()
    sizes = [len(c["output_ids"]) for c in chunks]
    assert len(chunks) > 1 and all(n >= 3 for n in sizes[:-1]) and sizes[-1] >= 1
    assert sum(sizes) == want["meta_info"]["completion_tokens"]
    assert _joined(chunks) == _key(want)

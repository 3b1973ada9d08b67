"""Overlapped decode (scheduler/overlap.py) gives the same results as synchronous decode.

Overlap is on by default only on CUDA, but its bookkeeping runs unchanged on CPU (the "in-flight"
tokens are simply already on the host), so the logic is tested here: same tokens, finish
reasons and usage; the KV integrity check after every step; aborts of requests with a token in
flight; and the synchronous fallback for requests whose sampling reads their latest tokens.
"""

from __future__ import annotations

from typing import Any

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import TokenizedGenerateReq
from sglang.runtime.scheduler.request import make_req

PROMPTS = [
    "The capital of France is",
    "List three primary colors:\n1.",
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time",
    "def add(a, b):",
]


def _params() -> list[dict[str, Any]]:
    # EOS on, stop strings, stop ids and uneven lengths: requests finish on different steps.
    return [
        {"temperature": 0, "max_new_tokens": 30},
        {"temperature": 0, "max_new_tokens": 25, "stop": ["\n3."]},
        {"temperature": 0, "max_new_tokens": 40},
        {"temperature": 0, "max_new_tokens": 7, "stop_token_ids": [13]},
        {"temperature": 0.8, "seed": 5, "max_new_tokens": 20},
    ]


def _run(engine: Any, overlap: bool, params: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    engine._call(lambda s: setattr(s, "overlap", overlap))
    try:
        engine.flush_cache()
        out = engine.generate(PROMPTS, params)
    finally:
        engine._call(lambda s: setattr(s, "overlap", False))
    return [
        (o["output_ids"], o["text"], str(o["meta_info"]["finish_reason"]),
         o["meta_info"]["completion_tokens"])
        for o in out
    ]


def test_overlap_equals_synchronous(engine: Any) -> None:
    assert _run(engine, True, _params()) == _run(engine, False, _params())
    engine.check_integrity()


def test_unsafe_requests_fall_back(engine: Any) -> None:
    params = _params()
    params[0]["frequency_penalty"] = 0.5  # sampling reads the output counts: no overlap
    params[2]["min_new_tokens"] = 10
    assert _run(engine, True, params) == _run(engine, False, params)
    engine.check_integrity()


def test_abort_with_token_in_flight(engine: Any) -> None:
    def scenario(s: Any) -> tuple[bool, int]:
        s.overlap = True
        try:
            tok = engine.tokenizer
            reqs = []
            for i, text in enumerate(PROMPTS[:3]):
                msg = TokenizedGenerateReq(
                    rid=f"overlap-abort-{i}", input_ids=tok.encode(text),
                    sampling_params=SamplingParams(temperature=0, max_new_tokens=50,
                                                   ignore_eos=True),
                )
                reqs.append(make_req(msg, s.kv.req_pool.device))
                s.add_request(reqs[-1])
            for _ in range(5):
                s.step()
            had_flight = s.in_flight is not None
            s.abort(reqs[1].rid)
            s.check_integrity()
            while s.has_work:
                s.step()
            s.check_integrity()
            return had_flight, len(reqs[0].output_ids)
        finally:
            s.overlap = False

    had_flight, n = engine._call(scenario)
    assert had_flight
    assert n == 50

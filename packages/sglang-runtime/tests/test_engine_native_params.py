"""SGLang's native sampling params through the Engine: logit_bias, stop_regex, sampling_seed,
custom_params (refused)."""

from __future__ import annotations

import re

import pytest

from sglang.protocol.errors import InvalidRequest

PROMPT = "Once upon a time, in a small village by the sea,"
GREEDY = {"temperature": 0, "max_new_tokens": 8, "ignore_eos": True}


def test_plus_100_forces_a_token(engine):
    free = engine.generate(PROMPT, GREEDY)["output_ids"]
    forced = next(t for t in range(100, 200) if t not in free)
    for params in (GREEDY, {**GREEDY, "temperature": 1.0, "seed": 3}):
        out = engine.generate(PROMPT, {**params, "logit_bias": {str(forced): 100}})
        assert out["output_ids"] == [forced] * 8


def test_minus_100_forbids_a_token_and_batches_stay_independent(engine):
    free = engine.generate(PROMPT, GREEDY)["output_ids"]
    banned = {str(t): -100 for t in set(free)}
    outs = engine.generate([PROMPT, PROMPT], [{**GREEDY, "logit_bias": banned}, GREEDY])
    assert not set(outs[0]["output_ids"]) & set(free)
    assert outs[1]["output_ids"] == free  # the neighbour in the batch is untouched
    engine.check_integrity()


@pytest.mark.parametrize("bias", [{"1": 101}, {"1": -100.5}, {"x": 1}, {"-1": 1},
                                  {"99999999": 1}])
def test_bad_logit_bias_is_refused(engine, bias):
    with pytest.raises(InvalidRequest) as e:
        engine.generate(PROMPT, {**GREEDY, "logit_bias": bias})
    assert e.value.param == "sampling_params.logit_bias" or e.value.param == "logit_bias"


def test_stop_regex_stops_and_trims(engine):
    free = engine.generate(PROMPT, {**GREEDY, "max_new_tokens": 32})["text"]
    word = free.split()[3]
    pattern = re.escape(word) + r"\b"
    out = engine.generate(PROMPT, {**GREEDY, "max_new_tokens": 32, "stop_regex": [pattern]})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": pattern}
    cut = re.search(pattern, free)
    assert cut is not None and out["text"] == free[: cut.start()]
    kept = engine.generate(PROMPT, {**GREEDY, "max_new_tokens": 32, "stop_regex": pattern,
                                    "no_stop_trim": True})
    assert re.search(pattern, kept["text"])


def test_bad_stop_regex_is_refused(engine):
    for pattern in ("(", "a*"):
        with pytest.raises(InvalidRequest, match="stop_regex"):
            engine.generate(PROMPT, {**GREEDY, "stop_regex": pattern})


def test_sampling_seed_is_seed(engine):
    sampled = {"temperature": 1.0, "max_new_tokens": 8}
    a = engine.generate(PROMPT, {**sampled, "sampling_seed": 11})["output_ids"]
    b = engine.generate(PROMPT, {**sampled, "seed": 11})["output_ids"]
    c = engine.generate(PROMPT, {**sampled, "seed": 12})["output_ids"]
    assert a == b and a != c
    with pytest.raises(InvalidRequest, match="sampling_seed"):
        engine.generate(PROMPT, {**sampled, "seed": 1, "sampling_seed": 2})


def test_custom_params_refused_by_name(engine):
    with pytest.raises(InvalidRequest, match="custom_params") as e:
        engine.generate(PROMPT, {**GREEDY, "custom_params": {"x": 1}})
    assert "custom_params" in (e.value.param or "")

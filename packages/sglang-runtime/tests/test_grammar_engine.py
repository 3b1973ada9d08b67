"""Structured output through the Engine on SmolLM2-135M-Instruct: regexes, JSON schemas and EBNF
on both grammar backends, batches mixing constrained and free requests, jump-forward, errors.

Each group runs as one batched generate call (one request per case) to keep CPU time low. The
session engine checks its KV accounting after every step (`debug_check_integrity=True`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from engine_fixtures import PROMPTS
from grammar_cases import CHAT, LONG_KEYS_PROMPT, LONG_KEYS_SCHEMA, REGEX_CASES, SCHEMA_CASES

GREEDY = {"temperature": 0}


def _scheduler(engine: Any) -> Any:
    return engine.runtime.scheduler


@pytest.fixture(params=["xgrammar", "outlines"])
def backend(request: pytest.FixtureRequest, engine: Any) -> Iterator[str]:
    """Runs the test on the session engine with the given grammar backend installed (the
    scheduler's GrammarManager is swapped between steps, then restored)."""
    from sglang.runtime.grammar.manager import GrammarManager

    sched = _scheduler(engine)
    default = sched.grammar
    if request.param != default.backend_name:
        vocab = default.vocab
        swapped = GrammarManager(request.param, vocab.tokenizer, vocab.vocab_size,
                                 set(vocab.eos_ids))
        engine._call(lambda s: setattr(s, "grammar", swapped))
    try:
        yield request.param
    finally:
        engine._call(lambda s: setattr(s, "grammar", default))
        engine.check_integrity()


def test_regexes_match_in_full(engine: Any, backend: str) -> None:
    prompts = [p for p, _ in REGEX_CASES]
    params = [{**GREEDY, "regex": r, "max_new_tokens": 32} for _, r in REGEX_CASES]
    outs = engine.generate(prompts, params)
    for (_, regex), out in zip(REGEX_CASES, outs):
        assert re.fullmatch(regex, out["text"]), (backend, regex, out["text"])
        # Bounded languages: the grammar ends the request, not the token budget.
        assert out["meta_info"]["finish_reason"]["type"] == "stop", (regex, out["meta_info"])


def test_json_schemas_validate(engine: Any, backend: str) -> None:
    prompts = [CHAT.format(p) for p, _ in SCHEMA_CASES]
    params = [{**GREEDY, "json_schema": json.dumps(s), "max_new_tokens": 96}
              for _, s in SCHEMA_CASES]
    outs = engine.generate(prompts, params)
    for (_, schema), out in zip(SCHEMA_CASES, outs):
        assert out["meta_info"]["finish_reason"]["type"] == "stop", (schema, out)
        jsonschema.validate(json.loads(out["text"]), schema)


def test_sampled_outputs_obey_the_grammar(engine: Any, backend: str) -> None:
    """At temperature 1 the model strays: the masks, not its preferences, keep it in line."""
    cases = REGEX_CASES[:6]
    params = [{"temperature": 1.0, "seed": 7 + i, "regex": r, "max_new_tokens": 32}
              for i, (_, r) in enumerate(cases)]
    outs = engine.generate([p for p, _ in cases], params)
    for (_, regex), out in zip(cases, outs):
        assert re.fullmatch(regex, out["text"]), (regex, out["text"])


def test_ebnf(engine: Any) -> None:
    grammar = 'root ::= "The answer is " answer "."\nanswer ::= "yes" | "no" | "maybe"'
    prompts = [CHAT.format(q) for q in ("Is the sky blue?", "Can pigs fly?", "Will it rain?")]
    outs = engine.generate(prompts, {**GREEDY, "ebnf": grammar, "max_new_tokens": 16})
    for out in outs:
        assert re.fullmatch(r"The answer is (yes|no|maybe)\.", out["text"]), out["text"]


def test_mixed_batch_leaves_free_requests_unchanged(engine: Any) -> None:
    """32 requests, half constrained: the free ones give the same greedy text as without them."""
    free_prompts = (PROMPTS + [p + " Then" for p in PROMPTS])[:16]
    free = {**GREEDY, "max_new_tokens": 16}
    constrained = [(p, {**GREEDY, "regex": r, "max_new_tokens": 32}) for p, r in REGEX_CASES[:10]]
    constrained += [(CHAT.format(p), {**GREEDY, "json_schema": json.dumps(s),
                                      "max_new_tokens": 96}) for p, s in SCHEMA_CASES[:6]]
    prompts, params = [], []
    for i in range(16):  # interleaved, so masked and free rows alternate in every batch
        prompts += [free_prompts[i], constrained[i][0]]
        params += [free, constrained[i][1]]
    mixed = engine.generate(prompts, params)
    alone = engine.generate(free_prompts, free)
    singles = [engine.generate(p, free) for p in free_prompts[:2]]
    assert [m["text"] for m in mixed[0::2]] == [a["text"] for a in alone]
    assert [s["text"] for s in singles] == [a["text"] for a in alone[:2]]
    for (_, p), out in zip(constrained, mixed[1::2]):
        if "regex" in p:
            assert re.fullmatch(p["regex"], out["text"]), out["text"]
        else:
            jsonschema.validate(json.loads(out["text"]), json.loads(p["json_schema"]))


def _run_long_keys(engine: Any, jump_forward: bool, **extra: Any) -> tuple[dict, int, int]:
    """(result, model steps, jump-forward tokens) of the long-keys schema from a cold cache."""
    sched = _scheduler(engine)
    engine._call(lambda s: setattr(s.grammar, "jump_forward", jump_forward))
    try:
        assert engine.flush_cache()
        steps, jumped = sched.forward_steps, sched.jump_forward_tokens
        out = engine.generate(LONG_KEYS_PROMPT, {**GREEDY, "json_schema": json.dumps(
            LONG_KEYS_SCHEMA), "max_new_tokens": 128, **extra})
        return out, sched.forward_steps - steps, sched.jump_forward_tokens - jumped
    finally:
        engine._call(lambda s: setattr(s.grammar, "jump_forward", True))


def test_jump_forward_takes_fewer_model_steps_for_the_same_text(engine: Any, backend: str) -> None:
    on, steps_on, jumped = _run_long_keys(engine, True)
    off, steps_off, none = _run_long_keys(engine, False)
    print(f"\n[{backend}] long-keys schema: {steps_on} model steps with jump-forward "
          f"({jumped} tokens jumped), {steps_off} without")
    assert on["text"] == off["text"]
    jsonschema.validate(json.loads(on["text"]), LONG_KEYS_SCHEMA)
    assert none == 0 and jumped >= 20
    assert steps_on <= steps_off // 2
    # Usage stays honest: jumped tokens are completion tokens; no output token counts as a
    # cached prompt token, even when the jumped prefix is found in the cache the next time.
    meta = on["meta_info"]
    assert meta["completion_tokens"] == len(on["output_ids"])
    again = engine.generate(LONG_KEYS_PROMPT, {**GREEDY, "json_schema": json.dumps(
        LONG_KEYS_SCHEMA), "max_new_tokens": 128})
    assert again["text"] == on["text"]
    # The whole prompt is cached (the jumped tokens after it are too, but they are output).
    assert again["meta_info"]["cached_tokens"] == meta["prompt_tokens"]


def test_jump_forward_streams_the_same_text_within_budget(engine: Any) -> None:
    full, _, _ = _run_long_keys(engine, True)
    chunks = list(engine.generate(LONG_KEYS_PROMPT, {**GREEDY, "json_schema": json.dumps(
        LONG_KEYS_SCHEMA), "max_new_tokens": 128}, stream=True))
    assert "".join(c["text"] for c in chunks) == full["text"]
    # A jump never runs past max_new_tokens.
    short, _, _ = _run_long_keys(engine, True, max_new_tokens=9)
    assert short["meta_info"]["finish_reason"] == {"type": "length", "length": 9}
    assert len(short["output_ids"]) == 9 and full["text"].startswith(short["text"])


def test_logprob_requests_do_not_jump(engine: Any) -> None:
    """Forced tokens have no sampled logprob, so a request that wants logprobs steps through."""
    sched = _scheduler(engine)
    before = sched.jump_forward_tokens
    res = engine.generate(LONG_KEYS_PROMPT, {**GREEDY, "json_schema": json.dumps(
        LONG_KEYS_SCHEMA), "max_new_tokens": 16}, return_logprob=True)
    assert sched.jump_forward_tokens == before
    assert len(res["meta_info"]["output_token_logprobs"]) == len(res["output_ids"]) == 16
    key = '{"customer_loyalty_membership_tier": "'
    assert res["text"][: len(key)] == key[: len(res["text"])]


@pytest.mark.parametrize(("params", "message"), [
    ({"regex": "a(b"}, r"invalid regex: .*parenthesis"),
    ({"json_schema": "{not json"}, r"invalid json_schema: not valid JSON"),
    ({"json_schema": '{"type": "frobnicate"}'}, r"invalid json_schema: .*frobnicate"),
    ({"ebnf": 'root ::= "a" missing_rule'}, r"invalid ebnf: .*missing_rule"),
    ({"regex": "a", "json_schema": "{}"}, r"only one of regex, json_schema, ebnf"),
])
def test_invalid_constraints_raise_value_error(engine: Any, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine.generate("Hello", {**params, "max_new_tokens": 4})
    out = engine.generate("The capital of France is", {**GREEDY, "max_new_tokens": 2})
    assert out["meta_info"]["completion_tokens"] == 2  # still serving
    engine.check_integrity()


def test_outlines_refuses_ebnf_and_bad_regex(engine: Any) -> None:
    from sglang.runtime.grammar.manager import GrammarManager

    sched = _scheduler(engine)
    default, vocab = sched.grammar, sched.grammar.vocab
    outlines = GrammarManager("outlines", vocab.tokenizer, vocab.vocab_size, set(vocab.eos_ids))
    engine._call(lambda s: setattr(s, "grammar", outlines))
    try:
        with pytest.raises(ValueError, match="outlines grammar backend does not support ebnf"):
            engine.generate("Hi", {"ebnf": 'root ::= "a"', "max_new_tokens": 2})
        with pytest.raises(ValueError, match=r"invalid regex: .*unterminated"):
            engine.generate("Hi", {"regex": "(ab", "max_new_tokens": 2})
    finally:
        engine._call(lambda s: setattr(s, "grammar", default))
    engine.check_integrity()

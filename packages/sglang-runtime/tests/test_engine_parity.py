"""The Engine on the real SmolLM2-135M-Instruct against transformers on the same GGUF."""

from __future__ import annotations

from engine_fixtures import PROMPTS, hf_greedy, make_engine

MAX_NEW = 24
GREEDY = {"temperature": 0, "max_new_tokens": MAX_NEW}


def test_tokenizer_matches_transformers(engine, hf_reference):
    _, hf_tok = hf_reference
    for p in PROMPTS:
        assert engine.tokenizer.encode(p) == hf_tok(p).input_ids


def test_greedy_parity_one_at_a_time_and_batched(engine, hf_reference):
    _, hf_tok = hf_reference
    expected = [hf_greedy(hf_reference, hf_tok(p).input_ids, MAX_NEW) for p in PROMPTS]
    singles = [engine.generate(p, GREEDY)["output_ids"] for p in PROMPTS]
    batched = [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY)]
    assert len({len(hf_tok(p).input_ids) for p in PROMPTS}) > 3  # ragged lengths
    for prompt, exp, one, many in zip(PROMPTS, expected, singles, batched):
        assert one == exp, prompt
        assert many == exp, prompt
    engine.check_integrity()


def test_shared_prefix_hits_cache_and_matches_no_cache_run(engine):
    prefix = (
        "You are a geography tutor. Answer with one word.\n"
        "Q: What is the capital of Italy?\nA: Rome\n"
        "Q: What is the capital of Spain?\nA: Madrid\n"
        "Q: What is the capital of Germany?\nA: Berlin\n"
    )
    prompts = [prefix + f"Q: What is the capital of {c}?\nA:" for c in
               ("France", "Japan", "Egypt", "Canada", "Peru", "Kenya")]
    engine.flush_cache()
    first = engine.generate(prompts[0], GREEDY)
    rest = engine.generate(prompts[1:], GREEDY)
    prefix_len = len(engine.tokenizer.encode(prefix))
    assert first["meta_info"]["cached_tokens"] == 0
    for out in rest:
        assert out["meta_info"]["cached_tokens"] >= prefix_len - 2
    nocache = make_engine(disable_radix_cache=True)
    try:
        plain = nocache.generate(prompts, GREEDY)
    finally:
        nocache.shutdown()
    assert all(o["meta_info"]["cached_tokens"] == 0 for o in plain)
    assert [o["text"] for o in plain] == [first["text"]] + [o["text"] for o in rest]
    engine.check_integrity()


def test_tiny_kv_pool_retracts_and_still_matches(engine):
    prompts = [
        f"Story {i}: " + " ".join(["the cat sat on the mat and looked around"] * 4)
        for i in range(12)
    ]
    # EOS stays on: with ignore_eos admission reserves every output token up front (nothing
    # but the length can stop such a request) and never needs to retract.
    params = {"temperature": 0, "max_new_tokens": 40}
    expected = [o["output_ids"] for o in engine.generate(prompts, params)]
    assert sum(len(ids) for ids in expected) > 300  # long enough to overflow 400 slots
    tiny = make_engine(max_total_tokens=400)
    try:
        got = [o["output_ids"] for o in tiny.generate(prompts, params)]
        retractions = tiny._call(lambda s: s.num_retractions)
        tiny.check_integrity()
    finally:
        tiny.shutdown()
    assert retractions > 0
    assert got == expected


def test_ignore_eos_admission_reserves_all_output(engine):
    prompts = [f"Count {i}: one two three four five" for i in range(10)]
    params = {"temperature": 0, "max_new_tokens": 30, "ignore_eos": True}
    expected = [o["output_ids"] for o in engine.generate(prompts, params)]
    tiny = make_engine(max_total_tokens=200)
    try:
        got = [o["output_ids"] for o in tiny.generate(prompts, params)]
        retractions = tiny._call(lambda s: s.num_retractions)
    finally:
        tiny.shutdown()
    assert got == expected
    assert retractions == 0  # the outputs' length is certain, so admission never overcommits


def test_chunked_prefill_matches_unchunked(engine):
    prompt = "Here is a long story about a dragon. " * 20
    params = {"temperature": 0, "max_new_tokens": 16}
    expected = engine.generate(prompt, params)["output_ids"]
    chunked = make_engine(chunked_prefill_size=32)
    try:
        out = chunked.generate([prompt, "Short one."], params)
    finally:
        chunked.shutdown()
    assert out[0]["output_ids"] == expected

"""FP8 KV cache (e4m3, scales 1.0: the GGUF carries none) on the embedded SmolLM2-135M on CPU,
against the same model with the float32 cache (the session `engine`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import PROMPTS, make_engine, smollm2_folder  # noqa: E402
from kv_fp8_cases import assert_fp8_close, run_logits  # noqa: E402

MAX_NEW = 24
GREEDY = {"temperature": 0, "max_new_tokens": MAX_NEW}
# A greedy choice that flips between the two caches must have been a near tie in the float32
# run: the fp8 run's token among its top 3, at most this many nats below the top logprob
# (logprob gaps are logit gaps). Measured on the parity prompts: gaps of 0.005 to 0.43.
NEAR_TIE_NATS = 0.5


def test_logits_within_the_e4m3_tolerance() -> None:
    import torch

    from sglang.runtime.loading.loader import load_model

    smollm2_folder()  # skips without the embedded model
    loaded = load_model(None, dtype="float32")
    vocab = loaded.model_config.vocab_size
    want = run_logits(loaded.model, loaded.config, None, "torch", vocab)
    got = run_logits(loaded.model, loaded.config, torch.float8_e4m3fn, "torch", vocab)
    assert_fp8_close(got, want)


def test_greedy_agrees_up_to_near_ties_with_cached_prefix(engine) -> None:
    fp8 = make_engine(kv_cache_dtype="fp8_e4m3")
    try:
        kw = dict(return_logprob=True, top_logprobs_num=3)
        want = engine.generate(PROMPTS, GREEDY, **kw)  # ragged batch
        got = fp8.generate(PROMPTS, GREEDY, **kw)
        # The same prompts again: every one now extends over its radix-cached prompt.
        again = fp8.generate(PROMPTS, GREEDY)
        fp8.check_integrity()
    finally:
        fp8.shutdown()
    agree = []
    for prompt, w, g in zip(PROMPTS, want, got, strict=True):
        a, b = w["output_ids"], g["output_ids"]
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        agree.append(MAX_NEW if first is None else first)
        if first is None:
            continue
        top = w["meta_info"]["output_top_logprobs"][first]
        gaps = {tok: top[0][0] - lp for lp, tok, _ in top}
        assert b[first] in gaps and gaps[b[first]] <= NEAR_TIE_NATS, (prompt, first, top, b)
    # Most prompts keep the float32 run's first tokens; one is identical throughout.
    assert sum(n >= 3 for n in agree) > len(PROMPTS) // 2, agree
    assert MAX_NEW in agree, agree
    for g, a in zip(got, again, strict=True):
        assert a["meta_info"]["cached_tokens"] > 0
        assert a["output_ids"] == g["output_ids"]

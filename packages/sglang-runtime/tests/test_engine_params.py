"""Sampling parameters, stop conditions, logprobs and errors through the Engine."""

from __future__ import annotations

import asyncio

import pytest

PROMPT = "Once upon a time, in a small village by the sea,"


def test_max_new_tokens_and_ignore_eos(engine):
    out = engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 7, "ignore_eos": True})
    assert len(out["output_ids"]) == 7
    assert out["meta_info"]["completion_tokens"] == 7
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 7}


def test_max_new_tokens_zero_only_prefills(engine):
    out = engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 0})
    assert out["output_ids"] == [] and out["text"] == ""
    assert out["meta_info"]["completion_tokens"] == 0
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 0}
    again = engine.generate(PROMPT + " and", {"temperature": 0, "max_new_tokens": 1})
    assert again["meta_info"]["cached_tokens"] >= len(engine.tokenizer.encode(PROMPT)) - 1
    engine.check_integrity()


def test_eos_stops_unless_ignored(engine):
    eos = engine.tokenizer.eos_token_id
    chat = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
    out = engine.generate(chat, {"temperature": 0, "max_new_tokens": 64})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": eos}
    assert out["output_ids"][-1] == eos
    n = len(out["output_ids"])
    longer = engine.generate(chat, {"temperature": 0, "max_new_tokens": n + 5, "ignore_eos": True})
    assert len(longer["output_ids"]) == n + 5
    assert longer["output_ids"][:n] == out["output_ids"]


def test_stop_string_trims_text(engine):
    free = engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 32})["text"]
    word = free.split()[3]
    out = engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 32, "stop": word})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": word}
    assert out["text"] == free[: free.index(word)]
    kept = engine.generate(
        PROMPT, {"temperature": 0, "max_new_tokens": 32, "stop": [word], "no_stop_trim": True}
    )
    assert kept["text"].endswith(word) or word in kept["text"]


def test_stop_token_ids(engine):
    free = engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 16})["output_ids"]
    stop_tok = free[5]
    out = engine.generate(
        PROMPT, {"temperature": 0, "max_new_tokens": 16, "stop_token_ids": [stop_tok]}
    )
    first = free.index(stop_tok)
    assert out["output_ids"] == free[: first + 1]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_tok}
    assert out["text"] == engine.tokenizer.decode(free[:first], skip_special_tokens=True)


def test_min_new_tokens_blocks_eos(engine):
    chat = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
    short = engine.generate(chat, {"temperature": 0, "max_new_tokens": 64})
    n = len(short["output_ids"])
    out = engine.generate(chat, {"temperature": 0, "max_new_tokens": 64, "min_new_tokens": n + 3})
    assert len(out["output_ids"]) >= n + 3


def test_n_returns_that_many(engine):
    outs = engine.generate(PROMPT, {"temperature": 0.8, "max_new_tokens": 8, "n": 3, "seed": 1})
    assert isinstance(outs, list) and len(outs) == 3
    assert len({tuple(o["output_ids"]) for o in outs}) > 1
    greedy = engine.generate([PROMPT, "Hi"], {"temperature": 0, "max_new_tokens": 4, "n": 2})
    assert len(greedy) == 4
    assert greedy[0]["output_ids"] == greedy[1]["output_ids"]


def test_seeded_sampling_is_reproducible(engine):
    params = {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 1234}
    a = engine.generate(PROMPT, params)["text"]
    b = engine.generate([PROMPT, "unrelated other prompt"], [params, {"max_new_tokens": 5}])
    c = engine.generate(PROMPT, {**params, "seed": 99})["text"]
    assert a == b[0]["text"]
    assert a != c


def test_logprobs(engine):
    ids = engine.tokenizer.encode(PROMPT)
    out = engine.generate(
        PROMPT, {"temperature": 0, "max_new_tokens": 5}, return_logprob=True,
        logprob_start_len=0, top_logprobs_num=3,
    )
    meta = out["meta_info"]
    assert [t for _, t, _ in meta["input_token_logprobs"]] == ids
    assert meta["input_token_logprobs"][0][0] is None
    assert len(meta["output_token_logprobs"]) == 5
    for (lp, tok, _), top in zip(meta["output_token_logprobs"], meta["output_top_logprobs"]):
        assert len(top) == 3
        assert top[0][1] == tok and abs(top[0][0] - lp) < 1e-5  # greedy picks the top token
    scored = [lp for lp, _, _ in meta["input_token_logprobs"][1:]]
    assert meta["normalized_prompt_logprob"] == pytest.approx(sum(scored) / len(scored))
    later = engine.generate(
        PROMPT, {"temperature": 0, "max_new_tokens": 1}, return_logprob=True, logprob_start_len=4,
    )
    tail = later["meta_info"]["input_token_logprobs"]
    assert [t for _, t, _ in tail] == ids[4:]
    for (a, _, _), (b, _, _) in zip(tail, meta["input_token_logprobs"][4:]):
        assert a == pytest.approx(b, abs=1e-4)


def test_streaming_joins_into_full_text(engine):
    params = {"temperature": 0, "max_new_tokens": 20}
    full = engine.generate(PROMPT, params)
    chunks = list(engine.generate(PROMPT, params, stream=True))
    assert "".join(c["text"] for c in chunks) == full["text"]
    assert sum(len(c["output_ids"]) for c in chunks) == len(full["output_ids"])
    assert chunks[-1]["meta_info"]["finish_reason"] == full["meta_info"]["finish_reason"]


def test_async_generate(engine):
    params = {"temperature": 0, "max_new_tokens": 8}

    async def run():
        return await asyncio.gather(
            engine.async_generate(PROMPT, params), engine.async_generate("The quick", params)
        )

    a, b = asyncio.run(run())
    assert a["text"] == engine.generate(PROMPT, params)["text"]
    assert b["meta_info"]["completion_tokens"] == 8


def test_input_ids_batch(engine):
    ids = [engine.tokenizer.encode(PROMPT), engine.tokenizer.encode("The quick brown fox")]
    outs = engine.generate(input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": 4})
    text = engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 4})
    assert outs[0]["output_ids"] == text["output_ids"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_new_tokens": -3}, "max_new_tokens"),
        ({"no_such_param": 1}, "no_such_param"),
    ],
)
def test_bad_sampling_params_name_the_field(engine, params, field):
    with pytest.raises(ValueError, match=field):
        engine.generate(PROMPT, params)


def test_prompt_longer_than_context_is_refused(engine):
    with pytest.raises(ValueError, match="context length"):
        engine.generate(input_ids=[1] * 9000, sampling_params={"max_new_tokens": 1})
    engine.check_integrity()
    assert engine.generate(PROMPT, {"temperature": 0, "max_new_tokens": 2})["output_ids"]

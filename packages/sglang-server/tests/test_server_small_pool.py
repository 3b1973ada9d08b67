"""A KV pool smaller than the context, through a live server (issue 15): a request whose
prompt fits but prompt + output does not ends with `length` at the pool's size, a short one
sent behind it answers, concurrent requests that overcommit the pool are retracted and still
finish, a prompt the pool cannot hold is a 400, and the integrity check holds throughout."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from live_server import LiveServer, launch, metric, wait_idle
from tiny_models import save_tiny_model

VOCAB = 96
POOL = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import transformers

    folder: Path = tmp_path_factory.mktemp("small-pool")
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        architectures=["LlamaForCausalLM"],
    )
    save_tiny_model(config, folder, with_tokenizer=False)
    srv = launch("--model-path", str(folder), "--skip-tokenizer-init", "--device", "cpu",
                 "--max-total-tokens", str(POOL), "--init-new-token-ratio", "0.1",
                 "--min-new-token-ratio", "0.05")
    yield srv
    srv.stop()


def _generate(server: LiveServer, ids: list[int], params: dict) -> dict:
    with server.client() as c:
        r = c.post("/generate", json={"input_ids": ids, "sampling_params": params})
        assert r.status_code == 200, r.text
        return r.json()


def test_long_request_ends_and_short_one_behind_it_answers(server: LiveServer) -> None:
    long_ids = [(7 * i) % (VOCAB - 1) + 1 for i in range(40)]
    with ThreadPoolExecutor(2) as pool:
        long = pool.submit(_generate, server, long_ids,
                           {"temperature": 0, "max_new_tokens": 100, "ignore_eos": True})
        short = pool.submit(_generate, server, [1, 2, 3],
                            {"temperature": 0, "max_new_tokens": 2, "ignore_eos": True})
        long_out, short_out = long.result(timeout=120), short.result(timeout=120)
    # Clipped to the pool, reported honestly: length, with the tokens it produced.
    assert long_out["meta_info"]["finish_reason"] == {"type": "length", "length": POOL - 40}
    assert len(long_out["output_ids"]) == POOL - 40
    assert short_out["meta_info"]["finish_reason"] == {"type": "length", "length": 2}
    with server.client() as c:
        assert c.get("/health").status_code == 200
    wait_idle(server)


def test_overcommitted_requests_are_retracted_and_finish(server: LiveServer) -> None:
    # A stop id makes the output's length uncertain to admission, which then reserves only a
    # share of it and overcommits; min_new_tokens masks the stop id, so all 40 come.
    params = {"temperature": 0, "max_new_tokens": 40, "min_new_tokens": 40, "ignore_eos": True,
              "stop_token_ids": [VOCAB - 1]}
    prompts = [[(i + 3 * j) % (VOCAB - 1) + 1 for j in range(12)] for i in range(5)]
    with ThreadPoolExecutor(len(prompts)) as pool:
        outs = [f.result(timeout=120) for f in
                [pool.submit(_generate, server, p, params) for p in prompts]]
    assert all(len(o["output_ids"]) == 40 for o in outs)
    with server.client() as c:
        metrics = c.get("/metrics").text
    assert metric(metrics, "sglang_num_retractions") > 0
    wait_idle(server)


def test_prompt_the_pool_cannot_hold_is_400(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/generate", json={"input_ids": [5] * POOL,
                                      "sampling_params": {"max_new_tokens": 1}})
        assert r.status_code == 400, r.text
        assert "KV pool holds only" in r.text
        assert c.get("/health").status_code == 200
    wait_idle(server)

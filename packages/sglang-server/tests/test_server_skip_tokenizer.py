"""The server with --skip-tokenizer-init on a model folder without tokenizer files: /generate
takes input_ids and answers output_ids; text and the OpenAI routes get a clear 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, launch
from tiny_models import save_tiny_model

VOCAB = 96


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import transformers

    folder: Path = tmp_path_factory.mktemp("no-tokenizer")
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        architectures=["LlamaForCausalLM"],
    )
    save_tiny_model(config, folder, with_tokenizer=False)
    srv = launch("--model-path", str(folder), "--skip-tokenizer-init", "--device", "cpu",
                 "--max-total-tokens", "4096")
    yield srv
    srv.stop()


GREEDY = {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}


def test_ids_in_ids_out(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/generate", json={"input_ids": [1, 2, 3, 4], "sampling_params": GREEDY})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["text"] == "" and len(out["output_ids"]) == 6
        assert all(0 <= t < VOCAB for t in out["output_ids"])
        assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 6}
        again = c.post("/generate", json={"input_ids": [1, 2, 3, 4], "sampling_params": GREEDY})
        assert again.json()["output_ids"] == out["output_ids"]
        stop_at = out["output_ids"][2]
        stopped = c.post("/generate", json={
            "input_ids": [1, 2, 3, 4], "sampling_params": {**GREEDY, "stop_token_ids": [stop_at]},
        }).json()
        assert stopped["output_ids"] == out["output_ids"][: out["output_ids"].index(stop_at) + 1]
        assert c.get("/health_generate").status_code == 200


@pytest.mark.parametrize(("body", "param"), [
    ({"text": "hello"}, "text"),
    ({"input_ids": [1, 2], "sampling_params": {"stop": "x"}}, "sampling_params.stop"),
])
def test_what_needs_a_tokenizer_is_400(server: LiveServer, body: dict, param: str) -> None:
    with server.client() as c:
        r = c.post("/generate", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and "tokenizer" in err["message"]


def test_openai_routes_say_they_need_a_tokenizer(server: LiveServer) -> None:
    with server.client() as c:
        assert c.get("/v1/models").status_code == 200
        r = c.post("/v1/completions", json={"model": "m", "prompt": [1, 2], "max_tokens": 2})
        assert r.status_code == 400 and "tokenizer" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "tokenizer" in r.json()["error"]["message"]

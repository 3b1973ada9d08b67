"""An embedding model served with --is-embedding: /v1/embeddings through the official `openai`
client and native /encode equal transformers' pooled, normalised hidden states; batches equal
single inputs; base64; `dimensions`; generation refused; KV slots freed."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from embedding_models import HIDDEN, reference_embedding, save_embedding_model
from live_server import LiveServer, launch, wait_idle

POOLING = "mean"  # read from the folder's sentence-transformers files
IDS = [[5, 9, 2, 7, 11, 3], [4, 4, 8], list(range(1, 40))]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Any]]:
    folder: Path = tmp_path_factory.mktemp("embedding-model")
    ref = save_embedding_model(folder, POOLING)
    srv = launch("--model-path", str(folder), "--is-embedding", "--device", "cpu",
                 "--dtype", "float32", "--max-total-tokens", "4096",
                 "--chunked-prefill-size", "16")
    yield srv, ref
    srv.stop()


@pytest.fixture(scope="module")
def client(served: tuple[LiveServer, Any]) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{served[0].url}/v1", api_key="none", max_retries=0)


def _close(got: list[float], ids: list[int], ref: Any) -> None:
    want = reference_embedding(ref, ids, POOLING)
    diff = (torch.tensor(got) - want).abs().max().item()
    assert diff < 1e-4, diff


def test_token_inputs_match_transformers_and_batch_equals_single(served, client) -> None:
    _, ref = served
    singles = []
    for ids in IDS:
        res = client.embeddings.create(model="any", input=ids)
        assert res.usage.prompt_tokens == len(ids) and len(res.data) == 1
        _close(res.data[0].embedding, ids, ref)
        singles.append(res.data[0].embedding)
    batch = client.embeddings.create(model="any", input=IDS)
    assert [d.index for d in batch.data] == [0, 1, 2]
    assert batch.usage.prompt_tokens == sum(len(i) for i in IDS)
    for one, many in zip(singles, batch.data):
        assert torch.allclose(torch.tensor(one), torch.tensor(many.embedding), atol=1e-5)


def test_text_inputs_and_base64(served, client) -> None:
    _, ref = served
    texts = ["t5 t9 t2", "t4 t4 t8 t1"]
    res = client.embeddings.create(model="any", input=texts)
    for text, d in zip(texts, res.data):
        _close(d.embedding, [int(w[1:]) for w in text.split()], ref)
    # (The openai client asks for base64 by default and decodes it: the calls above use it.)
    with served[0].client() as c:
        raw = c.post("/v1/embeddings", json={"input": texts[0],
                                             "encoding_format": "base64"}).json()
        floats = c.post("/v1/embeddings", json={"input": texts[0]}).json()
    vector = struct.unpack(f"<{HIDDEN}f", base64.b64decode(raw["data"][0]["embedding"]))
    assert floats["data"][0]["embedding"] == pytest.approx(list(vector), abs=1e-6)
    assert torch.allclose(torch.tensor(vector), torch.tensor(res.data[0].embedding), atol=1e-6)


def test_dimensions_only_when_the_model_size(served, client) -> None:
    import openai

    ok = client.embeddings.create(model="any", input="t1 t2", dimensions=HIDDEN)
    assert len(ok.data[0].embedding) == HIDDEN
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="any", input="t1 t2", dimensions=8)
    assert e.value.body["param"] == "dimensions" and "cannot shorten" in e.value.body["message"]


def test_native_encode(served) -> None:
    srv, ref = served
    with srv.client() as c:
        one = c.post("/encode", json={"input_ids": IDS[0]}).json()
        _close(one["embedding"], IDS[0], ref)
        assert one["meta_info"]["prompt_tokens"] == len(IDS[0])
        many = c.post("/encode", json={"input_ids": IDS[:2]}).json()
        assert [len(m["embedding"]) for m in many] == [HIDDEN, HIDDEN]
        _close(many[1]["embedding"], IDS[1], ref)


def test_generation_is_refused_and_nothing_leaks(served) -> None:
    srv, _ = served
    with srv.client() as c:
        r = c.post("/v1/completions", json={"prompt": "t1 t2", "max_tokens": 2})
        assert r.status_code == 400 and "embedding model" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", json={"input": "t1", "encoding_format": "int8"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format"
        r = c.post("/v1/embeddings", json={"input": [], "model": "x"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        info = c.get("/get_server_info").json()
        assert info["is_embedding"] is True and info["model_info"]["pooling"] == POOLING
        assert info["model_info"]["is_generation"] is False
    wait_idle(srv)  # idle, with the KV accounting intact

"""Embedding models (`is_embedding`): Engine.encode equals transformers' pooled, normalised
hidden states on a tiny random model, batch == single, and KV slots are freed."""

from __future__ import annotations

import pytest
import torch
from embedding_models import reference_embedding, save_embedding_model

from sglang.runtime.pooling import resolve_pooling

PROMPTS = [[5, 9, 2, 7, 11, 3], [4, 4, 8], list(range(1, 40))]


@pytest.fixture(scope="module", params=["last", "mean", "cls"])
def model(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"embed-{request.param}")
    ref = save_embedding_model(folder, request.param)
    import sglang as sgl

    # A small chunk: the 39-token prompt is prefilled in several chunks.
    eng = sgl.Engine(model_path=str(folder), is_embedding=True, dtype="float32",
                     chunked_prefill_size=16, debug_check_integrity=True)
    yield eng, ref, request.param
    eng.shutdown()


def test_pooling_is_read_from_sentence_transformers_files(model):
    eng, _, pooling = model
    assert resolve_pooling(eng.args.model_path) == pooling


def test_encode_matches_transformers(model):
    eng, ref, pooling = model
    for ids in PROMPTS:
        got = torch.tensor(eng.encode(input_ids=ids)["embedding"])
        want = reference_embedding(ref, ids, pooling)
        assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
        assert abs(float(got.norm()) - 1.0) < 1e-5


def test_batch_equals_single_and_frees_slots(model):
    eng, _, _ = model
    singles = [eng.encode(input_ids=ids) for ids in PROMPTS]
    batch = eng.encode(input_ids=PROMPTS)
    assert isinstance(batch, list) and len(batch) == len(PROMPTS)
    for one, many, ids in zip(singles, batch, PROMPTS):
        assert torch.allclose(torch.tensor(one["embedding"]), torch.tensor(many["embedding"]),
                              atol=1e-5)
        assert many["meta_info"]["prompt_tokens"] == len(ids)
    by_text = eng.encode("t5 t9 t2")["embedding"]
    by_ids = eng.encode(input_ids=eng.tokenizer.encode("t5 t9 t2"))["embedding"]
    assert torch.allclose(torch.tensor(by_text), torch.tensor(by_ids), atol=1e-6)
    eng.check_integrity()
    stats = eng._call(lambda s: s.stats())
    assert stats.num_running == 0 and stats.num_waiting == 0


def test_generation_is_refused_on_an_embedding_model(model):
    eng, _, _ = model
    from sglang.runtime.result import RequestError

    with pytest.raises(RequestError, match="embedding model"):
        eng.generate(input_ids=[1, 2, 3], sampling_params={"max_new_tokens": 2})
    eng.check_integrity()


def test_resolve_pooling_reads_the_pooling_config(tmp_path):
    import json

    assert resolve_pooling(str(tmp_path)) == "last"  # no sentence-transformers files
    assert resolve_pooling(None) == "last"
    pool = tmp_path / "1_Pooling"
    pool.mkdir()
    for key, want in (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                      ("pooling_mode_lasttoken", "last")):
        (pool / "config.json").write_text(json.dumps({key: True}))
        assert resolve_pooling(str(tmp_path)) == want
    (pool / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="max_tokens"):
        resolve_pooling(str(tmp_path))

"""skip_tokenizer_init: ids in, ids out, for a model folder that has no tokenizer files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tiny_models import save_tiny_model

from sglang.protocol.errors import InvalidRequest

SHAPE = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
PROMPTS = [[3, 17, 42, 5, 99], [7], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]
NEW = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = transformers.LlamaConfig(**SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    return save_tiny_model(config, tmp_path_factory.mktemp("no-tokenizer"), with_tokenizer=False)


@pytest.fixture(scope="module")
def engine(folder: str) -> Any:
    import sglang as sgl

    eng = sgl.Engine(model_path=folder, skip_tokenizer_init=True, device="cpu", dtype="float32",
                     max_total_tokens=2048, debug_check_integrity=True)
    yield eng
    eng.shutdown()


def _hf_greedy(folder: str, ids: list[int], n: int) -> list[int]:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1]
            seq.append(int(logits.argmax()))
    return seq[len(ids):]


def test_folder_has_no_tokenizer(folder: str) -> None:
    assert not any("tokenizer" in p.name for p in Path(folder).iterdir())


def test_greedy_ids_match_transformers(engine: Any, folder: str) -> None:
    assert engine.tokenizer is None
    params = {"temperature": 0, "max_new_tokens": NEW, "ignore_eos": True}
    outs = engine.generate(input_ids=PROMPTS, sampling_params=params)
    for ids, out in zip(PROMPTS, outs):
        assert out["output_ids"] == _hf_greedy(folder, ids, NEW)
        assert out["text"] == ""
        assert out["meta_info"]["finish_reason"] == {"type": "length", "length": NEW}
    chunks = list(engine.generate(input_ids=PROMPTS[0], sampling_params=params, stream=True))
    assert [t for c in chunks for t in c["output_ids"]] == outs[0]["output_ids"]
    assert all(c["text"] == "" for c in chunks)


def test_stop_token_ids_work(engine: Any) -> None:
    params = {"temperature": 0, "max_new_tokens": NEW, "ignore_eos": True}
    free = engine.generate(input_ids=PROMPTS[0], sampling_params=params)["output_ids"]
    out = engine.generate(input_ids=PROMPTS[0],
                          sampling_params={**params, "stop_token_ids": [free[3]]})
    assert out["output_ids"] == free[: free.index(free[3]) + 1]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": free[3]}


def test_text_and_stop_strings_are_refused(engine: Any) -> None:
    with pytest.raises(ValueError, match="input_ids") as ei:
        engine.generate("hello", {"max_new_tokens": 2})
    assert isinstance(ei.value, InvalidRequest) and ei.value.param == "text"
    with pytest.raises(ValueError, match="tokenizer") as ei:
        engine.generate(input_ids=[1, 2], sampling_params={"stop": "x"})
    assert ei.value.param == "sampling_params.stop"  # type: ignore[attr-defined]
    engine.check_integrity()


def test_without_the_flag_the_folder_is_refused(folder: str) -> None:
    import sglang as sgl

    with pytest.raises((OSError, ValueError, TypeError)):
        sgl.Engine(model_path=folder, device="cpu", dtype="float32", max_total_tokens=2048)

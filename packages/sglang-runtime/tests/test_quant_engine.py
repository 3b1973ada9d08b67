"""sgl.Engine on quantized checkpoints: the method comes from config.json (and `quantization`
must agree with it); tensor parallelism over 2 CPU ranks (gloo) shards the packed tensors at
pack and group granularity and gives the dequantized float model's greedy tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from quant_writers import VOCAB, Scheme, tiny_llama_config, write_quantized
from tiny_models import save_hf_model, save_word_tokenizer

import sglang as sgl

GREEDY = {"temperature": 0, "max_new_tokens": 16, "ignore_eos": True}
PROMPTS = [[5, 9, 2, 40, 77, 13], [5, 9, 2, 40, 1], [60, 61, 62, 63, 64, 65, 66, 67, 68, 3]]


def _generate(folder: Path, **kwargs: object) -> list[list[int]]:
    eng = sgl.Engine(model_path=str(folder), max_total_tokens=2048, **kwargs)
    try:
        return [o["output_ids"] for o in eng.generate(input_ids=PROMPTS, sampling_params=GREEDY)]
    finally:
        eng.shutdown()


@pytest.mark.parametrize("scheme", [Scheme("awq", 4, 32), Scheme("gptq", 4, 32, sym=False)],
                         ids=["awq", "gptq"])
def test_engine_tp2_matches_dequantized_tp1(scheme: Scheme, tmp_path: Path) -> None:
    save_hf_model(tiny_llama_config(), tmp_path / "float")
    save_word_tokenizer(VOCAB, tmp_path / "float")
    write_quantized(tmp_path / "float", scheme, tmp_path / "quant", tmp_path / "deq")
    want = _generate(tmp_path / "deq")
    assert _generate(tmp_path / "quant", tp_size=2, quantization=scheme.method) == want

"""AWQ and GPTQ checkpoints in their real packed layouts (written by `quant_writers`) load into
the canonical layout and compute the same model as a float folder of the dequantized weights:
logits within 1e-4 in float32 on a ragged batch with a cached prefix, and equal greedy tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from quant_runs import assert_same_outputs
from quant_writers import VOCAB, Scheme, tiny_llama_config, write_quantized
from tiny_models import save_hf_model, save_word_tokenizer

from sglang.runtime.loading.loader import load_model

ATOL = 1e-4
SCHEMES = {
    "awq-g32": Scheme("awq", 4, 32),
    "awq-g128": Scheme("awq", 4, 128),
    "gptq4-sym": Scheme("gptq", 4, 128, sym=True),
    "gptq4-asym-g32": Scheme("gptq", 4, 32),
    "gptq4-act-order": Scheme("gptq", 4, 64, sym=True, desc_act=True),
    "gptq4-asym-act-order": Scheme("gptq", 4, 32, desc_act=True),
    "gptq8-g-1": Scheme("gptq", 8, -1, sym=True),
    "gptq8-act-order": Scheme("gptq", 8, 32, desc_act=True),
}


@pytest.fixture(scope="module")
def float_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("float")
    save_hf_model(tiny_llama_config(), folder)
    save_word_tokenizer(VOCAB, folder)
    return folder


@pytest.fixture(scope="module", params=sorted(SCHEMES))
def folders(request: pytest.FixtureRequest, float_folder: Path,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp(request.param)
    quant, deq = root / "quant", root / "deq"
    write_quantized(float_folder, SCHEMES[request.param], quant, deq)
    return quant, deq


@torch.no_grad()
def test_quantized_matches_dequantized_float(folders: tuple[Path, Path]) -> None:
    quant = load_model(str(folders[0]), dtype="float32")
    deq = load_model(str(folders[1]), dtype="float32")
    layer = quant.model.model.layers[0]
    assert layer.self_attn.qkv_proj.weight is None  # really the packed path
    assert layer.mlp.down_proj.qweight.dtype == torch.int32
    # AWQ's and GPTQ's zero points are whole numbers (the GPU's tensor-core kernel relies on it).
    assert layer.mlp.down_proj.quant_method.integer_zeros
    assert quant.weight_bytes < deq.weight_bytes
    assert_same_outputs(quant, deq, ATOL)



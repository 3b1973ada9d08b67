"""`--quantization fp8` on a float checkpoint: weights kept as float8_e4m3fn with per-channel
scales; logits equal (1e-4) to a float folder holding the fp8-rounded weights, 16 greedy tokens
equal, half the float32 bytes or less; pre-quantized FP8 checkpoints fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from quant_runs import greedy_tokens, logits_with_cached_prefix
from quant_writers import QUANTIZED, VOCAB, tiny_llama_config
from safetensors.torch import load_file, save_file
from tiny_models import save_hf_model, save_word_tokenizer

from sglang.runtime.loading.loader import load_model


def _fp8_rounded(weight: torch.Tensor) -> torch.Tensor:
    """What a per-output-row e4m3 quantization keeps of `weight` (scale = row max / 448)."""
    scale = (weight.abs().amax(dim=1, keepdim=True) / 448.0).clamp(min=1e-12)
    return (weight / scale).to(torch.float8_e4m3fn).float() * scale


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fp8")
    dense, rounded = root / "dense", root / "rounded"
    save_hf_model(tiny_llama_config(), dense)
    save_word_tokenizer(VOCAB, dense)
    shutil.copytree(dense, rounded)
    state = load_file(str(rounded / "model.safetensors"))
    for name, t in state.items():
        module = name.rpartition(".")[0]
        if name.endswith(".weight") and module.rpartition(".")[2] in QUANTIZED:
            state[name] = _fp8_rounded(t)
    save_file(state, str(rounded / "model.safetensors"))
    return dense, rounded


@torch.no_grad()
def test_fp8_at_load_matches_rounded_float(folders: tuple[Path, Path]) -> None:
    fp8 = load_model(str(folders[0]), dtype="float32", quantization="fp8")
    ref = load_model(str(folders[1]), dtype="float32")
    mlp = fp8.model.model.layers[1].mlp
    assert mlp.gate_up_proj.weight is None and mlp.gate_up_proj.weight_fp8.dtype == torch.float8_e4m3fn
    assert fp8.weight_bytes < ref.weight_bytes
    got, want = logits_with_cached_prefix(fp8), logits_with_cached_prefix(ref)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    prompt = [5, 9, 2, 40, 77, 13]
    assert greedy_tokens(fp8, prompt) == greedy_tokens(ref, prompt)


def test_prequantized_fp8_checkpoint_is_refused(folders: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "fp8ckpt"
    shutil.copytree(folders[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="pre-quantized FP8 checkpoints are not supported"):
        load_model(str(folder), dtype="float32")

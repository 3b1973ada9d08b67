"""`load_format="dummy"` for quantized configs (benchmarks of AWQ/GPTQ/FP8 models without a
checkpoint): random packed tensors in the method's checkpoint layout, converted like a loaded
checkpoint, with the dense model's weight spread; formats whose layout needs a file refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from quant_runs import PROMPT, greedy_tokens

from sglang.kernels.quant_layout import dequantize_weight
from sglang.runtime.loading.loader import load_model

TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128,
    "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "vocab_size": 96, "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}


def _folder(tmp_path: Path, quant: dict[str, Any] | None) -> str:
    cfg = dict(TINY, **({"quantization_config": quant} if quant else {}))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return str(tmp_path)


@pytest.mark.parametrize("quant", [
    {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True},
    {"quant_method": "gptq", "bits": 4, "group_size": 64, "sym": False, "desc_act": False},
    {"quant_method": "gptq", "bits": 8, "group_size": -1, "sym": True, "desc_act": False},
])
def test_dummy_packed_weights(tmp_path: Path, quant: dict[str, Any]) -> None:
    loaded = load_model(_folder(tmp_path, quant), load_format="dummy", dtype="float32",
                        skip_tokenizer=True)
    layer = loaded.model.model.layers[0].mlp.gate_up_proj
    assert layer.weight is None and layer.qweight.dtype == torch.int32
    method = layer.quant_method
    w = dequantize_weight(layer.qweight, layer.scales, layer.zeros, method.bits, method.group)
    assert w.shape == (TINY["hidden_size"], 2 * TINY["intermediate_size"])
    # The dense dummy draws N(0, 0.02); the packed draw aims at the same spread.
    assert 0.012 < float(w.std()) < 0.03, float(w.std())
    assert float(w.mean().abs()) < 0.005
    # Both gate and up rows differ (each shard its own draw), and the model runs.
    assert not torch.equal(w[:, :256], w[:, 256:])
    tokens = greedy_tokens(loaded, PROMPT, steps=4)
    assert len(tokens) == 4 and all(0 <= t < TINY["vocab_size"] for t in tokens)


def test_dummy_is_deterministic(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"quant_method": "awq", "bits": 4, "group_size": 64})
    a, b = (load_model(folder, load_format="dummy", dtype="float32", skip_tokenizer=True,
                       seed=s).model.model.layers[1].self_attn.qkv_proj for s in (3, 3))
    assert torch.equal(a.qweight, b.qweight) and torch.equal(a.zeros, b.zeros)


def test_dummy_fp8_from_flag_quantizes_the_dense_draw(tmp_path: Path) -> None:
    loaded = load_model(_folder(tmp_path, None), load_format="dummy", dtype="float32",
                        skip_tokenizer=True, quantization="fp8")
    layer = loaded.model.model.layers[0].self_attn.o_proj
    assert layer.weight_fp8.dtype == torch.float8_e4m3fn
    w = layer.weight_fp8.float() * layer.weight_scale[:, None]
    assert 0.015 < float(w.std()) < 0.025


def test_dummy_refuses_prequantized_fp8(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"quant_method": "fp8", "activation_scheme": "dynamic"})
    with pytest.raises(ValueError, match="dummy' cannot fill fp8-quantized"):
        load_model(folder, load_format="dummy", dtype="float32", skip_tokenizer=True)

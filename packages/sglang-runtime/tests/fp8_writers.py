"""Pre-quantized FP8 checkpoints written by the tests, in the layout HF / vLLM / SGLang FP8
models ship (config.json `quantization_config = {"quant_method": "fp8", "activation_scheme":
"dynamic" | "static", "ignored_layers": [...]}`), plus a float folder of the DEQUANTIZED
weights (fp8 value * scale, exact in float32), so the two must give the same logits.

Per quantized Linear: `weight` float8_e4m3fn [N, K]; `weight_scale` float32 per tensor (layer 0:
a scalar, k_proj's stored as [1]) or per output channel (layer 1: [N], q_proj's as [N, 1]);
static scheme: `input_scale` float32 scalar, different for each projection of one input.
q/k/v and gate/up of layer 0 thus reach the fused layers with different per-tensor scales.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from quant_writers import QUANTIZED
from safetensors.torch import load_file, save_file

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
IGNORED = ("model.layers.0.mlp.down_proj",)
# Static activation scales (x range / 448) per projection, as a calibration would give them for
# the tiny Llama (its inputs peak at ~3.5 into q/k/v, ~3.7 into o, ~4.5 into gate/up, ~6.5 into
# down), unequal within each fused layer as separately calibrated shards are.
INPUT_RANGES = {"q_proj": 4.0, "k_proj": 3.6, "v_proj": 3.8, "o_proj": 4.0, "gate_proj": 5.0,
                "up_proj": 4.6, "down_proj": 7.0}


def _scale_tensor(w: torch.Tensor, layer: int, leaf: str) -> torch.Tensor:
    """float32 scale as stored: per tensor in layer 0, per channel in layer 1."""
    if layer == 0:
        scale = (w.abs().amax() / FP8_MAX).reshape(())
        return scale.reshape(1) if leaf == "k_proj" else scale
    scale = w.abs().amax(dim=1) / FP8_MAX
    return scale[:, None] if leaf == "q_proj" else scale


def quantize_fp8(w: torch.Tensor, layer: int, leaf: str,
                 weight_dtype: torch.dtype = FP8) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """HF weight [N, K] -> (checkpoint tensors, dequantized weight [N, K] in float32)."""
    w = w.float()
    stored = _scale_tensor(w, layer, leaf).float()
    rows = stored.reshape(-1, 1) if stored.numel() > 1 else stored.reshape(1, 1)
    q = (w / rows).clamp(-FP8_MAX, FP8_MAX).to(weight_dtype)
    return {"weight": q, "weight_scale": stored}, q.float() * rows


def write_fp8(float_folder: Path, quant_folder: Path, deq_folder: Path, static: bool = False,
              ignored: tuple[str, ...] = IGNORED, weight_dtype: torch.dtype = FP8,
              extra_config: dict[str, Any] | None = None) -> None:
    for folder in (quant_folder, deq_folder):
        shutil.copytree(float_folder, folder)
        for f in folder.glob("*.safetensors"):
            f.unlink()
    state: dict[str, torch.Tensor] = {}
    for f in sorted(float_folder.glob("*.safetensors")):
        state.update(load_file(f))
    quant: dict[str, torch.Tensor] = {}
    deq: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        module, _, kind = name.rpartition(".")
        leaf = module.rpartition(".")[2]
        if kind != "weight" or leaf not in QUANTIZED or module in ignored:
            quant[name] = deq[name] = tensor
            continue
        layer = int(module.split(".")[2])
        tensors, deq[name] = quantize_fp8(tensor, layer, leaf, weight_dtype)
        if static:
            tensors["input_scale"] = torch.tensor(INPUT_RANGES[leaf] / FP8_MAX)
        quant.update({f"{module}.{k}": v for k, v in tensors.items()})
    save_file(quant, str(quant_folder / "model.safetensors"))
    save_file(deq, str(deq_folder / "model.safetensors"))
    config_path = quant_folder / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = {
        "quant_method": "fp8", "activation_scheme": "static" if static else "dynamic",
        "ignored_layers": list(ignored), **(extra_config or {}),
    }
    config_path.write_text(json.dumps(config, indent=2))

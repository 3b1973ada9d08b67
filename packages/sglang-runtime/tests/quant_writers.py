"""Quantized checkpoints written by the tests: a documented re-implementation of the packing
of AutoAWQ (GEMM format) and AutoGPTQ (classic format), so the loader is tested on the real
layouts without those packages (neither installs on CPU-only machines).

`write_quantized` turns a float HF folder into a quantized folder plus a float folder holding
the DEQUANTIZED weights (the same numbers in float32), so the two must give the same logits.

Formats (per Linear, K input and N output features, G = K / group_size groups):
- AWQ: qweight int32 [K, N/8]: 8 output columns per word; nibble i of a word holds column
  AWQ_PACK_ORDER[i] of its run of 8 (AutoAWQ's interleave). qzeros int32 [G, N/8] packed the
  same way, zero points as they are. scales fp16 [G, N].
- GPTQ: qweight int32 [K*bits/32, N]: consecutive input rows per word, lowest bits first.
  qzeros int32 [G, N*bits/32]: consecutive output columns per word, each zero point stored
  MINUS ONE (a zero point of 0 cannot be stored: it would wrap, so asymmetric zeros here are
  kept >= 1). scales fp16 [G, N]. g_idx int32 [K]: each input row's group; with desc_act
  (act-order) the groups follow a random permutation of the rows.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

VOCAB = 96
AWQ_PACK_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Scheme:
    method: str  # "awq" | "gptq"
    bits: int = 4
    group_size: int = 128  # -1: one group over K (GPTQ)
    sym: bool = False
    desc_act: bool = False

    def hf_config(self) -> dict[str, object]:
        if self.method == "awq":
            return {"quant_method": "awq", "bits": self.bits, "group_size": self.group_size,
                    "zero_point": True, "version": "gemm"}
        return {"quant_method": "gptq", "bits": self.bits, "group_size": self.group_size,
                "sym": self.sym, "desc_act": self.desc_act}


def _pack_words(values: torch.Tensor, bits: int) -> torch.Tensor:
    """[R, C] values -> [R, C * bits / 32] int32: value j of each run at bits `bits * j`."""
    per = 32 // bits
    runs = values.to(torch.int64).reshape(values.shape[0], -1, per)
    words = torch.zeros(runs.shape[:2], dtype=torch.int64)
    for j in range(per):
        words |= runs[:, :, j] << (bits * j)
    return (words - ((words >> 31) << 32)).to(torch.int32)  # two's complement into int32


def _quantize(w_t: torch.Tensor, g_idx: torch.Tensor, groups: int, scheme: Scheme
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w_t [K, N] -> (q [K, N], zeros [groups, N], fp16 scales [groups, N]) by min/max
    rounding per group and column (the tests need real layouts, not GPTQ's error feedback)."""
    maxq = 2**scheme.bits - 1
    n = w_t.shape[1]
    zeros = torch.empty(groups, n)
    scales = torch.empty(groups, n)
    for g in range(groups):
        rows = w_t[g_idx == g]
        if scheme.sym:
            scale = 2 * rows.abs().amax(0) / maxq
            zero = torch.full((n,), float((maxq + 1) // 2))
        else:
            lo, hi = rows.amin(0).clamp(max=0), rows.amax(0).clamp(min=0)
            scale = (hi - lo) / maxq
            low = 1 if scheme.method == "gptq" else 0
            zero = torch.round(-lo / scale).clamp(low, maxq)
        scales[g] = scale.half().float()
        zeros[g] = zero
    q = torch.round(w_t / scales[g_idx] + zeros[g_idx]).clamp(0, maxq)
    return q.to(torch.int32), zeros.to(torch.int32), scales.half()


def _awq_tensors(q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor) -> dict[str, torch.Tensor]:
    def interleave(v: torch.Tensor) -> torch.Tensor:
        runs = v.reshape(v.shape[0], -1, 8)
        return runs[:, :, list(AWQ_PACK_ORDER)].reshape(v.shape)

    return {"qweight": _pack_words(interleave(q), 4), "qzeros": _pack_words(interleave(zeros), 4),
            "scales": scales}


def _gptq_tensors(q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor,
                  bits: int) -> dict[str, torch.Tensor]:
    qweight = _pack_words(q.t().contiguous(), bits).t().contiguous()
    return {"qweight": qweight, "qzeros": _pack_words(zeros - 1, bits), "scales": scales,
            "g_idx": g_idx.to(torch.int32)}


def quantize_linear(weight: torch.Tensor, scheme: Scheme, generator: torch.Generator
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """HF weight [N, K] -> (checkpoint tensors of the format, dequantized weight [N, K]).
    The act-order permutation comes from `generator`: GPTQ derives it from the layer INPUT's
    statistics, so projections of one input (q/k/v, gate/up) share it; callers reseed it."""
    w_t = weight.t().float()
    k = w_t.shape[0]
    group = k if scheme.group_size == -1 else scheme.group_size
    groups = k // group
    g_idx = torch.arange(k) // group
    if scheme.desc_act:
        order = torch.randperm(k, generator=generator)
        g_idx = torch.empty(k, dtype=torch.int64)
        g_idx[order] = torch.arange(k) // group
    q, zeros, scales = _quantize(w_t, g_idx, groups, scheme)
    deq = (q.float() - zeros.float()[g_idx]) * scales.float()[g_idx]
    if scheme.method == "awq":
        tensors = _awq_tensors(q, zeros, scales)
    else:
        tensors = _gptq_tensors(q, zeros, scales, g_idx, scheme.bits)
    return tensors, deq.t().contiguous()


def write_quantized(float_folder: Path, scheme: Scheme, quant_folder: Path,
                    deq_folder: Path, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for folder in (quant_folder, deq_folder):
        shutil.copytree(float_folder, folder)
        for f in folder.glob("*.safetensors"):
            f.unlink()
    state = {}
    for f in sorted(float_folder.glob("*.safetensors")):
        state.update(load_file(f))
    quant: dict[str, torch.Tensor] = {}
    deq: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        module, _, leaf = name.rpartition(".")
        if leaf == "weight" and module.rpartition(".")[2] in QUANTIZED:
            # One act-order permutation per input: q/k/v (and gate/up) share theirs.
            parent = module.rpartition(".")[0]
            generator.manual_seed(seed + zlib.crc32(f"{parent}:{tensor.shape[1]}".encode()))
            tensors, deq[name] = quantize_linear(tensor, scheme, generator)
            quant.update({f"{module}.{k}": v for k, v in tensors.items()})
        else:
            quant[name] = deq[name] = tensor
    save_file(quant, str(quant_folder / "model.safetensors"))
    save_file(deq, str(deq_folder / "model.safetensors"))
    config_path = quant_folder / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = scheme.hf_config()
    config_path.write_text(json.dumps(config, indent=2))


def tiny_llama_config() -> Any:
    """A Llama whose every projection splits over 2 ranks at AWQ/GPTQ pack and group sizes."""
    import transformers

    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )

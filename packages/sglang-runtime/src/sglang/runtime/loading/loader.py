"""`load_model`: from a path, file or hub id to a ready model, config and tokenizer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sglang.runtime.cache.kv_quant import KVScales
from sglang.runtime.config import LOAD_FORMATS
from sglang.runtime.layers.quantization.build import (
    attach_methods,
    building,
    finish_loading,
    resolve_quant_config,
)
from sglang.runtime.loading.default_model import default_model_path
from sglang.runtime.loading.dummy import fill_dummy_weights
from sglang.runtime.loading.gguf_blocks import gguf_quant_config
from sglang.runtime.loading.gguf_loader import open_gguf
from sglang.runtime.loading.hf_loader import open_hf
from sglang.runtime.loading.source import ModelSource, load_tokenizer
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.models.registry import model_class_for_config

logger = logging.getLogger("sglang.runtime")

# Checkpoint formats: each turns a model path into a ModelSource. Every name of LOAD_FORMATS
# (RuntimeArgs' choices) but the two that pick one ("auto", "dummy") has its entry here.
FORMATS: dict[str, Callable[[str], ModelSource]] = {
    "hf": open_hf,
    "safetensors": open_hf,
    "gguf": open_gguf,
}

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


@dataclass
class LoadedModel:
    model: nn.Module
    config: Any  # transformers.PretrainedConfig
    tokenizer: Any  # transformers tokenizer; None only for dummy weights without one
    weight_bytes: int
    model_config: ModelConfig  # the typed view the runtime reads sizes from
    # Per-layer KV cache scales the checkpoint carries (FP8 checkpoints); empty: all 1.0.
    kv_scales: KVScales = field(default_factory=KVScales)


def _open_source(model_path: str, load_format: str) -> ModelSource:
    checkpoint_format = (
        _detect_format(model_path) if load_format in ("auto", "dummy") else load_format
    )
    return FORMATS[checkpoint_format](model_path)


def load_model_config(model_path: str | None, load_format: str = "auto") -> ModelConfig:
    """The typed config of a model without building it (front doors, other processes)."""
    model_path = str(model_path) if model_path is not None else default_model_path()
    return ModelConfig.from_hf(_open_source(model_path, load_format).config)


def resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        # CPUs lack fast bf16 matmuls (and tests compare in float32); GPUs want bf16.
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def _detect_format(model_path: str) -> str:
    return "gguf" if model_path.endswith(".gguf") else "hf"


def _weight_bytes(model: nn.Module) -> int:
    """Parameters and buffers (packed weights are parameters; rotary tables are buffers)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _load_checkpoint(model: nn.Module, source: ModelSource, kv_scales: KVScales) -> None:
    # 0: not known up front (PyTorch .bin shards); the bar then just counts.
    progress = tqdm(total=source.count_tensors() or None, desc="Loading weights", unit="tensor")

    def tracked() -> Any:
        for item in source.iter_weights():
            yield item
            progress.update()

    with progress:
        model.load_weights(kv_scales.take(tracked()))


def load_model(
    model_path: str | None,
    load_format: str = "auto",
    dtype: torch.dtype | str = "auto",
    device: torch.device | str = "cpu",
    tokenizer_path: str | None = None,
    seed: int = 0,
    skip_tokenizer: bool = False,
    quantization: str | None = None,
    dequantize_gguf: bool = False,
    cpu_int8_activations: bool = False,
) -> LoadedModel:
    """Build the model named by `model_path` (None: the default SmolLM2 GGUF).

    `load_format`: "auto" (gguf for *.gguf files, hf for folders and hub ids), "hf"
    (alias "safetensors"), "gguf", or "dummy" (the config of `model_path`, random weights).
    `skip_tokenizer` (skip_tokenizer_init): load none; the model then needs no tokenizer files.
    `quantization`: None (the checkpoint's own, if any) or a method that must match it.
    `dequantize_gguf`: a .gguf file's weights become float even on CPU, where they otherwise
    stay packed (`quantization="gguf"`).
    `cpu_int8_activations`: packed layers on CPU take int8 activations for large batches.
    """
    if load_format not in LOAD_FORMATS:
        raise ValueError(f"unknown load_format {load_format!r}; choose from {LOAD_FORMATS}")
    model_path = str(model_path) if model_path is not None else default_model_path()
    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    source = _open_source(model_path, load_format)
    model_cls = model_class_for_config(source.config)
    model_config = ModelConfig.from_hf(source.config)
    if _detect_format(model_path) == "gguf" and load_format in ("auto", "gguf"):
        quant = gguf_quant_config(quantization, device, dequantize_gguf)
        if quant is None:
            quant = resolve_quant_config(source.config, quantization)
    else:
        quant = resolve_quant_config(source.config, quantization)
    if quant is not None and load_format == "dummy" and not quant.fills_dummy:
        raise ValueError(f"load_format='dummy' cannot fill {quant.method}-quantized weights "
                         "of this kind")

    start = time.perf_counter()
    kv_scales = KVScales()
    with torch.device(device), building(quant):
        model = model_cls(model_config, dtype)
    if quant is not None:
        attach_methods(model, quant, dtype, device)
    if load_format == "dummy":
        fill_dummy_weights(model, seed)
    else:
        _load_checkpoint(model, source, kv_scales)
    if quant is not None:
        finish_loading(model, dtype, cpu_int8_activations)
    model.eval()
    weight_bytes = _weight_bytes(model)
    logger.info(
        "loaded %s (%s, %s weights) on %s: %.1f MiB of %s weights in %.1f s",
        model_cls.__name__,
        Path(model_path).name,
        load_format,
        device,
        weight_bytes / 2**20,
        str(dtype).removeprefix("torch."),
        time.perf_counter() - start,
    )
    tokenizer = None if skip_tokenizer else _tokenizer(
        source, tokenizer_path, dummy=load_format == "dummy"
    )
    return LoadedModel(model, source.config, tokenizer, weight_bytes, model_config, kv_scales)


def _tokenizer(source: ModelSource, tokenizer_path: str | None, dummy: bool) -> Any:
    if tokenizer_path is not None:
        return load_tokenizer(tokenizer_path)
    try:
        return source.load_tokenizer()
    except (OSError, ValueError, TypeError) as e:
        if not dummy:
            raise
        # Benchmarks often point dummy loads at a bare config.json.
        logger.warning("no tokenizer next to the model (%s); tokenizer is None", e)
        return None

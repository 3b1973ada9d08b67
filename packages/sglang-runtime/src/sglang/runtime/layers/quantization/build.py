"""Choosing a model's quantization and handing its method to every `Linear` while the model is
built, so model files stay unaware of it.

The loader enters `building(config)` around the model's construction: each `Linear` made
inside allocates no dense weight (`dense_placeholder`); `attach_methods` then gives every Linear
its method (or, for modules the checkpoint leaves dense, a real dense weight), and
`finish_loading` converts the loaded checkpoint tensors into the canonical layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.quantization import QUANTIZATION_METHODS, quant_config_class
from sglang.runtime.layers.quantization.base import QuantConfig
from sglang.runtime.layers.quantization.validate import check_value


def resolve_quant_config(hf_config: Any, flag: str | None) -> QuantConfig | None:
    """The checkpoint's quantization (config.json `quantization_config`), checked against the
    `--quantization` flag; None for a dense model without the flag."""
    raw = getattr(hf_config, "quantization_config", None)
    if raw is not None and not isinstance(raw, dict):
        raw = raw.to_dict() if hasattr(raw, "to_dict") else dict(vars(raw))
    if flag is not None:
        check_value("--quantization", "method", flag, QUANTIZATION_METHODS)
    if raw is None:
        return None if flag is None else quant_config_class(flag).from_flag()
    method = str(raw.get("quant_method", "")).lower()
    check_value("checkpoint", "quant_method", method, QUANTIZATION_METHODS)
    if flag is not None and flag != method:
        raise ValueError(f"--quantization {flag} disagrees with the checkpoint, which is "
                         f"quantized with {method}; drop the flag or pass {method}")
    return quant_config_class(method).from_hf(raw)


_BUILDING: ContextVar[QuantConfig | None] = ContextVar("sglang_quant_building", default=None)

@contextmanager
def building(config: QuantConfig | None) -> Iterator[None]:
    token = _BUILDING.set(config)
    try:
        yield
    finally:
        _BUILDING.reset(token)


def dense_placeholder() -> bool:
    """Whether a Linear under construction should skip allocating its dense weight."""
    return _BUILDING.get() is not None


def embedding_placeholder() -> bool:
    """Whether an embedding (or LM head) table under construction should skip allocating its
    dense weight: methods that pack embeddings too (GGUF) fill it at load."""
    config = _BUILDING.get()
    return config is not None and config.packs_embeddings


def attach_methods(model: nn.Module, config: QuantConfig, dtype: torch.dtype,
                   device: torch.device) -> None:
    from sglang.runtime.layers.linear import Linear
    from sglang.runtime.layers.vocab_parallel import VocabParallelEmbedding

    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, VocabParallelEmbedding) and weight is not None \
                and weight.device.type == "meta" and module.quant_method is None:
            embedding = config.embedding_method()
            embedding.create_embedding(module, dtype)
            module.quant_method = embedding
            continue
        if not isinstance(module, Linear) or module.weight is None:
            continue
        if module.weight.device.type != "meta":
            continue
        if _skipped(config, name, getattr(model, "fused_weights", None) or {}):
            shape = (module.out_features, module.in_features)
            weight = torch.empty(shape, dtype=dtype, device=device)
            module.weight = nn.Parameter(weight, requires_grad=False)
            continue
        method = config.linear_method()
        with torch.device(device):
            method.create(module, *module.quant_geometry(), dtype=dtype)
        module.quant_method = method


def _skipped(config: QuantConfig, name: str, fused: dict[str, tuple[str, str]]) -> bool:
    """Whether module `name` stays dense. Checkpoints name the unfused modules (q_proj, not
    our qkv_proj), so a fused module stays dense when all of its shards do; some but not all
    would mix dense and quantized rows in one weight, which is refused."""
    if config.skips(name):
        return True
    parent, _, leaf = name.rpartition(".")
    prefix = f"{parent}." if parent else ""
    shards = [f"{prefix}{hf}" for hf, (target, _) in fused.items() if target == leaf]
    skipped = [shard for shard in shards if config.skips(shard)]
    if skipped and len(skipped) < len(shards):
        raise ValueError(f"{config.method} quantization: the checkpoint leaves {skipped} "
                         f"unquantized but not the rest of the fused {name} ({shards}); "
                         "its shards must be all quantized or all left dense")
    return bool(shards) and len(skipped) == len(shards)


def finish_loading(model: nn.Module, dtype: torch.dtype, cpu_int8: bool = False) -> None:
    # Linears, and embeddings of methods that pack them; a tied LM head is the embedding.
    for module in model.modules():
        method = getattr(module, "quant_method", None)
        if method is not None:
            method.finish_loading(module, dtype)
            method.cpu_int8 = cpu_int8

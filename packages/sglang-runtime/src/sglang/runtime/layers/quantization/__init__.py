"""Quantized weights: the registry of quantization methods (one module each) keyed by the name
`--quantization` and config.json's `quant_method` use.

Torch-free, like the other registries' names: RuntimeArgs reads `QUANTIZATION_METHODS` for its
choices. `build` chooses a model's config and hands every Linear its method; `base` says what a
method provides; `awq` and `gptq` read their checkpoint layouts;
`fp8` reads FP8 checkpoints or quantizes a float one at load (`fp8_gemm`: its W8A8 and
weight-only matmuls); `gguf` keeps a .gguf file's block formats packed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sglang.runtime.layers.quantization.base import QuantConfig

# Method name -> "module:class" of its QuantConfig, imported on first use.
QUANT_CONFIGS: dict[str, str] = {
    "awq": "sglang.runtime.layers.quantization.awq:AWQConfig",
    "gptq": "sglang.runtime.layers.quantization.gptq:GPTQConfig",
    "fp8": "sglang.runtime.layers.quantization.fp8:FP8Config",
    "gguf": "sglang.runtime.layers.quantization.gguf:GGUFConfig",
}
QUANTIZATION_METHODS: tuple[str, ...] = tuple(QUANT_CONFIGS)


def quant_config_class(method: str) -> type[QuantConfig]:
    module, _, name = QUANT_CONFIGS[method].partition(":")
    cls: type[QuantConfig] = getattr(importlib.import_module(module), name)
    return cls

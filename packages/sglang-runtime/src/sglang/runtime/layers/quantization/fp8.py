"""FP8 weights: pre-quantized checkpoints (`quant_method: "fp8"`) and `--quantization fp8` on a
float checkpoint (quantized at load).

Pre-quantized (the HF / vLLM / SGLang layout): each quantized Linear ships `weight`
float8_e4m3fn [N, K] and `weight_scale`, per tensor (a scalar or [1]) or per output channel
([N] or [N, 1]); the static activation scheme adds `input_scale` (a scalar). Every layer keeps
one float32 scale per output row: a per-tensor scale is expanded over its rows, which is exact
and lets fused q/k/v and gate/up hold shards quantized with different scales. A fused layer's
shards share one input, so its static input scale is the largest of theirs (no shard's
calibrated range saturates). Block-wise scales (`weight_block_size`, DeepSeek) are refused.

At load: each row of the dense weight is scaled into e4m3's range (row max / 448).

The matmul is `fp8_gemm`'s: W8A8 `torch._scaled_mm` on CUDA devices with fp8 tensor cores,
the weight-only dequantizing matmul elsewhere (`choose_fp8_gemm`). A method's `gemm`
(constructor argument or attribute) forces either one, e.g. W8A8 on CPU in the tests.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.quantization.base import (
    OutSegments,
    PackedParam,
    QuantConfig,
    QuantLinearMethod,
)
from sglang.runtime.layers.quantization.fp8_gemm import (
    DEQUANT,
    FP8_DTYPE,
    FP8_GEMM_FNS,
    FP8_GEMMS,
    choose_fp8_gemm,
    fp8_per_channel,
)
from sglang.runtime.layers.quantization.validate import check_value
from sglang.runtime.loading.source import LazyWeight, materialize, read_shard

logger = logging.getLogger("sglang.runtime")
_LOGGED: set[str] = set()

ACTIVATION_SCHEMES = ("dynamic", "static")
WEIGHT_FORMATS = ("e4m3",)  # config.json `fmt`, where a checkpoint names it


class FP8Config(QuantConfig):
    method = "fp8"

    def __init__(self, prequantized: bool, activation_scheme: str = "dynamic",
                 modules_to_not_convert: tuple[str, ...] = ()) -> None:
        check_value("fp8", "activation_scheme", activation_scheme, ACTIVATION_SCHEMES)
        self.prequantized = prequantized
        self.static = activation_scheme == "static"
        self.modules_to_not_convert = modules_to_not_convert

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> FP8Config:
        block = raw.get("weight_block_size")
        if block is not None:
            raise ValueError(f"fp8 quantization: block-wise scales (weight_block_size={block}) "
                             "are not supported; supported: per-tensor or per-channel "
                             "weight_scale")
        check_value("fp8", "fmt", str(raw.get("fmt", "e4m3")).lower(), WEIGHT_FORMATS)
        skipped = tuple(raw.get("ignored_layers") or ()) + tuple(
            raw.get("modules_to_not_convert") or ())
        return cls(True, str(raw.get("activation_scheme", "dynamic")).lower(), skipped)

    @classmethod
    def from_flag(cls) -> FP8Config:
        return cls(False)

    @property
    def fills_dummy(self) -> bool:
        return not self.prequantized  # quantized at load from the dense dummy weights

    def linear_method(self) -> QuantLinearMethod:
        if self.prequantized:
            return FP8CheckpointMethod(self.static)
        return FP8LinearMethod()


class _FP8Method(QuantLinearMethod):
    """What both FP8 methods share: the stored tensors after loading and the matmul."""

    bits, group_size = 8, -1

    def __init__(self, gemm: str | None = None) -> None:
        if gemm is not None:
            check_value("fp8", "gemm", gemm, FP8_GEMMS)
        self.gemm = gemm  # None: chosen for the device once the weights are loaded
        self.why = "forced" if gemm is not None else ""

    def to_canonical(self, layer: nn.Module) -> Any:
        raise NotImplementedError("fp8 weights keep their own layout")

    def _keep(self, layer: nn.Module, weight: torch.Tensor, scale: torch.Tensor,
              input_scale: torch.Tensor | None) -> None:
        """Store fp8 weight [N, K], float32 row scales [N] and the static input scale."""
        layer.register_parameter("weight", None)
        layer.weight_fp8 = nn.Parameter(weight, requires_grad=False)
        layer.weight_scale = nn.Parameter(scale.float().contiguous(), requires_grad=False)
        layer.register_parameter("input_scale", None if input_scale is None
                                 else nn.Parameter(input_scale.float(), requires_grad=False))
        if self.gemm is None:
            self.gemm, self.why = choose_fp8_gemm(weight.device, weight.shape[1], weight.shape[0])
            if weight.is_cuda and self.gemm == DEQUANT and self.why not in _LOGGED:
                _LOGGED.add(self.why)  # once per reason, not once per layer
                logger.info("fp8: weight-only matmul instead of W8A8 (%s)", self.why)

    def apply(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        fn = FP8_GEMM_FNS[self.gemm or DEQUANT]
        return fn(x, layer.weight_fp8, layer.weight_scale, layer.bias, layer.input_scale)


class FP8LinearMethod(_FP8Method):
    """`--quantization fp8`: the dense checkpoint weight quantized per row at load."""

    def params(self) -> dict[str, PackedParam]:
        return {}  # the checkpoint's dense weight loads through the Linear's own shard_spec

    def create(self, layer: Any, full_k: int, in_split: tuple[int, int] | None,
               segments: OutSegments, dtype: torch.dtype = torch.float32) -> None:
        shape = (layer.out_features, layer.in_features)
        layer.weight = nn.Parameter(torch.empty(shape, dtype=dtype), requires_grad=False)

    def finish_loading(self, layer: nn.Module, dtype: torch.dtype) -> None:
        q, scale = fp8_per_channel(layer.weight.data)  # type: ignore[union-attr]
        self._keep(layer, q, scale, None)


class FP8CheckpointMethod(_FP8Method):
    """A pre-quantized FP8 checkpoint's Linear."""

    def __init__(self, static: bool, gemm: str | None = None) -> None:
        super().__init__(gemm)
        self.static = static

    def params(self) -> dict[str, PackedParam]:
        # Read by `load_tensor` below; PackedParam's [K, N] geometry is not used for them.
        names = ("weight", "weight_scale") + (("input_scale",) if self.static else ())
        return {name: PackedParam(FP8_DTYPE if name == "weight" else torch.float32)
                for name in names}

    def create(self, layer: Any, full_k: int, in_split: tuple[int, int] | None,
               segments: OutSegments, dtype: torch.dtype = torch.float32) -> None:
        self.segments = segments
        n, k = layer.out_features, layer.in_features

        def param(*shape: int, dtype: torch.dtype) -> nn.Parameter:
            return nn.Parameter(torch.zeros(shape, dtype=dtype), requires_grad=False)

        layer.weight = param(n, k, dtype=FP8_DTYPE)
        layer.weight_scale = param(n, dtype=torch.float32)
        if self.static:
            layer.input_scale = param(len(segments), dtype=torch.float32)

    def load_tensor(self, layer: nn.Module, name: str, shard: str | None,
                    tensor: torch.Tensor | LazyWeight, full_name: str) -> None:
        if shard not in self.segments:
            raise KeyError(f"{type(layer).__name__} has no shard {shard!r}")
        offset, size, start, full = self.segments[shard]
        shape = tuple(tensor.shape)
        with torch.no_grad():
            if name == "weight":
                spec = layer.shard_spec("weight", shard)  # type: ignore[operator]
                src = read_shard(spec, tensor, full_name)
                if src.dtype != FP8_DTYPE:
                    raise ValueError(f"fp8 quantization: {full_name} is {src.dtype}; supported: "
                                     f"{FP8_DTYPE} weights (or list the layer in ignored_layers)")
                spec.dest.copy_(src)
            elif name == "weight_scale":
                rows = layer.weight_scale.data.narrow(0, offset, size)
                if shape in ((), (1,)):  # per tensor: the same scale for all its rows
                    rows.copy_(materialize(tensor).reshape(()))
                elif shape in ((full,), (full, 1)):  # per output channel
                    rows.copy_(tensor.narrow(0, start, size).reshape(size))
                else:
                    raise ValueError(f"fp8 quantization: {full_name} has shape {list(shape)}; "
                                     "supported: per-tensor (a scalar or [1]) or per-channel "
                                     f"([{full}] or [{full}, 1]) weight scales")
            else:  # input_scale
                if shape not in ((), (1,)):
                    raise ValueError(f"fp8 quantization: {full_name} has shape {list(shape)}; "
                                     "supported: one static input scale (a scalar or [1])")
                index = list(self.segments).index(shard)
                layer.input_scale.data[index] = materialize(tensor).reshape(())

    def finish_loading(self, layer: nn.Module, dtype: torch.dtype) -> None:
        scale = layer.weight_scale.data  # type: ignore[union-attr]
        if not bool(torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"fp8 quantization: {type(layer).__name__} has weight scales that "
                             "are not finite and positive")
        input_scale = layer.input_scale.data.amax() if self.static else None  # type: ignore[union-attr]
        self._keep(layer, layer.weight.data, scale, input_scale)  # type: ignore[union-attr]

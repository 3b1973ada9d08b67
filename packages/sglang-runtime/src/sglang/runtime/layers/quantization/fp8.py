"""FP8 weights quantized at load (`--quantization fp8` on a float checkpoint).

The dense weight loads as usual (so sharding and fused shards need nothing new), then each
output row is scaled into float8_e4m3fn's range (per-channel scale = row max / 448) and kept as
fp8, halving bf16 weight memory. The matmul dequantizes (w8 * scale) and runs in x's dtype on
every device; Hopper's W8A8 `torch._scaled_mm` path and pre-quantized FP8 checkpoints are not
done yet.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.layers.quantization.base import PackedParam, QuantConfig, QuantLinearMethod

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448


def fp8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, K] float -> (fp8 [N, K], float32 scales [N]) with w ~= fp8 * scale per row."""
    w = weight.float()
    scale = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=1e-12)
    return (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


class FP8Config(QuantConfig):
    method = "fp8"

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> FP8Config:
        raise ValueError("fp8 quantization: pre-quantized FP8 checkpoints are not supported yet; "
                         "supported: --quantization fp8 on a float (bf16/fp16/fp32) checkpoint")

    @classmethod
    def from_flag(cls) -> FP8Config:
        return cls()

    def linear_method(self) -> FP8LinearMethod:
        return FP8LinearMethod()


class FP8LinearMethod(QuantLinearMethod):
    bits, group_size = 8, -1

    def params(self) -> dict[str, PackedParam]:
        return {}  # the checkpoint's dense weight loads through the Linear's own shard_spec

    def create(self, layer: Any, full_k: int, in_split: tuple[int, int] | None,
               segments: Any, dtype: torch.dtype = torch.float32) -> None:
        shape = (layer.out_features, layer.in_features)
        layer.weight = nn.Parameter(torch.empty(shape, dtype=dtype), requires_grad=False)

    def to_canonical(self, layer: nn.Module) -> Any:
        raise NotImplementedError("fp8 weights keep their own layout")

    def finish_loading(self, layer: nn.Module, dtype: torch.dtype) -> None:
        q, scale = fp8_per_channel(layer.weight.data)  # type: ignore[union-attr]
        layer.register_parameter("weight", None)
        layer.weight_fp8 = nn.Parameter(q, requires_grad=False)
        layer.weight_scale = nn.Parameter(scale, requires_grad=False)

    def apply(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        w = layer.weight_fp8.to(torch.float32) * layer.weight_scale[:, None]
        return F.linear(x, w.to(x.dtype), layer.bias)

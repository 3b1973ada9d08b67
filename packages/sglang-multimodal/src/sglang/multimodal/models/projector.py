"""Vision-to-language projectors, by the config value that names them.

transformers' LLaVA configs always mean the two-layer MLP (`linear_1`, act, `linear_2`). The
original LLaVA layout names its projector by `mm_projector_type` and numbers its layers like an
nn.Sequential (`mm_projector.0`, `mm_projector.2`), which these builders keep, so checkpoint
names map one to one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sglang.multimodal.encoders.activations import Activation
from sglang.runtime.layers.linear import Linear


class LlavaMultiModalProjector(nn.Module):
    """transformers' layout: linear_1 -> activation -> linear_2."""

    def __init__(self, in_features: int, hidden: int, act: str, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.linear_1 = Linear(in_features, hidden, bias=bias, dtype=dtype)
        self.act = Activation(act)
        self.linear_2 = Linear(hidden, hidden, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def _layer_norm(hidden: int, dtype: torch.dtype) -> nn.LayerNorm:
    norm = nn.LayerNorm(hidden, dtype=dtype)
    norm.requires_grad_(False)
    return norm


def _linear_projector(in_features: int, hidden: int, dtype: torch.dtype) -> nn.Sequential:
    return nn.Sequential(Linear(in_features, hidden, bias=True, dtype=dtype))


def _mlp_gelu(depth: int) -> Callable[[int, int, torch.dtype], nn.Sequential]:
    """LLaVA's `mlp{depth}x_gelu`: Linear, then (GELU, Linear) depth - 1 times."""

    def build(in_features: int, hidden: int, dtype: torch.dtype) -> nn.Sequential:
        layers: list[nn.Module] = [Linear(in_features, hidden, bias=True, dtype=dtype)]
        for _ in range(depth - 1):
            layers += [Activation("gelu"), Linear(hidden, hidden, bias=True, dtype=dtype)]
        return nn.Sequential(*layers)

    return build


def _yi_vl_mlp(depth: int) -> Callable[[int, int, torch.dtype], nn.Sequential]:
    """Yi-VL's `mlp{depth}x_gelu_Norm`: (Linear, LayerNorm) then (GELU, Linear, LayerNorm) ...
    so checkpoint indices are 0 Linear, 1 LayerNorm, 2 GELU, 3 Linear, 4 LayerNorm."""

    def build(in_features: int, hidden: int, dtype: torch.dtype) -> nn.Sequential:
        layers: list[nn.Module] = [Linear(in_features, hidden, bias=True, dtype=dtype), _layer_norm(hidden, dtype)]
        for _ in range(depth - 1):
            layers += [Activation("gelu"), Linear(hidden, hidden, bias=True, dtype=dtype), _layer_norm(hidden, dtype)]
        return nn.Sequential(*layers)

    return build


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[int], Callable[[int, int, torch.dtype], nn.Sequential]]], ...] = (
    (re.compile(r"^mlp(\d+)x_gelu$"), _mlp_gelu),
    (re.compile(r"^mlp(\d+)x_gelu_Norm$"), _yi_vl_mlp),
)


def original_projector(kind: str, in_features: int, hidden: int, dtype: torch.dtype) -> nn.Sequential:
    """The projector an original-layout config's `mm_projector_type` names."""
    if kind == "linear":
        return _linear_projector(in_features, hidden, dtype)
    for pattern, family in _PATTERNS:
        match = pattern.match(kind)
        if match:
            return family(int(match.group(1)))(in_features, hidden, dtype)
    raise ValueError(f"unsupported mm_projector_type {kind!r} (known: linear, mlpNx_gelu, mlpNx_gelu_Norm)")


def build_projector(hf: Any, in_features: int, hidden: int, dtype: torch.dtype) -> nn.Module:
    """The projector of a (possibly adapted) LLaVA config: the original-layout one when the
    config names an `mm_projector_type`, else transformers' two-layer MLP."""
    kind = getattr(hf, "mm_projector_type", None)
    if kind:
        return original_projector(str(kind), in_features, hidden, dtype)
    act = getattr(hf, "projector_hidden_act", "gelu")
    bias = bool(getattr(hf, "multimodal_projector_bias", True))
    return LlavaMultiModalProjector(in_features, hidden, act, bias, dtype)

"""Activations for gated MLPs, by the names HF configs give them (`hidden_act`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import sglang.kernels as kernels


class SiluAndMul(nn.Module):
    """silu(gate) * up over the output of a fused [gate; up] projection."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:  # one Triton kernel instead of three elementwise passes
            return kernels.silu_and_mul(x)
        fused = kernels.silu_and_mul_cpu(x)  # one C pass on the CPU in float32
        if fused is not None:
            return fused
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up


class GeluTanhAndMul(nn.Module):
    """gelu(gate, tanh approximation) * up: Gemma's MLP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = x.chunk(2, dim=-1)
        return F.gelu(gate, approximate="tanh") * up


class GeluAndMul(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = x.chunk(2, dim=-1)
        return F.gelu(gate) * up


GATED_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": SiluAndMul,
    "swish": SiluAndMul,
    "gelu_pytorch_tanh": GeluTanhAndMul,
    "gelu_new": GeluTanhAndMul,
    "gelu_fast": GeluTanhAndMul,
    "gelu": GeluAndMul,
}


def gated_activation(name: str) -> nn.Module:
    """The act-and-multiply module for an HF activation name."""
    if name not in GATED_ACTIVATIONS:
        raise NotImplementedError(f"activation {name!r} (supported: {sorted(GATED_ACTIVATIONS)})")
    return GATED_ACTIVATIONS[name]()

"""Activations for gated MLPs."""

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
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up

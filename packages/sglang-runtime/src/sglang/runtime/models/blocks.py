"""Decoder-block wirings beyond Llama's pre-norm block, shared by the families that use them.

Every block takes (attention, mlp, norm factory) and keeps the runtime's convention: it gets
and returns (x, residual) whose sum is the hidden state (residual None before the first
block), so the next norm can fuse the add."""

from __future__ import annotations

import torch
from torch import nn

from sglang.runtime.models.llama import (
    LlamaAttention,
    LlamaDecoderLayer,
    NormFactory,
    add_and_norm,
)


class SandwichNormLayer(LlamaDecoderLayer):
    """Gemma 2/3: norms before and after both the attention and the MLP."""

    def __init__(self, attn: LlamaAttention, mlp: nn.Module, norm: NormFactory) -> None:
        super().__init__(attn, mlp, norm)
        self.pre_feedforward_layernorm = norm()
        self.post_feedforward_layernorm = norm()

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, residual = add_and_norm(self.input_layernorm, x, residual)
        x = self.post_attention_layernorm(self.self_attn(positions, x))
        x, residual = self.pre_feedforward_layernorm(x, residual)
        return self.post_feedforward_layernorm(self.mlp(x)), residual


class PostNormLayer(nn.Module):
    """OLMo 2: no input norm; attention and MLP outputs are normalised before each residual
    add."""

    def __init__(self, attn: LlamaAttention, mlp: nn.Module, norm: NormFactory) -> None:
        super().__init__()
        self.self_attn = attn
        self.mlp = mlp
        self.post_attention_layernorm = norm()
        self.post_feedforward_layernorm = norm()

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = x if residual is None else x + residual
        hidden = hidden + self.post_attention_layernorm(self.self_attn(positions, hidden))
        return self.post_feedforward_layernorm(self.mlp(hidden)), hidden


class ParallelLayer(nn.Module):
    """Command-R, and StableLM with use_parallel_residual: attention and MLP both read one
    normalised input and their outputs are added to the residual together."""

    def __init__(self, attn: LlamaAttention, mlp: nn.Module, norm: NormFactory) -> None:
        super().__init__()
        self.self_attn = attn
        self.mlp = mlp
        self.input_layernorm = norm()

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, residual = add_and_norm(self.input_layernorm, x, residual)
        return self.self_attn(positions, x) + self.mlp(x), residual

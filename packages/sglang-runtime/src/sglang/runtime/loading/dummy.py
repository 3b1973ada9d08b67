"""Random weights for benchmarks: realistic shapes and magnitudes, no checkpoint needed."""

from __future__ import annotations

import torch
from torch import nn

from sglang.runtime.layers.norm import RMSNorm


@torch.no_grad()
def fill_dummy_weights(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Matrices ~ N(0, std), biases zero, norm scales one: activations stay O(1) through
    deep stacks, so timings aren't distorted by inf/nan paths. Deterministic per device."""
    norm_params = {id(m.weight) for m in model.modules() if isinstance(m, RMSNorm)}
    generator: torch.Generator | None = None
    for _, param in model.named_parameters():
        if generator is None:
            # Generate on the parameter's device: a CPU generator would make 8B-sized dummy
            # models take minutes to build.
            generator = torch.Generator(device=param.device).manual_seed(seed)
        if id(param) in norm_params:
            param.fill_(1.0)
        elif param.dim() == 1:
            param.zero_()
        else:
            param.normal_(0.0, std, generator=generator)

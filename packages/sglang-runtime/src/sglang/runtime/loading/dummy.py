"""Random weights for benchmarks: realistic shapes and magnitudes, no checkpoint needed.

Each checkpoint-level tensor (every q/k/v/gate/up part of a fused layer too) is drawn from its
own generator, seeded from `seed` and its name, at its full (unsplit) shape; a tensor-parallel
rank keeps its slice. So a dummy model computes the same function at every tp_size.
A quantized Linear (AWQ/GPTQ config) gets random checkpoint tensors of its method
(`QuantLinearMethod.dummy_tensor`), converted after filling like a loaded checkpoint.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch
from torch import nn

from sglang.runtime.layers.linear import MergedLinear
from sglang.runtime.layers.norm import RMSNorm
from sglang.runtime.layers.quantization.base import QuantLinearMethod
from sglang.runtime.layers.sharding import ShardSpec
from sglang.runtime.models.weight_utils import copy_shard


@torch.no_grad()
def fill_dummy_weights(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Matrices ~ N(0, std), biases zero, norm scales one (RMSNorm and LayerNorm): activations stay O(1) through
    deep stacks, so timings aren't distorted by inf/nan paths. Deterministic per device."""
    for path, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        packed = method.params() if isinstance(method, QuantLinearMethod) else {}
        for pname, param in module.named_parameters(recurse=False):
            name = f"{path}.{pname}" if path else pname
            if pname in packed:
                assert isinstance(method, QuantLinearMethod)
                for shard in method.segments:
                    spec = method.shard_spec(module, pname, shard)
                    _fill(spec, f"{name}:{shard}", seed, std,
                          lambda shape, g, d, m=method, n=pname: m.dummy_tensor(n, shape, std, g, d))
            elif isinstance(module, RMSNorm | nn.LayerNorm) and pname == "weight":
                # A norm's identity scale: 0 where it scales by (1 + weight) (Gemma).
                param.fill_(getattr(module, "dummy_weight", 1.0))
            elif param.dim() == 1:
                param.zero_()
            elif isinstance(module, MergedLinear):
                for shard in module.shard_rows:
                    spec = module.shard_spec(pname, shard)
                    assert spec is not None
                    _fill(spec, f"{name}:{shard}", seed, std)
            elif hasattr(module, "stacked_shards"):  # MoE experts: one draw per stacked tensor
                for shard in module.stacked_shards():
                    spec = module.shard_spec(pname, shard) if _owns(module, pname, shard) else None
                    if spec is not None:
                        _fill(spec, f"{name}:{shard}", seed, std)
            else:
                spec = module.shard_spec(pname) if hasattr(module, "shard_spec") else None
                _fill(spec or ShardSpec(param), name, seed, std)


def _owns(module: nn.Module, pname: str, shard: str) -> bool:
    return f"{shard}:0" in module.expected_shards(pname)


Draw = Callable[[tuple[int, ...], torch.Generator, torch.device], torch.Tensor]


def _fill(spec: ShardSpec, name: str, seed: int, std: float, draw: Draw | None = None) -> None:
    # Generated on the parameter's device: a CPU generator would make 8B-sized dummy models
    # take minutes to build.
    device = spec.dest.device
    generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    if draw is not None:
        full = draw(spec.checkpoint_shape, generator, device)
    else:
        full = torch.empty(spec.checkpoint_shape, dtype=spec.dest.dtype, device=device)
        full.normal_(0.0, std, generator=generator)
    copy_shard(spec, full, name)

"""Copies checkpoint tensors (HF names) into a model whose projections may be fused."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from sglang.runtime.layers.linear import MergedLinear

# HF module name -> (our fused module name, shard id inside it).
FusedTable = Mapping[str, tuple[str, str]]


def load_named_tensors(
    model: nn.Module,
    named_tensors: Iterable[tuple[str, torch.Tensor]],
    fused: FusedTable,
    skip: Iterable[str] = (),
) -> None:
    """Load every tensor, then fail loudly if any parameter (or fused shard) was left unset.

    Names containing any string in `skip` are ignored (e.g. precomputed rotary tables, or
    `lm_head.` when the head is tied to the embeddings).
    """
    skip = tuple(skip)
    params = dict(model.named_parameters())
    loaded: set[str] = set()
    for name, tensor in named_tensors:
        if any(s in name for s in skip):
            continue
        module_path, _, param_name = name.rpartition(".")
        parent, _, leaf = module_path.rpartition(".")
        if leaf in fused:
            target, shard = fused[leaf]
            target = f"{parent}.{target}" if parent else target
            module = model.get_submodule(target)
            assert isinstance(module, MergedLinear)
            module.load_shard(shard, param_name, tensor)
            loaded.add(f"{target}.{param_name}:{shard}")
            continue
        if name not in params:
            raise KeyError(f"checkpoint tensor {name!r} matches no model parameter")
        param = params[name]
        if param.shape != tensor.shape:
            raise ValueError(f"{name}: model shape {tuple(param.shape)} != {tuple(tensor.shape)}")
        param.data.copy_(tensor)
        loaded.add(name)
    missing = sorted(_expected_names(model, params) - loaded)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")


def _expected_names(model: nn.Module, params: dict[str, nn.Parameter]) -> set[str]:
    expected: set[str] = set()
    for name in params:
        module_path, _, param_name = name.rpartition(".")
        module = model.get_submodule(module_path)
        if isinstance(module, MergedLinear):
            expected.update(f"{name}:{shard}" for shard in module.shard_rows)
        else:
            expected.add(name)
    return expected

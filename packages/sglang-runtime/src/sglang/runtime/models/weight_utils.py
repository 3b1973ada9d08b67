"""Copies checkpoint tensors (HF names) into a model whose projections may be fused and split
across tensor-parallel ranks: each layer says which slice of a tensor it keeps (`shard_spec`),
and only that slice is read and copied."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from sglang.runtime.layers.linear import MergedLinear
from sglang.runtime.layers.sharding import ShardSpec
from sglang.runtime.loading.source import LazyWeight, materialize

# HF module name -> (our fused module name, shard id inside it).
FusedTable = Mapping[str, tuple[str, str]]
# A per-expert checkpoint matrix `<...>.experts.<e>.<leaf>.weight` -> (our stacked parameter,
# shard kind) of the `<...>.experts` module, e.g. Mixtral's "w1" -> ("w13", "gate").
ExpertTable = Mapping[str, tuple[str, str]]


def load_named_tensors(
    model: nn.Module,
    named_tensors: Iterable[tuple[str, torch.Tensor | LazyWeight]],
    fused: FusedTable,
    skip: Iterable[str] = (),
    experts: ExpertTable | None = None,
    renames: Mapping[str, str] | None = None,
) -> None:
    """Load every tensor, then fail loudly if any parameter (or fused shard) was left unset.

    Names containing any string in `skip` are ignored (e.g. precomputed rotary tables, or
    `lm_head.` when the head is tied to the embeddings). `renames` rewrites substrings of
    checkpoint names into ours, in order (Mixtral's `.block_sparse_moe.` is our `.mlp.`).
    """
    skip = tuple(skip)
    loaded: set[str] = set()
    for name, tensor in named_tensors:
        if any(s in name for s in skip):
            continue
        for old, new in (renames or {}).items():
            name = name.replace(old, new)
        routed = _expert_route(name, experts) if experts else None
        if routed is not None:
            module_path, param_name, shard = routed
            spec = _spec(model, module_path, param_name, shard, name)
            if spec is not None:
                copy_shard(spec, tensor, name)
            keys = model.get_submodule(module_path).shard_keys(shard)
            loaded.update(f"{module_path}.{param_name}:{key}" for key in keys)
            continue
        module_path, _, param_name = name.rpartition(".")
        parent, _, leaf = module_path.rpartition(".")
        shard: str | None = None
        if leaf in fused:
            target, shard = fused[leaf]
            module_path = f"{parent}.{target}" if parent else target
        spec = _spec(model, module_path, param_name, shard, name)
        if spec is not None:
            copy_shard(spec, tensor, name)
        full = f"{module_path}.{param_name}" if module_path else param_name  # a top-level one
        loaded.add(full + (f":{shard}" if shard else ""))
    missing = sorted(_expected_names(model) - loaded)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")


def _expert_route(name: str, experts: ExpertTable) -> tuple[str, str, str] | None:
    """(experts module, stacked parameter, shard) for an expert matrix: `<...>.experts.<e>.
    <leaf>.weight` is shard "kind:e"; `<...>.experts.<leaf>[.weight]`, all experts stacked
    (DBRX, GGUF), is shard "kind"."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part != "experts":
            continue
        rest, expert = parts[i + 1 :], None
        if rest and rest[0].isdigit():
            expert, rest = rest[0], rest[1:]
        if rest and rest[0] in experts and rest[1:] in ([], ["weight"]):
            param, kind = experts[rest[0]]
            return ".".join(parts[: i + 1]), param, kind if expert is None else f"{kind}:{expert}"
    return None


def _spec(
    model: nn.Module, module_path: str, param_name: str, shard: str | None, name: str
) -> ShardSpec | None:
    try:
        module = model.get_submodule(module_path)
    except AttributeError:
        raise KeyError(f"checkpoint tensor {name!r} matches no model parameter") from None
    quant = getattr(module, "quant_method", None)
    if quant is not None and param_name in quant.params():
        return quant.shard_spec(module, param_name, shard)  # type: ignore[no-any-return]
    shard_spec = getattr(module, "shard_spec", None)
    if shard_spec is not None:
        return shard_spec(param_name, shard)  # type: ignore[no-any-return]
    param = module._parameters.get(param_name)
    if param is None or shard is not None:
        raise KeyError(f"checkpoint tensor {name!r} matches no model parameter")
    return ShardSpec(param)


def copy_shard(spec: ShardSpec, tensor: torch.Tensor | LazyWeight, name: str) -> None:
    """Read this rank's slice of `tensor` into `spec.dest` (checking the checkpoint's shape)."""
    want = spec.checkpoint_shape
    if tuple(tensor.shape) != want:
        raise ValueError(f"{name}: model shape {want} != checkpoint shape {tuple(tensor.shape)}")
    if spec.load is not None:
        spec.load(tensor, spec)
        return
    if spec.dim is None:
        src = materialize(tensor)
    else:
        src = tensor.narrow(spec.dim, spec.start, spec.size)
    with torch.no_grad():
        spec.dest.copy_(src)


def _expected_names(model: nn.Module) -> set[str]:
    expected: set[str] = set()
    for name, _ in model.named_parameters():
        module_path, _, param_name = name.rpartition(".")
        module = model.get_submodule(module_path)
        if isinstance(module, MergedLinear):
            expected.update(f"{name}:{shard}" for shard in module.shard_rows)
        elif hasattr(module, "expected_shards"):
            expected.update(f"{name}:{shard}" for shard in module.expected_shards(param_name))
        else:
            expected.add(name)
    return expected


# A fused checkpoint tensor's leaf module name -> its row blocks (HF leaf name, rows) in order.
SplitTable = Mapping[str, list[tuple[str, int]]]


def split_fused(
    named_tensors: Iterable[tuple[str, torch.Tensor | LazyWeight]], table: SplitTable
) -> Iterator[tuple[str, torch.Tensor | LazyWeight]]:
    """Cut checkpoint tensors that hold several projections along their rows (Phi-3's
    `qkv_proj`/`gate_up_proj`, Qwen's `c_attn`) into the separate HF names, which `fused`
    tables then route to this rank's slice. Other tensors pass through untouched."""
    for name, tensor in named_tensors:
        module_path, _, param_name = name.rpartition(".")
        parent, _, leaf = module_path.rpartition(".")
        blocks = table.get(leaf)
        if blocks is None:
            yield name, tensor
            continue
        total = sum(rows for _, rows in blocks)
        if tensor.shape[0] != total:
            raise ValueError(f"{name}: {tensor.shape[0]} rows, expected {total} ({blocks})")
        start = 0
        for part, rows in blocks:
            yield f"{parent}.{part}.{param_name}", tensor.narrow(0, start, rows)
            start += rows

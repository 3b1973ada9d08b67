"""GGUF weights kept packed (`quantization="gguf"`, the default for .gguf files on CPU).

Each Linear, the token embedding and an untied LM head receive their GGUF tensors' blocks
(`loading.gguf_blocks` decodes them into codes, scales and zeros) and hold them in the
canonical layout of `sglang.kernels.quant_layout`; nothing is dequantized to float at load.
What a module holds is decided when its last checkpoint shard arrives, so nothing about the
file needs to be known when the model is built:

- every shard in a packed format: one packed weight. A fused layer (q/k/v, gate/up) takes
  the largest bits and the smallest group of its shards (Q4_K_M files mix Q4_K and Q6_K);
  shards concatenate along the output features N.
- any shard in another format (F32, F16, Q5_0, ...): the module gets a dense float weight, as
  the float path would give it.

Until then the module keeps its float-shaped weight on the meta device, so the loader's shape
and completeness checks work unchanged; a shard is packed as soon as all of its module's
shards are in, so at most one module's codes wait in memory. A packed embedding looks rows up
by dequantizing only the gathered ids; a tied LM head is that same module, multiplied through
the quantized matmul.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sglang.kernels.quant_layout import check_group_size, dequantize_weight, pack_quant_weight
from sglang.runtime.layers.quantization.base import (
    OutSegments,
    PackedParam,
    QuantConfig,
    QuantLinearMethod,
)
from sglang.runtime.layers.sharding import ShardSpec
from sglang.runtime.loading.gguf_blocks import GGUFCodes


class GGUFConfig(QuantConfig):
    method = "gguf"
    packs_embeddings = True
    fills_dummy = False  # type: ignore[assignment]  # its layouts come from the .gguf file

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> GGUFConfig:
        raise ValueError("quant_method 'gguf' is not a config.json quantization; GGUF weights "
                         "come from .gguf files")

    @classmethod
    def from_flag(cls) -> GGUFConfig:
        raise ValueError("--quantization gguf keeps a .gguf file's weights packed; this "
                         "checkpoint is not a .gguf file")

    def linear_method(self) -> GGUFPackedMethod:
        return GGUFPackedMethod()

    def embedding_method(self) -> GGUFPackedMethod:
        return GGUFPackedMethod()


def read_part(tensor: Any, spec: ShardSpec) -> GGUFCodes | torch.Tensor:
    """This rank's slice of one checkpoint tensor: packed codes when its format has them (a GGUF
    tensor's `packed`), else float."""
    packed = getattr(tensor, "packed", None)
    codes = packed(spec.dim, spec.start, spec.size) if packed is not None else None
    if codes is not None:
        return codes
    if spec.dim is None:
        return tensor if isinstance(tensor, torch.Tensor) else tensor.load()
    return tensor.narrow(spec.dim, spec.start, spec.size)  # type: ignore[no-any-return]


def _stack(arrays: list[np.ndarray], pad: int) -> np.ndarray:
    """Rows of the shards one after the other, then `pad` zero rows (no copy for one shard
    without padding: an embedding table is the largest tensor)."""
    if pad:
        arrays = [*arrays, np.zeros((pad, arrays[0].shape[1]), arrays[0].dtype)]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


class GGUFPackedMethod(QuantLinearMethod):
    """One module's GGUF weight: packed (bits and group known once its shards are read) or,
    when a shard is in a format without codes, dense."""

    bits = 0
    group_size = 0

    def params(self) -> dict[str, PackedParam]:
        # The GGUF blocks arrive under the module's own weight name (read by `_receive`).
        return {"weight": PackedParam(torch.uint8)}

    def create(self, layer: Any, full_k: int, in_split: tuple[int, int] | None,
               segments: OutSegments, dtype: torch.dtype = torch.float32) -> None:
        self.setup(layer.in_features, layer.out_features, full_k, in_split, segments, dtype)

    def create_embedding(self, layer: Any, dtype: torch.dtype) -> None:
        """A vocabulary-parallel table [rows_per_rank, hidden] as a matrix of K = hidden input
        and N = rows_per_rank output features (the LM head's view; rows past the vocabulary
        are zero)."""
        real = layer.vocab_end - layer.vocab_start
        segments: OutSegments = {None: (0, real, layer.vocab_start, layer.vocab_size)}
        self.setup(layer.embedding_dim, layer.rows_per_rank, layer.embedding_dim, None,
                   segments, dtype)

    def setup(self, k: int, n: int, full_k: int, in_split: tuple[int, int] | None,
              segments: OutSegments, dtype: torch.dtype) -> None:
        self.k_local, self.n_local, self.full_k = k, n, full_k
        self.in_split, self.segments, self.dtype = in_split, segments, dtype
        self.parts: dict[str | None, GGUFCodes | torch.Tensor] = {}
        self.packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def describe(self) -> str:
        return f"GGUFPackedMethod(bits={self.bits or '?'}, group={self.group_size or '?'})"

    def shard_spec(self, layer: nn.Module, name: str, shard: str | None) -> ShardSpec:
        if shard not in self.segments:
            raise KeyError(f"{type(layer).__name__} has no shard {shard!r}")
        weight: torch.Tensor = layer._parameters["weight"]  # type: ignore[assignment]
        if self.in_split is not None:
            start, size = self.in_split
            return ShardSpec(weight, 1, start, size, self.full_k)
        offset, size, start, full = self.segments[shard]
        return ShardSpec(weight.narrow(0, offset, size), 0, start, size, full)

    def load_tensor(self, layer: nn.Module, name: str, shard: str | None, tensor: Any,
                    full_name: str) -> None:
        """GGUF blocks are read here, never as float: check the checkpoint's shape, then
        receive this rank's part."""
        spec = self.shard_spec(layer, name, shard)
        if tuple(tensor.shape) != spec.checkpoint_shape:
            raise ValueError(f"{full_name}: model shape {spec.checkpoint_shape} != checkpoint "
                             f"shape {tuple(tensor.shape)}")
        self._receive(layer, shard, tensor, spec)

    def _receive(self, layer: nn.Module, shard: str | None, tensor: Any, spec: ShardSpec
                 ) -> None:
        self.parts[shard] = read_part(tensor, spec)
        if len(self.parts) == len(self.segments):
            parts = [self.parts.pop(s) for s in self.segments]  # in output-column order
            if all(isinstance(p, GGUFCodes) for p in parts):
                self._pack(parts)  # type: ignore[arg-type]
            else:
                self._densify(layer, parts)

    def _pack(self, parts: list[GGUFCodes]) -> None:
        bits = max(p.bits for p in parts)
        group = min(p.group for p in parts)
        check_group_size(group, self.k_local)
        parts = [p.regroup(bits, group) for p in parts]
        pad = self.n_local - sum(p.shape[0] for p in parts)  # vocabulary padding rows: zero
        codes, scales, zeros = (_stack([getattr(p, f) for p in parts], pad)
                                for f in ("codes", "scales", "zeros"))
        # GGUF rows are output features; the canonical layout is [K, N].
        qweight = pack_quant_weight(torch.from_numpy(codes).T, bits)
        self.packed = (qweight, torch.from_numpy(scales).T.to(self.dtype).contiguous(),
                       torch.from_numpy(zeros).T.to(self.dtype).contiguous())
        self.bits, self.group_size, self.group = bits, group, group

    def _densify(self, layer: Any, parts: list[GGUFCodes | torch.Tensor]) -> None:
        rows = [torch.from_numpy(p.dequantize()) if isinstance(p, GGUFCodes) else p
                for p in parts]
        weight = torch.zeros(self.n_local, self.k_local, dtype=self.dtype)
        dense = torch.cat([r.to(self.dtype) for r in rows], dim=0)
        weight[: dense.shape[0]] = dense
        layer.weight = nn.Parameter(weight, requires_grad=False)
        layer.quant_method = None  # a plain dense module from here on

    def finish_loading(self, layer: nn.Module, dtype: torch.dtype) -> None:
        if self.packed is None:
            raise ValueError(f"{type(layer).__name__}: the checkpoint lacks some of its shards")
        qweight, scales, zeros = self.packed
        self.packed = None
        layer.register_parameter("weight", None)
        for name, t in (("qweight", qweight), ("scales", scales), ("zeros", zeros)):
            layer.register_parameter(name, nn.Parameter(t, requires_grad=False))
        layer.register_buffer("perm", None, persistent=False)

    def to_canonical(self, layer: nn.Module) -> Any:
        raise NotImplementedError("GGUF weights are converted as they load")

    def embed(self, layer: Any, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` of the table: only the gathered columns of the packed [K, N] are
        dequantized."""
        flat = ids.reshape(-1)
        w = dequantize_weight(layer.qweight[:, flat], layer.scales[:, flat],
                              layer.zeros[:, flat], self.bits, self.group)
        return w.T.to(layer.scales.dtype).contiguous().reshape(*ids.shape, self.k_local)

"""What a quantization method gives a `Linear`: its checkpoint parameters, where each
checkpoint shard of them lands on this rank, the conversion into the canonical layout after
loading, and the matmul.

Every method here ends in the canonical layout of `sglang.kernels.quant_gemm`: qweight int32
[K * bits // 32, N], scales and float zero points [K // group_size, N], and for GPTQ act-order
a permutation of the K rows applied to x first; on a GPU the qweight is then repacked into the
interleaved layout of `quant_gemm_interleaved` where K allows. The checkpoint layouts differ
only in how the tensors are packed, so a method describes each checkpoint tensor by how its two
axes relate to the layer's (K, N) (`PackedParam`), and the sharding below is shared.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sglang.kernels.quant_layout import can_interleave, interleave_values, pack_quant_weight
from sglang.runtime.layers.quantization.matmul import quant_matmul
from sglang.runtime.layers.sharding import ShardSpec
from sglang.runtime.loading.source import LazyWeight, read_shard

# Checkpoint shard id (None: an unfused layer) -> (first local output column, columns, first
# checkpoint column this rank keeps, checkpoint columns in all).
OutSegments = dict[str | None, tuple[int, int, int, int]]


@dataclass(frozen=True)
class PackedParam:
    """A checkpoint tensor of shape [K // k_div, N // n_div] (k_div None: one row for the whole
    K, replicated on every rank), or [K] when `vector` (GPTQ's g_idx)."""

    dtype: torch.dtype
    k_div: int | None = 1
    n_div: int = 1
    vector: bool = False


class QuantConfig(ABC):
    """One checkpoint's quantization settings; `method` names its registry entry."""

    method: ClassVar[str]
    modules_to_not_convert: tuple[str, ...] = ()
    # Whether token embeddings / LM heads are packed too (their tables built empty on "meta").
    packs_embeddings: ClassVar[bool] = False

    @property
    def fills_dummy(self) -> bool:
        """Whether `load_format="dummy"` can draw this method's weights (benchmarks of a
        quantized model without its checkpoint)."""
        return True

    @classmethod
    @abstractmethod
    def from_hf(cls, raw: dict[str, Any]) -> QuantConfig:
        """From config.json's `quantization_config` (raises ValueError on what is unsupported)."""

    @classmethod
    def from_flag(cls) -> QuantConfig:
        raise ValueError(
            f"--quantization {cls.method} needs a checkpoint quantized with {cls.method} "
            "(a quantization_config in its config.json)"
        )

    def skips(self, module_name: str) -> bool:
        return any(name in module_name for name in self.modules_to_not_convert)

    @abstractmethod
    def linear_method(self) -> QuantLinearMethod: ...

    def embedding_method(self) -> Any:
        raise NotImplementedError(f"{self.method} does not pack embeddings")


class QuantLinearMethod(ABC):
    """Registers, shards, converts and applies one Linear's quantized weight."""

    bits: int
    group_size: int  # -1: one group over the whole K
    # CPU: int8 activations for large batches (`--cpu-int8-activations`), set after loading.
    cpu_int8: bool = False
    # qweight in `quant_layout`'s interleaved layout (set when loading finishes on a GPU).
    interleaved: bool = False
    # Every zero point a whole number in [0, 2**bits] (checked when loading finishes).
    integer_zeros: bool = False

    @abstractmethod
    def params(self) -> dict[str, PackedParam]: ...

    @abstractmethod
    def to_canonical(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor,
                                                       torch.Tensor | None]:
        """(values [K, N] int, zeros [G, N] float, perm or None) from the loaded checkpoint
        params; scales stay as loaded."""

    def create(self, layer: Any, full_k: int, in_split: tuple[int, int] | None,
               segments: OutSegments, dtype: torch.dtype = torch.float32) -> None:
        """Replace the layer's dense weight with the checkpoint's packed tensors (empty)."""
        self.full_k, self.in_split, self.segments = full_k, in_split, segments
        k, n = layer.in_features, layer.out_features
        self.k_local = k
        where = "" if in_split is None else f" (this rank's {k} of {full_k} input features)"
        for name, p in self.params().items():
            if p.k_div is not None and k % p.k_div:
                raise ValueError(f"{self.describe()}: {k} input features{where} are not a "
                                 f"multiple of {p.k_div} ({name})")
            for shard, (_, size, start, _) in segments.items():
                if size % p.n_div or start % p.n_div:
                    raise ValueError(f"{self.describe()}: output shard {shard!r} of {size} "
                                     f"columns is not split at multiples of {p.n_div} ({name})")
        layer.register_parameter("weight", None)
        for name, p in self.params().items():
            if p.vector:
                shape: tuple[int, ...] = (max(len(segments), 1), k)
            else:
                shape = (1 if p.k_div is None else k // p.k_div, n // p.n_div)
            tensor = torch.zeros(shape, dtype=p.dtype)
            layer.register_parameter(name, nn.Parameter(tensor, requires_grad=False))

    def describe(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, group_size={self.group_size})"

    def shard_spec(self, layer: nn.Module, name: str, shard: str | None) -> ShardSpec:
        p = self.params()[name]
        param: torch.Tensor = layer._parameters[name]  # type: ignore[assignment]
        if shard not in self.segments:
            raise KeyError(f"{type(layer).__name__} has no shard {shard!r}")
        index = list(self.segments).index(shard)
        if p.vector:
            dest = param.data[index]
            if self.in_split is None:
                return ShardSpec(dest)
            start, size = self.in_split
            return ShardSpec(dest, 0, start, size, self.full_k)
        if self.in_split is not None:
            if p.k_div is None:
                return ShardSpec(param.data)
            start, size = self.in_split
            return ShardSpec(param.data, 0, start // p.k_div, size // p.k_div,
                             self.full_k // p.k_div)
        offset, size, start, full = self.segments[shard]
        div = p.n_div
        dest = param.data.narrow(1, offset // div, size // div)
        return ShardSpec(dest, 1, start // div, size // div, full // div)

    def dummy_tensor(self, name: str, shape: tuple[int, ...], std: float,
                     generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """A random checkpoint tensor `name` of `shape` for dummy weights: packed values and
        zero points uniform over their codes, scales that give the dequantized weight a spread
        of about `std`, g_idx in plain group order."""
        p = self.params()[name]
        if p.vector:
            k = shape[-1]
            group = k if self.group_size == -1 else self.group_size
            return (torch.arange(k, device=device) // group).to(p.dtype).expand(shape).clone()
        if not p.dtype.is_floating_point:
            info = torch.iinfo(p.dtype)
            return torch.randint(info.min, info.max, shape, dtype=p.dtype, device=device,
                                 generator=generator)
        # q and z uniform over 2**bits codes: q - z has variance 2 * (4**bits - 1) / 12.
        return torch.full(shape, std / math.sqrt((4 ** self.bits - 1) / 6), dtype=p.dtype,
                          device=device)

    def load_tensor(self, layer: nn.Module, name: str, shard: str | None,
                    tensor: torch.Tensor | LazyWeight, full_name: str) -> None:
        """Copy this rank's part of checkpoint tensor `name` (of shard `shard`) into place."""
        spec = self.shard_spec(layer, name, shard)
        src = read_shard(spec, tensor, full_name)
        with torch.no_grad():
            spec.dest.copy_(src)

    def finish_loading(self, layer: nn.Module, dtype: torch.dtype) -> None:
        """Convert the loaded checkpoint tensors into the canonical layout, in place."""
        values, zeros, perm = self.to_canonical(layer)
        scales = layer._parameters["scales"]
        assert scales is not None
        for name in self.params():
            delattr(layer, name)
        def keep(t: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(t.contiguous(), requires_grad=False)

        self.group = self.k_local if self.group_size == -1 else self.group_size
        # On the GPU, rows of words per output feature (`quant_gemm_interleaved`) where K
        # splits into whole blocks; the canonical layout elsewhere (CPU kernels, odd K).
        self.interleaved = values.is_cuda and can_interleave(self.k_local, self.bits, self.group)
        pack = interleave_values if self.interleaved else pack_quant_weight
        layer.qweight = keep(pack(values, self.bits))
        layer.scales = keep(scales.data.to(dtype))
        layer.zeros = keep(zeros.to(dtype))
        z = layer.zeros.float()
        self.integer_zeros = bool(torch.equal(z, z.round()) and z.min() >= 0
                                  and z.max() <= 1 << self.bits)
        layer.register_buffer("perm", perm, persistent=False)

    def apply(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if layer.perm is not None:
            x2 = x2[:, layer.perm]
        y = quant_matmul(x2, layer.qweight, layer.scales, layer.zeros, self.bits, self.group,
                         cpu_int8=self.cpu_int8, interleaved=self.interleaved,
                         integer_zeros=self.integer_zeros)
        bias = getattr(layer, "bias", None)  # a packed embedding used as LM head has none
        if bias is not None:
            y = y + bias
        return y.reshape(*shape[:-1], y.shape[-1])

"""AWQ checkpoints (AutoAWQ's GEMM format, `quant_method: "awq"`).

Per Linear: qweight int32 [K, N / 8] packs 8 OUTPUT columns per word, in AutoAWQ's interleaved
order: nibble i of a word holds column `AWQ_ORDER[i]` of its run of 8; qzeros int32
[K / group, N / 8] packs the zero points the same way; scales fp16 [K / group, N];
w[k, n] = (q[k, n] - z[k // group, n]) * s[k // group, n]. Only 4-bit GEMM checkpoints exist.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.quantization.base import PackedParam, QuantConfig, QuantLinearMethod
from sglang.runtime.layers.quantization.packing import unpack_int32
from sglang.runtime.layers.quantization.validate import check_value

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
# Column j of a run of 8 sits at nibble AWQ_REVERSE_ORDER[j] (the inverse permutation).
AWQ_REVERSE_ORDER = tuple(AWQ_ORDER.index(j) for j in range(8))
AWQ_BITS = (4,)
AWQ_GROUP_SIZES = (32, 64, 128)
AWQ_VERSIONS = ("gemm",)


def unpack_awq(packed: torch.Tensor) -> torch.Tensor:
    """[R, N / 8] AWQ words -> [R, N] 4-bit values in column order."""
    nibbles = unpack_int32(packed, 4, dim=1)
    rows, n = nibbles.shape
    runs = nibbles.reshape(rows, n // 8, 8)
    index = torch.tensor(AWQ_REVERSE_ORDER, device=packed.device)
    return runs[:, :, index].reshape(rows, n)


class AWQConfig(QuantConfig):
    method = "awq"

    def __init__(self, bits: int, group_size: int, zero_point: bool,
                 modules_to_not_convert: tuple[str, ...] = ()) -> None:
        check_value("awq", "bits", bits, AWQ_BITS)
        check_value("awq", "group_size", group_size, AWQ_GROUP_SIZES)
        if not zero_point:
            raise ValueError("awq checkpoints without zero points (zero_point=false) are not "
                             "supported; supported: zero_point=true")
        self.bits, self.group_size = bits, group_size
        self.modules_to_not_convert = modules_to_not_convert

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> AWQConfig:
        version = str(raw.get("version", "gemm")).lower()
        check_value("awq", "version", version, AWQ_VERSIONS)
        return cls(int(raw.get("bits", raw.get("w_bit", 4))),
                   int(raw.get("group_size", raw.get("q_group_size", 128))),
                   bool(raw.get("zero_point", True)),
                   tuple(raw.get("modules_to_not_convert") or ()))

    def linear_method(self) -> AWQLinearMethod:
        return AWQLinearMethod(self.bits, self.group_size)


class AWQLinearMethod(QuantLinearMethod):
    def __init__(self, bits: int, group_size: int) -> None:
        self.bits, self.group_size = bits, group_size

    def params(self) -> dict[str, PackedParam]:
        pack, g = 32 // self.bits, self.group_size
        return {
            "qweight": PackedParam(torch.int32, 1, pack),
            "qzeros": PackedParam(torch.int32, g, pack),
            "scales": PackedParam(torch.float16, g, 1),
        }

    def to_canonical(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, None]:
        values = unpack_awq(layer.qweight.data)  # type: ignore[operator]
        zeros = unpack_awq(layer.qzeros.data).float()  # type: ignore[operator]
        return values, zeros, None

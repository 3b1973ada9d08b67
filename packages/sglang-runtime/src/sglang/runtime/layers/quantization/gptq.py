"""GPTQ checkpoints (AutoGPTQ's classic format, `quant_method: "gptq"`).

Per Linear: qweight int32 [K * bits / 32, N] packs consecutive INPUT rows per word, lowest bits
first (already the canonical layout); qzeros int32 [G, N * bits / 32] packs output columns the
same way and stores each zero point MINUS ONE (the classic format; `z = stored + 1`); scales
fp16 [G, N]; g_idx int32 [K], the group of each input row. Symmetric checkpoints store
z = 2**(bits - 1) like any other. With `desc_act` (act-order) g_idx is a permutation of the
groups: the rows are sorted by group at load (`perm`) and x is gathered with it first.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sglang.runtime.layers.quantization.base import PackedParam, QuantConfig, QuantLinearMethod
from sglang.runtime.layers.quantization.packing import unpack_int32
from sglang.runtime.layers.quantization.validate import check_value

GPTQ_BITS = (4, 8)
GPTQ_GROUP_SIZES = (32, 64, 128, -1)


class GPTQConfig(QuantConfig):
    method = "gptq"

    def __init__(self, bits: int, group_size: int, desc_act: bool, sym: bool,
                 modules_to_not_convert: tuple[str, ...] = ()) -> None:
        check_value("gptq", "bits", bits, GPTQ_BITS)
        check_value("gptq", "group_size", group_size, GPTQ_GROUP_SIZES)
        self.bits, self.group_size, self.desc_act, self.sym = bits, group_size, desc_act, sym
        self.modules_to_not_convert = modules_to_not_convert

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> GPTQConfig:
        fmt = str(raw.get("checkpoint_format", "gptq")).lower()
        check_value("gptq", "checkpoint_format", fmt, ("gptq",))
        return cls(int(raw.get("bits", 4)), int(raw.get("group_size", 128)),
                   bool(raw.get("desc_act", False)), bool(raw.get("sym", True)),
                   tuple(raw.get("modules_to_not_convert") or ()))

    def linear_method(self) -> GPTQLinearMethod:
        return GPTQLinearMethod(self.bits, self.group_size, self.desc_act)


class GPTQLinearMethod(QuantLinearMethod):
    def __init__(self, bits: int, group_size: int, desc_act: bool) -> None:
        self.bits, self.group_size, self.desc_act = bits, group_size, desc_act

    def params(self) -> dict[str, PackedParam]:
        pack = 32 // self.bits
        g = None if self.group_size == -1 else self.group_size
        return {
            "qweight": PackedParam(torch.int32, pack, 1),
            "qzeros": PackedParam(torch.int32, g, pack),
            "scales": PackedParam(torch.float16, g, 1),
            "g_idx": PackedParam(torch.int32, vector=True),
        }

    def create(self, layer: Any, full_k: int, in_split: tuple[int, int] | None,
               segments: Any, dtype: torch.dtype = torch.float32) -> None:
        if self.desc_act and in_split is not None and in_split[1] != full_k:
            # Each rank's rows would draw on every group; the canonical layout wants whole groups.
            raise ValueError("gptq desc_act (act-order) checkpoints are not supported with "
                             "tensor parallelism over a row-parallel layer; use tp_size=1")
        super().create(layer, full_k, in_split, segments, dtype)

    def to_canonical(self, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor,
                                                       torch.Tensor | None]:
        values = unpack_int32(layer.qweight.data, self.bits, dim=0)  # type: ignore[arg-type]
        zeros = unpack_int32(layer.qzeros.data, self.bits, dim=1).float() + 1  # type: ignore[arg-type]
        g_idx = layer.g_idx.data.long()  # type: ignore[union-attr]
        if (g_idx != g_idx[0]).any():
            raise ValueError("gptq: the fused projections of one layer have different g_idx")
        g_idx = g_idx[0]
        k = values.shape[0]
        group = k if self.group_size == -1 else self.group_size
        # A row-parallel rank holds whole groups starting past group 0.
        g_idx = g_idx - g_idx.min()
        contiguous = torch.arange(k, device=g_idx.device) // group
        if self.group_size == -1 or torch.equal(g_idx, contiguous):
            return values, zeros, None
        perm = torch.sort(g_idx, stable=True).indices
        if not torch.equal(g_idx[perm], contiguous):
            raise ValueError(f"gptq: g_idx does not give every group exactly {group} rows")
        return values[perm], zeros, perm

"""Choosing the quantization: from config.json's quantization_config, checked against
`--quantization`; clear errors naming the unsupported value and the supported ones."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from sglang.runtime.config import RuntimeArgs
from sglang.runtime.layers.quantization import QUANTIZATION_METHODS
from sglang.runtime.layers.quantization.build import resolve_quant_config
from sglang.runtime.layers.quantization.packing import pack_int32, unpack_int32


def _cfg(**quant: Any) -> Any:
    return SimpleNamespace(quantization_config=quant)


def test_checkpoint_config_is_read() -> None:
    awq = resolve_quant_config(_cfg(quant_method="awq", bits=4, group_size=64, zero_point=True),
                               None)
    assert awq is not None and (awq.method, awq.group_size) == ("awq", 64)  # type: ignore[attr-defined]
    gptq = resolve_quant_config(
        _cfg(quant_method="gptq", bits=8, group_size=-1, sym=False, desc_act=True,
             modules_to_not_convert=["lm_head"]), "gptq")
    assert gptq is not None and gptq.skips("model.lm_head") and not gptq.skips("model.layers.0")
    assert resolve_quant_config(SimpleNamespace(), None) is None


@pytest.mark.parametrize(("quant", "message"), [
    ({"quant_method": "awq", "bits": 8, "group_size": 128}, "unsupported bits=8; supported: 4"),
    ({"quant_method": "awq", "bits": 4, "group_size": 16}, "unsupported group_size=16"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"},
     "unsupported version='gemv'"),
    ({"quant_method": "gptq", "bits": 3, "group_size": 128}, "unsupported bits=3; supported: 4, 8"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 96},
     "unsupported group_size=96; supported: 32, 64, 128, -1"),
    ({"quant_method": "bitsandbytes"}, "unsupported quant_method='bitsandbytes'; supported: awq"),
])
def test_unsupported_settings_name_the_value(quant: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_quant_config(_cfg(**quant), None)


def test_flag_disagreeing_with_checkpoint() -> None:
    with pytest.raises(ValueError, match="--quantization awq disagrees .* quantized with gptq"):
        resolve_quant_config(_cfg(quant_method="gptq", bits=4, group_size=128), "awq")
    with pytest.raises(ValueError, match="needs a checkpoint quantized with gptq"):
        resolve_quant_config(SimpleNamespace(), "gptq")
    with pytest.raises(ValueError, match="unsupported method='fp4'"):
        resolve_quant_config(SimpleNamespace(), "fp4")


def test_runtime_args_choices_come_from_the_registry() -> None:
    assert RuntimeArgs(quantization="awq").quantization == "awq"
    assert set(QUANTIZATION_METHODS) == {"awq", "gptq", "fp8", "gguf"}
    with pytest.raises(ValueError, match="quantization"):
        RuntimeArgs(quantization="marlin")


@pytest.mark.parametrize("bits", [4, 8])
def test_pack_roundtrip(bits: int) -> None:
    values = torch.randint(0, 2**bits, (64, 24), dtype=torch.int32)
    words = pack_int32(values, bits, dim=0)
    assert words.shape == (64 * bits // 32, 24) and words.dtype == torch.int32
    assert torch.equal(unpack_int32(words, bits, dim=0), values)
    # The canonical order: row k of word r is at bits * (k - r * 32 // bits).
    assert int(words[0, 0]) & (2**bits - 1) == int(values[0, 0])


def test_shards_off_pack_or_group_boundaries_are_refused() -> None:
    from sglang.runtime.layers.linear import MergedLinear, RowParallelLinear
    from sglang.runtime.layers.quantization.awq import AWQConfig
    from sglang.runtime.layers.quantization.gptq import GPTQConfig

    # A rank's half of a row-parallel layer under act-order would need rows of every group.
    row = RowParallelLinear(128, 64, in_range=(64, 64))
    with pytest.raises(ValueError, match="desc_act .* row-parallel"):
        GPTQConfig(4, 32, desc_act=True, sym=True).linear_method().create(
            row, *row.quant_geometry())
    # Without act-order, the rank's 64 input rows must be whole groups of 128: they are not.
    row = RowParallelLinear(128, 64, in_range=(64, 64))
    with pytest.raises(ValueError, match="not a multiple of 128"):
        GPTQConfig(4, 128, desc_act=False, sym=True).linear_method().create(
            row, *row.quant_geometry())
    # AWQ packs 8 output columns per word: a 12-column shard cannot be cut out of them.
    merged = MergedLinear(64, {"a": 12, "b": 20})
    with pytest.raises(ValueError, match="multiples of 8"):
        AWQConfig(4, 32, zero_point=True).linear_method().create(merged, *merged.quant_geometry())

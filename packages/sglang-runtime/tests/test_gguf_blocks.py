"""GGUF block formats -> codes/scales/zeros (`loading.gguf_blocks`) against gguf-py's own
`gguf.quants.dequantize` on the same bytes, and the canonical packing of the codes.

Tolerances: Q8_0, Q4_0 and Q6_K compute the same fp32 products as gguf-py (exact); Q4_1,
Q4_K and Q5_K fold the offset into a zero point z = offset / s, so (q - z) * s differs from
q * s + offset by fp32 rounding only (a few ulp of the largest weight: rtol 0, atol 4 ulp).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sglang.kernels.quant_layout import dequantize_weight, pack_quant_weight
from sglang.runtime.loading.gguf_blocks import BLOCK_FORMATS, decode_rows

sys.path.insert(0, str(Path(__file__).parent))
from gguf_blocks_cases import K_QUANTS, QUANTIZABLE, gguf_bytes  # noqa: E402

EXACT = {"Q8_0", "Q4_0", "Q6_K"}
ROWS, COLS = 12, 768


def _reference(raw: np.ndarray, type_name: str) -> np.ndarray:
    import gguf
    from gguf.quants import dequantize

    return dequantize(raw, gguf.GGMLQuantizationType[type_name]).astype(np.float32)


def _weights(rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    w[0, :32] = 0.25  # a constant block: Q4_1 stores d = 0, m = 0.25
    w[1, 64:96] = 0.0  # an all-zero block: d = 0 everywhere
    return w


@pytest.mark.parametrize("type_name", QUANTIZABLE + K_QUANTS)
def test_codes_dequantize_like_gguf(type_name: str) -> None:
    rng = np.random.default_rng(sorted(BLOCK_FORMATS).index(type_name))
    raw = gguf_bytes(type_name, _weights(rng), rng)
    want = _reference(raw, type_name)
    codes = decode_rows(raw, type_name, COLS)
    fmt = BLOCK_FORMATS[type_name]
    assert codes.codes.dtype == np.uint8 and codes.codes.shape == (ROWS, COLS)
    assert (codes.bits, codes.group) == (fmt.bits, fmt.group)
    assert int(codes.codes.max()) < 2**fmt.bits
    assert codes.scales.shape == (ROWS, COLS // fmt.group)
    got = codes.dequantize()
    if type_name in EXACT:
        np.testing.assert_array_equal(got, want)
    else:
        ulp = np.spacing(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * ulp)


@pytest.mark.parametrize("type_name", ["Q4_1", "Q4_K", "Q5_K", "Q6_K"])
def test_zero_scale_groups_become_exact_constants(type_name: str) -> None:
    rng = np.random.default_rng(5)
    raw = gguf_bytes(type_name, _weights(rng), rng)
    codes = decode_rows(raw, type_name, COLS)
    grouped = codes.codes.reshape(ROWS, -1, codes.group)
    want = _reference(raw, type_name).reshape(ROWS, -1, codes.group)
    # Some groups of each case are constant (Q4_1's constant and zero blocks, the zeroed K
    # sub-scales); random codes under a nonzero scale never are.
    constant = (want == want[..., :1]).all(-1)
    assert constant.sum() >= 2
    assert (grouped[constant] == 1).all()
    assert (codes.zeros[constant] == 0).all()
    np.testing.assert_array_equal(codes.scales[constant], want[constant][:, 0])


@pytest.mark.parametrize("type_name", ["Q8_0", "Q4_1", "Q6_K"])
def test_packed_layout_holds_the_same_weights(type_name: str) -> None:
    rng = np.random.default_rng(11)
    codes = decode_rows(gguf_bytes(type_name, _weights(rng), rng), type_name, COLS)
    qweight = pack_quant_weight(torch.from_numpy(codes.codes).T, codes.bits)
    got = dequantize_weight(qweight, torch.from_numpy(codes.scales).T,
                            torch.from_numpy(codes.zeros).T, codes.bits, codes.group)
    torch.testing.assert_close(got.T, torch.from_numpy(codes.dequantize()), rtol=0, atol=0)


def test_regroup_and_column_slices() -> None:
    rng = np.random.default_rng(3)
    codes = decode_rows(gguf_bytes("Q4_0", _weights(rng), rng), "Q4_0", COLS)
    wide = codes.regroup(8, 16)
    assert (wide.bits, wide.group, wide.scales.shape[1]) == (8, 16, COLS // 16)
    np.testing.assert_array_equal(wide.dequantize(), codes.dequantize())
    part = codes.narrow_cols(64, 128)
    np.testing.assert_array_equal(part.dequantize(), codes.dequantize()[:, 64:192])
    with pytest.raises(ValueError, match="does not fall on the format's 32-value groups"):
        codes.narrow_cols(48, 128)
    with pytest.raises(ValueError, match="cannot hold"):
        wide.regroup(4, 16)

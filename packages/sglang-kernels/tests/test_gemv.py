"""The small-batch GEMV against its torch reference."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import DEVICE, DTYPES, randn

from sglang.kernels import gemv
from sglang.kernels.reference import gemv_ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("bias", [False, True])
def test_gemv_matches_linear(rows, bias, dtype):
    # N and K not multiples of the blocks: the masked edges are exercised.
    x = randn(rows, 300, dtype=dtype)
    w = randn(70, 300, dtype=dtype, seed=1) * 0.1
    b = randn(70, dtype=dtype, seed=2) if bias else None
    got = gemv(x, w, b, block_n=16, block_k=128)
    want = gemv_ref(x, w, b).float()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert got.dtype == dtype and got.shape == (rows, 70)
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)


def test_gemv_rejects_bad_shapes():
    with pytest.raises(ValueError, match="rows"):
        gemv(torch.zeros(9, 4, device=DEVICE), torch.zeros(2, 4, device=DEVICE))
    with pytest.raises(ValueError, match="mismatch"):
        gemv(torch.zeros(1, 4, device=DEVICE), torch.zeros(2, 5, device=DEVICE))

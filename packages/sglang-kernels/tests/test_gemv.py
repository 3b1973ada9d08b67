"""The small-batch GEMV against its torch reference."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import DEVICE, DTYPES, randn

from sglang.kernels import GemvConfig, gemv
from sglang.kernels.reference import gemv_ref

SMALL = GemvConfig(block_n=4, block_k=128)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("k", [300, 256])  # a ragged last K chunk, and K a multiple of block_k
def test_gemv_matches_linear(rows, bias, k, dtype):
    # N not a multiple of block_n: the clamped edge rows must not be stored.
    x = randn(rows, k, dtype=dtype)
    w = randn(70, k, dtype=dtype, seed=1) * 0.1
    b = randn(70, dtype=dtype, seed=2) if bias else None
    got = gemv(x, w, b, config=SMALL)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert got.dtype == dtype and got.shape == (rows, 70)
    torch.testing.assert_close(got.float(), gemv_ref(x, w, b).float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("rows", [1, 2])
def test_gemv_default_config_and_strided_rows(rows):
    # The default launch shape (one K chunk for K=512), x a row-strided view.
    base = randn(rows, 1024, dtype=torch.float32)
    x = base[:, :512]
    w = randn(40, 512, dtype=torch.float32, seed=1) * 0.1
    torch.testing.assert_close(gemv(x, w), gemv_ref(x, w), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("rows", "k", "block_k"),
    [(1, 4096, 4096), (1, 14336, 2048), (1, 300, 512), (2, 4096, 2048), (8, 14336, 512)],
)
def test_default_config_shapes(rows, k, block_k):
    assert GemvConfig.for_shape(rows, k).block_k == block_k


def test_gemv_rejects_bad_input():
    z = torch.zeros
    with pytest.raises(ValueError, match="rows"):
        gemv(z(9, 4, device=DEVICE), z(2, 4, device=DEVICE))
    with pytest.raises(ValueError, match="mismatch"):
        gemv(z(1, 4, device=DEVICE), z(2, 5, device=DEVICE))
    with pytest.raises(ValueError, match="dtype|is torch"):
        gemv(z(1, 4, device=DEVICE), z(2, 4, device=DEVICE, dtype=torch.float16))
    with pytest.raises(ValueError, match="bias"):
        gemv(z(1, 4, device=DEVICE), z(2, 4, device=DEVICE), z(3, device=DEVICE))


def test_tuned_plan_follows_the_measured_table(override):
    import json

    import torch

    from sglang.kernels import tuning
    from sglang.kernels.skinny_gemm import TUNING_KERNEL, tuned_plan, tuning_key

    fast = {"block_n": 2, "block_k": 512, "num_warps": 8, "num_stages": 3}
    table = {tuning_key(64, 256, torch.bfloat16): {
        "1": {"gemv": fast, "gemv_us": 5.0, "cublas_us": 6.0},
        "4": {"gemv": None, "gemv_us": 9.0, "cublas_us": 7.0},  # cuBLAS won
    }}
    dev = tuning.device_key()
    (override / tuning.table_name(TUNING_KERNEL, dev)).write_text(json.dumps(table))
    plan = tuned_plan(64, 256, torch.bfloat16, 4, device=None)
    assert plan[0] == GemvConfig(**fast)
    assert plan[1] == GemvConfig(**fast)  # 2 rows: the 1-row bucket is as near as the 4-row one
    assert plan[2] is None and plan[3] is None
    # No measurement for the shape: the default launch at every row count.
    assert tuned_plan(64, 512, torch.bfloat16, 2) == [GemvConfig.for_shape(1, 512),
                                                     GemvConfig.for_shape(2, 512)]

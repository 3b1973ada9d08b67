"""The launch sweep (`python -m sglang.kernels.quant_gemm_tune`) on the CPU: every candidate
runs in the interpreter, a stand-in clock ranks them, and the table it writes is what
`gemm_config` then reads."""

from __future__ import annotations

import json

import torch

from sglang.kernels import QuantGemmConfig
from sglang.kernels import quant_gemm_tune as tune
from sglang.kernels.quant_matmul import gemm_config, tuning_key


def fake_clock(fn) -> float:  # noqa: ANN001
    """Runs the candidate (so launch errors surface), then times it by its shape: the
    smallest blocks win; 16-wide column blocks "fail to compile"."""
    config: QuantGemmConfig = fn.__defaults__[0]
    if config.block_n == 16:
        raise RuntimeError("out of resources")
    fn()
    return (config.block_m / 16 + config.block_n / 32 + config.split_k + config.block_k / 64
            + config.num_stages / 10)


def test_sweep_writes_the_table_gemm_config_reads(override, monkeypatch):
    monkeypatch.setattr(tune, "_time_us", fake_clock)
    path = tune.sweep([(32, 64)], [4], [32], [1, 20], torch.float32, override, device="cpu")
    table = json.loads(path.read_text())
    buckets = table[tuning_key(32, 64, 4, 32)]
    assert set(buckets) == {"1", "20"}
    assert buckets["1"]["us"] > 0 and buckets["1"]["weight_gbps"] > 0
    cpu = torch.device("cpu")
    # One row: the FMA kernel's block of 1 row ranks first on the stand-in clock.
    assert gemm_config(1, 32, 64, 4, 32, cpu) == QuantGemmConfig(1, 32, 64, 1, 4, 3, False)
    assert gemm_config(20, 32, 64, 4, 32, cpu) == QuantGemmConfig(16, 64, 64, 1, 4, 3)


def test_candidates_respect_the_group_and_the_rows():
    # A group of 96 rows (group_size == K): K chunks of 128 or 256 would span two groups.
    assert {c.block_k for c in tune.small_m_launches(96)} == {64}
    assert {c.block_m for c in tune.tiled_launches(20)} == {16, 32}
    fma = [c for c in tune.small_m_launches(128, 3) if not c.use_dot]
    assert fma and {c.block_m for c in fma} == {4}
    assert all(c.use_dot for c in tune.small_m_launches(128, 5))
    assert all(c.num_warps == 8 for c in tune.tiled_launches(4096)
               if c.block_m * c.block_n >= 128 * 128)

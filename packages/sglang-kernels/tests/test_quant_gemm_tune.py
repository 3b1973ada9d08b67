"""The launch sweep (`python -m sglang.kernels.quant_gemm_tune`) on the CPU: every candidate
runs in the interpreter, a stand-in clock ranks them, and the table it writes is what
`gemm_config` then reads."""

from __future__ import annotations

import json

import torch

from sglang.kernels import QuantGemmConfig
from sglang.kernels import quant_gemm_tune as tune
from sglang.kernels.quant_matmul import gemm_config, tuning_key


def fake_clock(calls) -> float:  # noqa: ANN001
    """Runs the candidate (so launch errors surface), then times it by its shape: the
    smallest blocks win; 16-wide column blocks "fail to compile"."""
    config: QuantGemmConfig = calls[0].__defaults__[0]
    if config.block_n == 16:
        raise RuntimeError("out of resources")
    calls[0]()
    return (config.block_m / 16 + config.block_n / 32 + config.split_k + config.block_k / 64
            + config.num_stages / 10)


def test_sweep_writes_the_table_gemm_config_reads(override, monkeypatch):
    monkeypatch.setattr(tune, "_time_us", fake_clock)
    path = tune.sweep([(32, 64)], [4], [32], [1, 20], torch.float32, override, device="cpu")
    table = json.loads(path.read_text())
    buckets = table[tuning_key(32, 64, 4, 32)]
    assert set(buckets) == {"1", "20"}
    assert buckets["1"]["us"] > 0 and buckets["1"]["weight_gbps"] > 0
    # A later sweep of other row counts keeps these buckets.
    tune.sweep([(32, 64)], [4], [32], [4], torch.float32, override, device="cpu")
    merged = json.loads(path.read_text())[tuning_key(32, 64, 4, 32)]
    assert set(merged) == {"1", "4", "20"} and merged["1"] == buckets["1"]
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


def test_interleaved_sweep_writes_the_table_il_config_reads(override, monkeypatch):
    from sglang.kernels.quant_interleaved import IlConfig, il_config
    from sglang.kernels.quant_interleaved import tuning_key as il_key

    def il_clock(calls) -> float:  # noqa: ANN001
        config: IlConfig = calls[0].__defaults__[0]
        calls[0]()
        return config.block_n / 32 + config.split_k + config.prefetch + config.num_warps / 8 + (
            config.block_m / 16 + config.num_stages / 10)

    monkeypatch.setattr(tune, "_time_us", il_clock)
    every = tune.interleaved_launches  # a subset keeps the interpreter quick
    monkeypatch.setattr(tune, "interleaved_launches", lambda m: (
        c for c in every(m) if c.block_n <= 64 and c.split_k <= 2 and c.num_stages == 2))
    path = tune.sweep([(32, 256)], [4], [128], [1, 3], torch.float32, override, device="cpu",
                      layout_name="interleaved")
    buckets = json.loads(path.read_text())[il_key(32, 256, 4, 128)]
    assert set(buckets) == {"1", "3"}
    cpu = torch.device("cpu")
    assert il_config(1, 32, 256, 4, 128, cpu) == IlConfig(1, 32, 1, False, 4, 2)
    # The fake clock's cheapest at 3 rows: the tensor-core kernel on one warp.
    assert il_config(3, 32, 256, 4, 128, cpu) == IlConfig(16, 32, 1, num_warps=1, num_stages=2,
                                                          mma=True)

"""quant_gemm's kernel built for Hopper (sm90) without a GPU (the triton wheel's ptxas): the
default launch shapes must compile and keep their accumulators in registers (no local-memory
stack). Catches what the interpreter cannot: the layouts of the unpacking reshape, the
tensor-core dot, the shared memory of the pipelined loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path

import pytest
import quant_gemm_sm90

from sglang.kernels.quant_matmul import QuantGemmConfig

if not quant_gemm_sm90.available():
    pytest.skip("the triton wheel ships no ptxas/cuobjdump here", allow_module_level=True)

HOPPER_SMS = 132
# (M, N, K): decode and prefill rows on Llama-3-8B's o and down projections.
SHAPES = [(1, 4096, 4096), (2, 6144, 4096), (16, 4096, 14336), (48, 4096, 4096),
          (512, 4096, 4096)]


def _build(jobs: list[dict]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(quant_gemm_sm90.__file__).parent),
                                         env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, quant_gemm_sm90.__file__, json.dumps(jobs)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_launches_build_for_sm90_without_spills():
    jobs, configs = [], []
    for bits in (4, 8):
        for m, n, k in SHAPES:
            config = QuantGemmConfig.for_shape(m, n, k, 128, HOPPER_SMS)
            configs.append(config)
            jobs.append(dict(config=list(astuple(config)), bits=bits, dtype="bf16",
                             one_group=128 % config.block_k == 0))
    # block_k 128 over groups of 32: scales and zeros gathered per k row; and the FMA kernel
    # at its largest row block.
    configs.append(QuantGemmConfig(16, 32, 128, 1, 4, 3))
    jobs.append(dict(config=list(astuple(configs[-1])), bits=4, dtype="fp16", one_group=False))
    configs.append(QuantGemmConfig(4, 16, 128, 1, 4, 3, use_dot=False))
    jobs.append(dict(config=list(astuple(configs[-1])), bits=8, dtype="fp16", one_group=True))
    for config, result in zip(configs, _build(jobs), strict=True):
        assert result == {"elf": True, "stack": 0}, config


def test_tensor_core_launches_build_for_sm90_without_spills():
    # The tuner's candidates of the interleaved tensor-core kernel (each shape at its most
    # pipeline stages, the most registers): the inline PTX assembles, the weight tile stays the
    # register operand of wgmma (4 or more warps) or of mma.sync (fewer), nothing spills.
    from sglang.kernels.quant_gemm_tune import interleaved_launches

    stages: dict[tuple[int, int], int] = {}
    for c in interleaved_launches(4):
        if c.mma:
            key = (c.block_n, c.num_warps)
            stages[key] = max(stages.get(key, 0), c.num_stages)
    jobs = [{"kernel": "mma", "block_n": bn, "num_warps": w, "num_stages": st, "dtype": dtype,
             "integer_zeros": whole}
            for (bn, w), st in sorted(stages.items())
            for dtype, whole in (("bfloat16", True), ("float16", True), ("bfloat16", False))]
    results = _build(jobs)
    assert stages and all(r["elf"] for r in results), results
    for job, r in zip(jobs, results, strict=True):
        assert (r["wgmma"], r["mma_sync"]) == (job["num_warps"] >= 4, job["num_warps"] < 4), job
        assert r["stack"] == 0, (job, r)

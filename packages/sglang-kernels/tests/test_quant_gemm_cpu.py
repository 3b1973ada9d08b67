"""The CPU C kernel (`quant_gemm_cpu`, `dequantize_cpu`) against the torch reference, its build
cache and its fallback when no C compiler works. These are the exact fp32 paths (the int8 one is
turned off here; test_quant_gemm_cpu_int8.py tests it)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import sglang.kernels.cpu.quant_gemm as cpu_gemm
from sglang.kernels import dequantize_cpu, quant_gemm_cpu
from sglang.kernels.cpu import loader
from sglang.kernels.quant_layout import dequantize_weight, pack_quant_weight
from sglang.kernels.reference import quant_gemm_ref

GROUPS = [16, 32, 128, "K"]
ROWS = [1, 2, 3, 5, 8, 17, 64]
COLUMNS = [1, 7, 200, 1000]


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path_factory, monkeypatch):
    """One build per test session in a private cache (not the user's); fp32 activations."""
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "kernel_cache"))
    monkeypatch.setenv(cpu_gemm.INT8_ENV, "0")


def make(k: int, n: int, bits: int, group: int, seed: int = 0, scale_dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 1 << bits, (k, n), generator=g)
    scales = ((torch.rand(k // group, n, generator=g) + 0.5) * (2.0 / (1 << bits)) * k**-0.5)
    # Zeros anywhere in the range, fractional too (the layout's zeros are floats).
    zeros = torch.rand(k // group, n, generator=g) * (1 << bits)
    return pack_quant_weight(q, bits), scales.to(scale_dtype), zeros.to(scale_dtype)


def exact(x, qweight, scales, zeros, bits, group):
    """x @ w in fp64, w dequantized by the reference."""
    return x.double() @ dequantize_weight(qweight, scales, zeros, bits, group).double()


def test_the_kernel_builds_here():
    # The fallback must not hide a broken build on a machine with a compiler (CI has gcc).
    assert loader.load_library() is not None


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("m", ROWS)
def test_matches_reference(bits, group, m):
    k = 256
    group = k if group == "K" else group
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    for n in COLUMNS:  # 1 and 7: only the scalar tail; 200, 1000: vectors and a tail
        qweight, scales, zeros = make(k, n, bits, group, seed=n)
        got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group)
        assert got.shape == (m, n) and got.dtype == torch.float32
        want = exact(x, qweight, scales, zeros, bits, group)
        torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(got, quant_gemm_ref(x, qweight, scales, zeros, bits, group),
                                   atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("small_m", [0, 64])
@pytest.mark.parametrize("m", [1, 9, 20])
def test_both_paths_at_any_row_count(monkeypatch, small_m, m):
    # Forcing the threshold runs the fused kernel (in blocks of 8 rows) and the dequantize + mm
    # path on the same rows; a small scratch makes the mm path take several column chunks.
    monkeypatch.setattr(cpu_gemm, "SMALL_M", small_m)
    monkeypatch.setattr(cpu_gemm, "SCRATCH_BYTES", 64 * 4 * 100)
    k, n, bits, group = 64 * 4, 333, 4, 32
    qweight, scales, zeros = make(k, n, bits, group)
    x = torch.randn(m, k)
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group)
    torch.testing.assert_close(got.double(), exact(x, qweight, scales, zeros, bits, group),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.skipif(cpu_gemm.blas_sgemm() is None, reason="torch has no MKL sgemm to call")
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [17, 64, 300])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_mm_path_per_thread_sgemm_is_bitwise_torch_mm(scale_dtype, bits, m, threads,
                                                       monkeypatch):
    # The "mm" path through sgl_quant_gemm_mm (each thread its own columns, a one-thread MKL
    # sgemm, a few chunks each) against torch.mm on the whole dequantized weight, bit for bit.
    # Column counts with a partial last vector, and a scratch small enough for several chunks
    # per thread. (The torch.mm chunks it replaces gave these bits at 1 and 2 threads, not at
    # 3 on a 2-core machine, where MKL's own split of a chunk changed them.)
    monkeypatch.setattr(cpu_gemm, "SCRATCH_BYTES", 4 * 256 * 96)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for k, n, group in ((256, 1000, 32), (256, 7, 64), (512, 333, 128), (128, 16, 128)):
            qweight, scales, zeros = make(k, n, bits, group, seed=n, scale_dtype=scale_dtype)
            x = torch.randn(m, k, generator=torch.Generator().manual_seed(m + n))
            got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="mm")
            want = torch.mm(x, dequantize_cpu(qweight, scales, zeros, bits, group))
            assert torch.equal(got, want), (k, n, group)
    finally:
        torch.set_num_threads(before)


def test_mm_path_without_mkl_takes_torch_mm_chunks(monkeypatch):
    # Where torch has no MKL sgemm to hand over: dequantize + torch.mm per chunk.
    monkeypatch.setattr(cpu_gemm, "blas_sgemm", lambda: None)
    monkeypatch.setattr(cpu_gemm, "SCRATCH_BYTES", 4 * 256 * 96)
    k, n, bits, group = 256, 1000, 4, 32
    qweight, scales, zeros = make(k, n, bits, group)
    x = torch.randn(40, k)
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="mm")
    torch.testing.assert_close(got.double(), exact(x, qweight, scales, zeros, bits, group),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [2, 40])
def test_half_activations_and_scales(dtype, m):
    # x and scales in fp16/bf16 (the C code reads 16-bit scales directly); fp32 inside.
    k, n, bits, group = 128, 72, 4, 32
    qweight, scales, zeros = make(k, n, bits, group, scale_dtype=dtype)
    x = torch.randn(m, k).to(dtype)
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group)
    assert got.dtype == dtype
    want = exact(x, qweight, scales, zeros, bits, group).to(dtype)
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)


def test_fp16_scales_with_fp32_activations():
    k, n, bits, group = 128, 40, 8, 16
    qweight, scales, zeros = make(k, n, bits, group, scale_dtype=torch.float16)
    x = torch.randn(3, k)
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group)
    torch.testing.assert_close(got.double(), exact(x, qweight, scales, zeros, bits, group),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dequantize_is_bitwise_the_reference(bits, group, dtype):
    # (float(q) - z) * s: one rounding per operation in both, no fused multiply-add to differ.
    k, n = 128, 203
    group = k if group == "K" else group
    qweight, scales, zeros = make(k, n, bits, group, scale_dtype=dtype)
    want = dequantize_weight(qweight, scales, zeros, bits, group)
    assert torch.equal(dequantize_cpu(qweight, scales, zeros, bits, group), want)
    got = dequantize_cpu(qweight, scales, zeros, bits, group, n_start=37, n_len=100)
    assert got.shape == (k, 100) and torch.equal(got, want[:, 37:137])


def test_zero_rows_and_errors():
    qweight, scales, zeros = make(64, 16, 4, 32)
    assert quant_gemm_cpu(torch.zeros(0, 64), qweight, scales, zeros, 4, 32).shape == (0, 16)
    with pytest.raises(ValueError, match="group_size"):
        quant_gemm_cpu(torch.zeros(2, 64), qweight, scales, zeros, 4, 48)
    with pytest.raises(ValueError, match="packed rows"):
        quant_gemm_cpu(torch.zeros(2, 128), qweight, scales, zeros, 4, 32)
    with pytest.raises(ValueError, match="outside"):
        dequantize_cpu(qweight, scales, zeros, 4, 32, n_start=10, n_len=7)
    with pytest.raises(ValueError, match="bits"):
        dequantize_cpu(qweight, scales, zeros, 3, 32)


# The build tests check caching and the atomic rename, not the code: unoptimised, the library
# compiles in ~2 s instead of ~35 s.
QUICK_FLAGS = tuple(tuple("-O0" if f == "-O3" else f for f in flags) for flags in loader.FLAG_SETS)


def test_build_is_cached(tmp_path, monkeypatch):
    # A fresh cache compiles once; a new process (simulated by forgetting the loaded library)
    # finds the file and does not compile again.
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(loader, "FLAG_SETS", QUICK_FLAGS)
    calls = []
    real = loader.compile_library
    monkeypatch.setattr(loader, "compile_library", lambda *a: (calls.append(a), real(*a)))
    loader.reset()
    try:
        assert loader.load_library() is not None and len(calls) == 1
        built = list(tmp_path.glob("quant_gemm_*.so"))
        assert len(built) == 1 and not list(tmp_path.glob("*.tmp"))  # renamed into place
        loader.reset()
        assert loader.load_library() is not None and len(calls) == 1
    finally:
        loader.reset()


@pytest.mark.slow
def test_two_processes_building_at_once(tmp_path):
    # Both compile into the same empty cache at the same time; each loads a whole library (the
    # temporary file is renamed into place) and no temporary file is left behind.
    code = ("from sglang.kernels.cpu import loader; "
            f"loader.FLAG_SETS = {QUICK_FLAGS!r}; "
            "assert loader.load_library() is not None")
    env = {**os.environ, loader.CACHE_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert len(list(tmp_path.glob("quant_gemm_*.so"))) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_no_compiler_falls_back_to_the_reference_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    loader.reset()
    try:
        qweight, scales, zeros = make(128, 40, 4, 32)
        x = torch.randn(3, 128)
        with pytest.warns(RuntimeWarning, match="no-such-cc") as record:
            got = quant_gemm_cpu(x, qweight, scales, zeros, 4, 32)
        assert len(record) == 1
        torch.testing.assert_close(got, quant_gemm_ref(x, qweight, scales, zeros, 4, 32))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a second warning would raise
            again = quant_gemm_cpu(x, qweight, scales, zeros, 4, 32)
            w = dequantize_cpu(qweight, scales, zeros, 4, 32, n_start=5, n_len=9)
        assert torch.equal(again, got)
        assert torch.equal(w, dequantize_weight(qweight, scales, zeros, 4, 32)[:, 5:14])
        assert not list(tmp_path.glob("*.so"))
    finally:
        loader.reset()


def test_failed_build_falls_back(tmp_path, monkeypatch):
    # A compiler that exists but fails (here: `false`) gives the same fallback.
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("CC", "false")
    loader.reset()
    try:
        with pytest.warns(RuntimeWarning, match="could not build"):
            assert loader.load_library() is None
    finally:
        loader.reset()


def test_exported_from_the_package():
    import sglang.kernels

    assert sglang.kernels.quant_gemm_cpu is quant_gemm_cpu
    assert sglang.kernels.dequantize_cpu is dequantize_cpu

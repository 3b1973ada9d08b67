"""`quant_gemm` on the CPU: the C kernels of ``quant_gemm.c`` / ``quant_gemm_int8.c`` called
through ctypes. Three paths (`PATHS`), chosen per call by the row count M:

- ``int8`` (opt-in, from `INT8_MIN_M` rows, where the CPU has AVX-512 VNNI or AVX2): x is
  quantized per block of 32 k (or per group, when groups are smaller) to int8 with an fp32 scale
  and multiplied with integer dot products (VNNI's vpdpbusd, else AVX2's vpmaddubsw/vpmaddwd:
  the same integers and fp32 operations, so the same bits on either); the result differs from the float product by the
  activations' rounding (docs/quant_kernels.md gives the tolerance), and so depends on how many
  rows share the call. ``int8=True`` (or ``SGLANG_CPU_INT8_GEMM=1``) turns it on; by default
  the exact fp32 paths below run at every M.
- ``fused`` (up to `SMALL_M` rows otherwise): fp32 dot products that dequantize inside the
  loop, streaming the packed weight once per block of 8 rows.
- ``mm`` (more rows otherwise): chunks of columns dequantized into a bounded fp32 scratch
  (`SCRATCH_BYTES`, reused per thread, never the whole weight) and multiplied with torch.mm's
  sgemm. Where torch's MKL is found (`blas_sgemm`), each thread dequantizes and multiplies its
  own columns with a one-thread sgemm (``sgl_quant_gemm_mm``); else dequantize and torch.mm
  chunk by chunk, on all threads. Both give the same bits.

Without a working C compiler every path falls back to the torch reference (one warning).
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import torch

from sglang.kernels.cpu.loader import load_library
from sglang.kernels.quant_layout import check_quant_args, dequantize_weight
from sglang.kernels.reference import quant_gemm_ref

# Rows up to which the fused kernel runs, in blocks of MAX_FUSED_M rows (the most one call of the
# C kernel accepts); measured with benchmarks/quant_gemm_cpu_micro.py (docs/quant_kernels.md).
SMALL_M = 16
MAX_FUSED_M = 8
SCRATCH_BYTES = 1 << 20  # fp32 dequantized chunk of the large-M path: L2-sized
PATHS = ("auto", "int8", "fused", "mm")
# Rows from which "auto" takes the int8 path (measured: docs/quant_kernels.md).
INT8_MIN_M = 17
INT8_ENV = "SGLANG_CPU_INT8_GEMM"  # "1": the int8 path where `int8` is not given
INT8_BLOCK = 32  # k per activation scale inside larger groups
_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_INT8_ISAS = {2: "avx512_vnni", 1: "avx2"}  # sgl_int8_gemm_available()
_scratch = threading.local()


@functools.cache
def blas_sgemm() -> tuple[int, int] | None:
    """(sgemm_, MKL_Set_Num_Threads_Local) addresses in torch's own MKL (libtorch_cpu), the
    sgemm torch.mm runs for fp32 on the CPU; None where torch has no MKL (another BLAS: the
    "mm" path then calls torch.mm). The second address may be 0 (not MKL: no thread setting)."""
    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        sgemm = ctypes.cast(lib.sgemm_, ctypes.c_void_p).value
        # The C interface (by value); the lower-case name is the Fortran one here.
        local = ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None
    return (sgemm, local or 0) if sgemm else None


def _check_cpu(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if not t.is_cpu:
            raise ValueError(f"quant_gemm_cpu: tensors must be on the CPU, got {t.device}")


def _params(scales: torch.Tensor, zeros: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Scales and zeros contiguous, in a dtype the C code reads (fp32, fp16 or bf16)."""
    if scales.dtype not in _DTYPE_CODE:
        scales, zeros = scales.float(), zeros.float()
    return scales.contiguous(), zeros.contiguous(), _DTYPE_CODE[scales.dtype]


def _scratch_buffer(numel: int) -> torch.Tensor:
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.numel() < numel:
        buf = _scratch.buf = torch.empty(numel, dtype=torch.float32)
    return buf[:numel]


def dequantize_cpu(
    qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int,
    group_size: int, n_start: int = 0, n_len: int | None = None,
    *, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Columns ``[n_start, n_start + n_len)`` of the fp32 weight w [K, N]: [K, n_len], bit for
    bit `dequantize_weight`'s. `out` (fp32, contiguous, [K, n_len]) receives it if given."""
    k = qweight.shape[0] * (32 // bits) if bits in (4, 8) else 0
    check_quant_args(torch.empty(0, k), qweight, scales.float(), zeros.float(), bits, group_size)
    n = qweight.shape[1]
    n_len = n - n_start if n_len is None else n_len
    if n_start < 0 or n_len < 0 or n_start + n_len > n:
        raise ValueError(f"dequantize_cpu: columns [{n_start}, {n_start + n_len}) lie outside "
                         f"N={n}")
    _check_cpu(qweight, scales, zeros)
    if out is None:
        out = torch.empty(k, n_len, dtype=torch.float32)
    elif out.dtype != torch.float32 or tuple(out.shape) != (k, n_len) or not out.is_contiguous():
        raise ValueError(f"dequantize_cpu: out must be contiguous fp32 [{k}, {n_len}]")
    lib = load_library()
    if lib is None:
        cols = slice(n_start, n_start + n_len)
        out.copy_(dequantize_weight(qweight[:, cols], scales[:, cols], zeros[:, cols], bits,
                                    group_size))
        return out
    scales, zeros, code = _params(scales, zeros)
    _dequantize_into(lib, qweight.contiguous(), scales, zeros, code, bits, group_size, n_start,
                     out, torch.get_num_threads())
    return out


def _dequantize_into(lib, qweight, scales, zeros, code, bits, group_size, n_start, out,
                     threads) -> None:
    """The C dequantization of out.shape[1] columns from n_start (arguments already checked)."""
    k, width = out.shape
    rc = lib.sgl_dequantize(qweight.data_ptr(), scales.data_ptr(), zeros.data_ptr(), code, k,
                            qweight.shape[1], bits, group_size, n_start, width, out.data_ptr(),
                            threads)
    if rc:
        raise RuntimeError("dequantize_cpu: the C kernel rejected its arguments")


def activation_block(group_size: int) -> int:
    """k per int8 activation scale: `INT8_BLOCK` inside groups it divides, else the group."""
    return INT8_BLOCK if group_size % INT8_BLOCK == 0 else group_size


def int8_isa() -> str | None:
    """The int8 kernel this build has: "avx512_vnni", "avx2", or None (no C kernels, or a CPU
    with neither). The library is compiled with -march=native, so its build says what this CPU
    has."""
    lib = load_library()
    return None if lib is None else _INT8_ISAS.get(lib.sgl_int8_gemm_available())


def int8_supported() -> bool:
    """Whether the int8 path runs here: the C kernels built, with AVX-512 VNNI or AVX2."""
    return int8_isa() is not None


def int8_enabled(int8: bool | None = None) -> bool:
    """Whether "auto" may take the int8 path: asked for (`int8`, else `INT8_ENV` = "1") and
    supported."""
    wanted = os.environ.get(INT8_ENV, "0") == "1" if int8 is None else int8
    return wanted and int8_supported()


def choose_path(m: int, int8: bool | None = None) -> str:
    """The path "auto" takes for m rows."""
    if m >= INT8_MIN_M and int8_enabled(int8):
        return "int8"
    return "fused" if m <= SMALL_M else "mm"


def int8_tile(m: int, k: int, group_size: int) -> tuple[int, int, int]:
    """(rows, 16-column vectors, groups per pass over the columns) of the int8 kernel for m
    rows. VNNI register tiles: 1-2 rows x 4 vectors, 4 x 2, 8 x 1 (at most 16 int32 and 16 fp32
    accumulators of the 32 zmm registers). AVX2 (Zen 2, one thread): 1 x 2 at m = 1, 4 x 1
    below 8 rows, else 8 x 4 (1.1-1.2x faster than 8 x 1 from 17 rows, though its int32 sums
    spill from the 16 ymm registers: each weight row is unpacked once for 8 rows). Up to 4 rows
    the kernel passes over one group at a time, streaming the weight along its rows (the LM head
    at M = 1: 2.2x faster than one pass with the weights cold); above, one pass, reusing each
    panel of weights for every row tile. Measured with benchmarks/quant_gemm_cpu_micro.py
    (docs/quant_kernels.md). Every choice gives the same bits."""
    if int8_isa() == "avx2":
        rows, vectors = (1, 2) if m == 1 else (4, 1) if m < 8 else (8, 4)
    else:
        rows, vectors = (m, 4) if m <= 2 else (4, 2) if m < 8 else (8, 1)
    return rows, vectors, 1 if m <= 4 else k // group_size


def quantize_activations_cpu(x: torch.Tensor, bits: int, group_size: int
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The int8 path's activations (the C code, exposed for tests): x [M, K] -> (xq int8
    [M, K], d fp32 [M, K // block], xz fp32 [M, K // group_size]); per block of
    `activation_block(group_size)` k, d = max|x| / 127 and xq = round(x * (127 / max|x|)),
    for 4-bit weights in the kernel's order (even k of each 8, then odd k); xz[m, g] sums
    d * sum(xq) over the group's blocks."""
    m, k = x.shape
    block = activation_block(group_size)
    lib = load_library()
    if lib is None:
        raise RuntimeError("quantize_activations_cpu: the C kernels did not build")
    xf = x.float().contiguous()
    xq = torch.empty(m, k, dtype=torch.int8)
    d = torch.empty(m, k // block, dtype=torch.float32)
    xz = torch.empty(m, k // group_size, dtype=torch.float32)
    rc = lib.sgl_quantize_rows(xf.data_ptr(), m, k, block, group_size, bits, xq.data_ptr(),
                               d.data_ptr(), xz.data_ptr(), torch.get_num_threads())
    if rc:
        raise ValueError(f"quantize_activations_cpu: unsupported K={k}, bits={bits}, "
                         f"group_size={group_size}")
    return xq, d, xz


def quant_gemm_cpu(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
    bits: int, group_size: int, *, path: str = "auto", int8: bool | None = None,
) -> torch.Tensor:
    """``x @ w`` with ``w[k, n] = (q[k, n] - zeros[g, n]) * scales[g, n]``, g = k // group_size,
    on the CPU; the arguments are `quant_gemm`'s (x [M, K] fp16/bf16/fp32, qweight int32
    [K * bits // 32, N], scales/zeros [K // group_size, N]; bits 4 or 8; group_size 16, 32, 64,
    128 or K). Computed in fp32 (the int8 path: int8 activations), returned in x's dtype.
    `path` forces one of `PATHS` ("int8" raises ValueError where it is not supported); with
    "auto", `int8` (None: `INT8_ENV`) lets batches of `INT8_MIN_M` rows or more take int8."""
    m, n, k = check_quant_args(x, qweight, scales, zeros, bits, group_size)
    _check_cpu(x, qweight, scales, zeros)
    if path not in PATHS:
        raise ValueError(f"quant_gemm_cpu: path must be one of {PATHS}, got {path!r}")
    if path == "int8" and not int8_supported():
        raise ValueError("quant_gemm_cpu: the int8 path needs the C kernels built with AVX2 or "
                         "AVX-512 VNNI, which this CPU or build lacks")
    if m == 0:
        return x.new_zeros(0, n)
    lib = load_library()
    if lib is None:
        return _reference_by_columns(x, qweight, scales, zeros, bits, group_size)
    xf = x.float().contiguous()
    qweight = qweight.contiguous()
    scales, zeros, code = _params(scales, zeros)
    threads = torch.get_num_threads()
    out = torch.empty(m, n, dtype=torch.float32)
    path = choose_path(m, int8) if path == "auto" else path
    if path == "int8":
        rows, vectors, chunk = int8_tile(m, k, group_size)
        rc = lib.sgl_quant_gemm_i8(xf.data_ptr(), m, k, qweight.data_ptr(), scales.data_ptr(),
                                   zeros.data_ptr(), code, n, bits, group_size,
                                   activation_block(group_size), out.data_ptr(), rows, vectors,
                                   chunk, threads)
        if rc:
            raise RuntimeError(f"quant_gemm_cpu: the int8 kernel failed (code {rc})")
        return _in_dtype(out, x.dtype)
    if path == "fused":
        # Blocks of up to MAX_FUSED_M rows, each streaming the packed weight once.
        x_ptr, out_ptr = xf.data_ptr(), out.data_ptr()  # fp32 rows of k and n values
        for r0 in range(0, m, MAX_FUSED_M):
            rows = min(MAX_FUSED_M, m - r0)
            rc = lib.sgl_quant_gemm(x_ptr + 4 * r0 * k, rows, k, qweight.data_ptr(),
                                    scales.data_ptr(), zeros.data_ptr(), code, n, bits,
                                    group_size, out_ptr + 4 * r0 * n, threads)
            if rc:
                raise RuntimeError("quant_gemm_cpu: the C kernel rejected its arguments")
        return _in_dtype(out, x.dtype)
    # Chunks of whole 16-column vectors sized to SCRATCH_BYTES, but at least 64 columns wide so
    # that a deep K (4 * K * 64 bytes past the budget) still gives torch.mm a useful width.
    chunk = max(64, SCRATCH_BYTES // (4 * k) // 16 * 16)
    blas = blas_sgemm()
    if blas is not None:
        rc = lib.sgl_quant_gemm_mm(xf.data_ptr(), m, k, qweight.data_ptr(), scales.data_ptr(),
                                   zeros.data_ptr(), code, n, bits, group_size, chunk,
                                   out.data_ptr(), blas[0], blas[1], threads)
        if rc:
            raise RuntimeError("quant_gemm_cpu: the C kernel rejected its arguments")
        return _in_dtype(out, x.dtype)
    scratch = _scratch_buffer(k * min(chunk, n))
    for n0 in range(0, n, chunk):
        width = min(chunk, n - n0)
        w = scratch[:k * width].view(k, width)
        _dequantize_into(lib, qweight, scales, zeros, code, bits, group_size, n0, w, threads)
        torch.mm(xf, w, out=out[:, n0:n0 + width])
    return _in_dtype(out, x.dtype)


def _in_dtype(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The fp32 result in `dtype`; itself when that is fp32 (Tensor.to costs about 2 us even
    then, a tenth of a one-row call at SmolLM2's small shapes on Zen 2)."""
    return out if dtype == torch.float32 else out.to(dtype)


def _reference_by_columns(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                          zeros: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """The torch reference (no compiler) over slices of the output columns, so that a large
    weight (a packed LM head: 49152 x 576) never exists in float all at once."""
    n, k = qweight.shape[1], x.shape[-1]
    step = max(256, SCRATCH_BYTES // (4 * k) // 16 * 16)
    return torch.cat([
        quant_gemm_ref(x, qweight[:, i:i + step], scales[:, i:i + step], zeros[:, i:i + step],
                       bits, group_size)
        for i in range(0, n, step)
    ], dim=1)

"""`quant_gemm` on the CPU: the C kernels of ``quant_gemm.c`` called through ctypes.

- Up to `SMALL_M` rows (decode, small batches): the fused kernel, which streams the packed
  weight once per block of 8 rows and dequantizes inside the dot product (less memory traffic
  than an fp32 matmul).
- More rows: chunks of columns are dequantized into a bounded fp32 scratch (`SCRATCH_BYTES`,
  reused per thread, never the whole weight) and multiplied with torch.mm (oneDNN/BLAS), which is
  compute-bound there and better blocked than a hand-written kernel.

Without a working C compiler both fall back to the torch reference (one warning).
"""

from __future__ import annotations

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
_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_scratch = threading.local()


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


def quant_gemm_cpu(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
    bits: int, group_size: int,
) -> torch.Tensor:
    """``x @ w`` with ``w[k, n] = (q[k, n] - zeros[g, n]) * scales[g, n]``, g = k // group_size,
    on the CPU; the arguments are `quant_gemm`'s (x [M, K] fp16/bf16/fp32, qweight int32
    [K * bits // 32, N], scales/zeros [K // group_size, N]; bits 4 or 8; group_size 16, 32, 64,
    128 or K). Computed in fp32, returned in x's dtype."""
    m, n, k = check_quant_args(x, qweight, scales, zeros, bits, group_size)
    _check_cpu(x, qweight, scales, zeros)
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
    if m <= SMALL_M:
        # Blocks of up to MAX_FUSED_M rows, each streaming the packed weight once.
        x_ptr, out_ptr = xf.data_ptr(), out.data_ptr()  # fp32 rows of k and n values
        for r0 in range(0, m, MAX_FUSED_M):
            rows = min(MAX_FUSED_M, m - r0)
            rc = lib.sgl_quant_gemm(x_ptr + 4 * r0 * k, rows, k, qweight.data_ptr(),
                                    scales.data_ptr(), zeros.data_ptr(), code, n, bits,
                                    group_size, out_ptr + 4 * r0 * n, threads)
            if rc:
                raise RuntimeError("quant_gemm_cpu: the C kernel rejected its arguments")
        return out.to(x.dtype)
    # Chunks of whole 16-column vectors sized to SCRATCH_BYTES, but at least 64 columns wide so
    # that a deep K (4 * K * 64 bytes past the budget) still gives torch.mm a useful width.
    chunk = max(64, SCRATCH_BYTES // (4 * k) // 16 * 16)
    scratch = _scratch_buffer(k * min(chunk, n))
    for n0 in range(0, n, chunk):
        width = min(chunk, n - n0)
        w = scratch[:k * width].view(k, width)
        _dequantize_into(lib, qweight, scales, zeros, code, bits, group_size, n0, w, threads)
        torch.mm(xf, w, out=out[:, n0:n0 + width])
    return out.to(x.dtype)


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

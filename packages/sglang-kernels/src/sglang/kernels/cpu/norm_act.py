"""RMSNorm (+ residual add) and SiLU-and-mul for float32 rows on the CPU: the C kernels of
``norm_act.c`` through ctypes, one pass per row instead of torch's chain of elementwise ops.

Both return None where they do not apply (no compiler, not float32 on the CPU, rows not
contiguous along the features); the caller then runs its torch path.
"""

from __future__ import annotations

import torch

from sglang.kernels.cpu.loader import load_library


def _rows(t: torch.Tensor) -> bool:
    """A 2-D float32 CPU tensor whose rows are contiguous (a row stride of its own is fine)."""
    return t.dim() == 2 and t.dtype == torch.float32 and t.is_cpu and t.stride(1) == 1


def rmsnorm_cpu(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
    """norm(x) * weight, or with `residual` (norm(x + residual) * weight, x + residual), like
    `sglang.kernels.rmsnorm`; x [..., N] float32. None where the kernel does not apply."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    r2 = None if residual is None else residual.reshape(-1, shape[-1])
    if not (_rows(x2) and weight.dtype == torch.float32 and weight.is_contiguous()
            and weight.shape == shape[-1:] and (r2 is None or (_rows(r2) and r2.shape == x2.shape))):
        return None
    lib = load_library()
    if lib is None:
        return None
    rows, n = x2.shape
    out = torch.empty(rows, n, dtype=torch.float32)
    summed = torch.empty(rows, n, dtype=torch.float32) if r2 is not None else None
    rc = lib.sgl_rmsnorm(
        x2.data_ptr(), x2.stride(0), 0 if r2 is None else r2.data_ptr(),
        0 if r2 is None else r2.stride(0), weight.data_ptr(), rows, n, float(eps),
        out.data_ptr(), 0 if summed is None else summed.data_ptr(), torch.get_num_threads())
    if rc:
        raise RuntimeError("rmsnorm_cpu: the C kernel rejected its arguments")
    if summed is None:
        return out.view(shape)
    return out.view(shape), summed.view(shape)


def silu_and_mul_cpu(x: torch.Tensor) -> torch.Tensor | None:
    """silu(gate) * up for x [..., 2N] = [gate | up], float32; None where it does not apply."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if not (_rows(x2) and shape[-1] % 2 == 0):
        return None
    lib = load_library()
    if lib is None:
        return None
    rows, n = x2.shape[0], shape[-1] // 2
    out = torch.empty(rows, n, dtype=torch.float32)
    if lib.sgl_silu_and_mul(x2.data_ptr(), x2.stride(0), rows, n, out.data_ptr(),
                            torch.get_num_threads()):
        raise RuntimeError("silu_and_mul_cpu: the C kernel rejected its arguments")
    return out.view(*shape[:-1], n)

"""Builds `quant_gemm`'s kernel (and the interleaved tensor-core kernel) for Hopper (sm90) without a GPU, with the ptxas that the triton
wheel ships, and reports each build's local-memory stack (spills). Runs in a child process:
Triton's interpreter (TRITON_INTERPRET=1, set for the CPU tests) cannot compile.

    python quant_gemm_sm90.py '[{"config": [16, 64, 128, 1, 4, 4], "bits": 4, ...}]'
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def available() -> bool:
    return (BIN / "ptxas").exists() and (BIN / "cuobjdump").exists()


def build(config: list[int], bits: int, one_group: bool, dtype: str) -> bytes:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sglang.kernels.quant_matmul import QuantGemmConfig, _quant_gemm_kernel, _quant_gemv_kernel

    cfg = QuantGemmConfig(*config)
    constants = dict(BITS=bits, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k)
    kernel = _quant_gemv_kernel
    if cfg.use_dot:
        kernel = _quant_gemm_kernel
        constants.update(ONE_GROUP_PER_TILE=one_group, PRECISION="tf32")
    signature = {}
    for name in kernel.arg_names:
        if name in constants:
            signature[name] = "constexpr"
        elif name == "q_ptr":
            signature[name] = "*i32"
        elif name.endswith("_ptr"):
            signature[name] = f"*{dtype}"
        else:
            signature[name] = "i32"
    compiled = triton.compile(
        ASTSource(kernel, signature, constants), target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages))
    return compiled.asm["cubin"]


def build_mma(block_n: int, num_warps: int, num_stages: int, dtype: str,
              integer_zeros: bool = True) -> bytes:
    """`quant_interleaved_mma`'s kernel (groups of 128, split-K summed in the kernel, PDL)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sglang.kernels.quant_interleaved_mma import MAGIC, _mma_kernel

    magic, base = MAGIC[getattr(torch, dtype)]
    constants = dict(GROUP=128, MAGIC_BITS=magic, BASE=base, BLOCK_M=16, BLOCK_N=block_n,
                     INTEGER_ZEROS=integer_zeros, SUM_IN_KERNEL=True, USE_PDL=True)
    short = {"bfloat16": "bf16", "float16": "fp16"}[dtype]
    signature, attrs = {}, {}
    for i, name in enumerate(_mma_kernel.arg_names):
        if name in constants:
            signature[name] = "constexpr"
            continue
        signature[name] = {"q_ptr": "*i32", "cnt_ptr": "*i32", "part_ptr": "*fp32"}.get(
            name, f"*{short}" if name.endswith("_ptr") else "i32")
        if name.endswith("_ptr") or name.startswith("stride") or name in ("N", "K"):
            attrs[(i,)] = [["tt.divisibility", 16]]  # as the launcher specializes them
    compiled = triton.compile(
        ASTSource(_mma_kernel, signature, constants, attrs), target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=num_warps, num_stages=num_stages))
    return compiled.asm["cubin"]


def sass(cubin: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        return subprocess.run([str(BIN / "cuobjdump"), "-sass", str(path)],
                              capture_output=True, text=True, check=True).stdout


def stack_bytes(cubin: bytes) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        usage = subprocess.run([str(BIN / "cuobjdump"), "--dump-resource-usage", str(path)],
                               capture_output=True, text=True, check=True).stdout
    fields = dict(f.split(":", 1) for f in usage.split() if f.split(":", 1)[0] == "STACK")
    return int(fields["STACK"])


def main() -> None:
    results = []
    for job in json.loads(sys.argv[1]):
        if job.get("kernel") == "mma":
            cubin = build_mma(job["block_n"], job["num_warps"], job["num_stages"], job["dtype"],
                              job["integer_zeros"])
            code = sass(cubin)
            results.append({"elf": cubin[:4] == b"\x7fELF", "stack": stack_bytes(cubin),
                            "wgmma": "HGMMA" in code, "mma_sync": "HMMA" in code})
            continue
        cubin = build(job["config"], job["bits"], job["one_group"], job["dtype"])
        results.append({"elf": cubin[:4] == b"\x7fELF", "stack": stack_bytes(cubin)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()

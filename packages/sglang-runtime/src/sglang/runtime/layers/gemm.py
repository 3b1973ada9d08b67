"""The matmul behind every linear layer and the LM head, with a CPU and a CUDA fast path.

On CUDA, a decode step of one request reads each weight once for a single row; the Triton GEMV
of sglang-kernels can stream the weights closer to the memory bandwidth than cuBLAS there (1.14-1.23x
per Llama-3-8B layer on an H100, benchmarks/gemv_micro.py), but which wins depends on the GPU
(on the H200 cuBLAS won with the H100's launch shapes). `prepare_weights` gives each CUDA weight
a plan for 1..`gemv_max_batch` rows: the GEMV launch measured fastest on this device for the
weight's shape, or cuBLAS where that was faster (`skinny_gemm.tuned_plan`; the default launch
where nothing was measured); larger inputs, prefill included, go to cuBLAS.

On CPU in float32, oneDNN with weights reordered once into its blocked layout beats the default
GEMM on wide matrices (gate/up, the LM head) at every batch size we measured — up to 2x on the
LM head at small batches, where the default path is memory-bound — while it loses on small
square ones because of the per-call layout conversions. `pack_cpu_weights` therefore packs only
matrices of at least `PACK_MIN_ELEMENTS` elements, after the weights are loaded; `linear` uses a
packed copy when its weight has one. The dense weight stays (the embedding may share it).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

import sglang.kernels as kernels

logger = logging.getLogger("sglang.runtime")

PACK_MIN_ELEMENTS = 1 << 20
_PACKED_ATTR = "_sgl_mkldnn_packed"
_GEMV_PLAN_ATTR = "_sgl_gemv_plan"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    if x.is_cuda:
        return _cuda_linear(x, weight, bias)
    packed = getattr(weight, _PACKED_ATTR, None)
    if packed is None or x.dtype != torch.float32 or x.device.type != "cpu":
        return F.linear(x, weight, bias)
    shape = x.shape
    y = torch._C._nn.mkldnn_linear(x.reshape(-1, shape[-1]).to_mkldnn(), packed, None).to_dense()
    y = y.view(*shape[:-1], y.shape[-1])
    return y if bias is None else y + bias


def _cuda_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    k = x.shape[-1]
    rows = x.numel() // k if k else 0
    plan = getattr(weight, _GEMV_PLAN_ATTR, ())
    config = plan[rows - 1] if 0 < rows <= len(plan) else None
    if config is not None and x.dtype == weight.dtype:
        x2 = x.reshape(rows, k)
        if x2.stride(-1) == 1:
            y = kernels.gemv(x2, weight, bias, config=config)
            return y.view(*x.shape[:-1], y.shape[-1])
    return F.linear(x, weight, bias)


def _model_weights(model: nn.Module) -> list[torch.Tensor]:
    """The matrices linear layers and the LM head multiply by (a tied LM head's is the
    embedding table)."""
    from sglang.runtime.layers.linear import Linear

    # A quantized Linear has no dense weight (its method runs its own matmul).
    weights = [m.weight for m in model.modules() if isinstance(m, Linear) and m.weight is not None]
    lm_head = getattr(model, "lm_head", None)
    if lm_head is not None and getattr(lm_head, "weight", None) is not None:
        weights.append(lm_head.weight)  # a packed head (GGUF) has none
    return weights


def prepare_weights(model: nn.Module, gemv_max_batch: int = 1) -> None:
    """Per-device fast paths, after loading: oneDNN packing on CPU (`pack_cpu_weights`), and on
    CUDA the GEMV for inputs of at most `gemv_max_batch` rows (0: always cuBLAS)."""
    pack_cpu_weights(model)
    cuda = [w for w in _model_weights(model) if w.is_cuda and w.dim() == 2 and w.stride(1) == 1]
    if not cuda:
        return  # no triton import on CPU-only runs
    from sglang.kernels.skinny_gemm import MAX_ROWS, tuned_plan

    rows = min(max(gemv_max_batch, 0), MAX_ROWS)
    for w in cuda:
        setattr(w, _GEMV_PLAN_ATTR, tuned_plan(w.shape[0], w.shape[1], w.dtype, rows, w.device))


def pack_cpu_weights(model: nn.Module, min_elements: int = PACK_MIN_ELEMENTS) -> int:
    """Attach oneDNN-packed copies to the large float32 CPU matrices of `_model_weights`;
    returns how many."""
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for w in _model_weights(model):
        if (
            w.dim() == 2
            and w.device.type == "cpu"
            and w.dtype == torch.float32
            and w.numel() >= min_elements
            and not hasattr(w, _PACKED_ATTR)
        ):
            setattr(w, _PACKED_ATTR, w.detach().to_mkldnn())
            count += 1
    if count:
        logger.info("packed %d CPU weight matrices for oneDNN", count)
    return count

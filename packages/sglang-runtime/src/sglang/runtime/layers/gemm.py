"""The matmul behind every linear layer and the LM head, with a CPU fast path.

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

logger = logging.getLogger("sglang.runtime")

PACK_MIN_ELEMENTS = 1 << 20
_PACKED_ATTR = "_sgl_mkldnn_packed"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    packed = getattr(weight, _PACKED_ATTR, None)
    if packed is None or x.dtype != torch.float32 or x.device.type != "cpu":
        return F.linear(x, weight, bias)
    shape = x.shape
    y = torch._C._nn.mkldnn_linear(x.reshape(-1, shape[-1]).to_mkldnn(), packed, None).to_dense()
    y = y.view(*shape[:-1], y.shape[-1])
    return y if bias is None else y + bias


def pack_cpu_weights(model: nn.Module, min_elements: int = PACK_MIN_ELEMENTS) -> int:
    """Attach oneDNN-packed copies to the large float32 CPU matrices that linear layers and the
    LM head multiply by (a tied LM head packs the embedding table); returns how many."""
    if not torch.backends.mkldnn.is_available():
        return 0
    from sglang.runtime.layers.linear import Linear

    weights = [m.weight for m in model.modules() if isinstance(m, Linear)]
    lm_head = getattr(model, "lm_head", None)
    if lm_head is not None:
        weights.append(lm_head.weight)
    count = 0
    for w in weights:
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

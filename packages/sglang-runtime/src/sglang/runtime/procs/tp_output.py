"""Sampling under tensor parallelism: every rank samples (it has the full logits), then all
take rank 0's tokens, so floating-point or RNG differences can never make ranks diverge. The
broadcast happens on the device, so the overlapped decode's tokens stay there (no host sync)."""

from __future__ import annotations

from typing import Any

import torch

from sglang.runtime.distributed import broadcast
from sglang.runtime.scheduler.output import OutputProcessor


class TPOutputProcessor(OutputProcessor):
    def sample_on_device(self, reqs: list[Any], logits: Any, *args: Any, **kwargs: Any
                         ) -> torch.Tensor:
        ids = super().sample_on_device(reqs, logits, *args, **kwargs)
        return broadcast(ids.contiguous(), src=0)

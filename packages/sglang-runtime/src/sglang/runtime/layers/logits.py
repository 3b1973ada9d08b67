"""Selects the hidden states that need logits and applies the LM head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.executor.forward_context import ForwardBatch


class LogitsProcessor(nn.Module):
    def forward(
        self, hidden: torch.Tensor, lm_head_weight: torch.Tensor, batch: ForwardBatch
    ) -> torch.Tensor:
        """[num_tokens, hidden] -> float32 logits [num_selected, vocab].

        Selecting before the matmul matters: the LM head is the largest matmul of a prefill,
        and usually only each request's last token needs it.
        """
        if batch.logits_indices is not None:
            index = batch.logits_indices
        elif batch.num_tokens == batch.batch_size:
            index = None  # decode: every token is a request's last token
        else:
            index = batch.last_token_indices()
        selected = hidden if index is None else hidden[index]
        return F.linear(selected, lm_head_weight).float()

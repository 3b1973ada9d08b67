"""Selects the hidden states that need logits and applies the LM head (vocabulary-parallel:
each rank multiplies by its rows of the head, then the slices are gathered)."""

from __future__ import annotations

import torch
from torch import nn

from sglang.runtime.distributed import all_gather, get_tp_size
from sglang.runtime.executor.forward_context import ForwardBatch


class LogitsProcessor(nn.Module):
    def __init__(
        self, vocab_size: int | None = None, scale: float = 1.0, soft_cap: float | None = None
    ) -> None:
        """`scale` multiplies the logits (Command-R's logit_scale); `soft_cap` squashes them to
        `cap * tanh(logits / cap)` (Gemma 2's final_logit_softcapping)."""
        super().__init__()
        self.scale = scale
        self.soft_cap = soft_cap
        # Gathered rows past the vocabulary are the last rank's padding.
        self.vocab_size = vocab_size
        self.tp_size = get_tp_size()

    def forward(
        self, hidden: torch.Tensor, lm_head: nn.Module, batch: ForwardBatch
    ) -> torch.Tensor:
        """[num_tokens, hidden] -> float32 logits [num_selected, vocab]; `lm_head` is a
        vocabulary-parallel table (`project`: dense or packed).

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
        logits = lm_head.project(selected)
        if self.tp_size > 1:
            logits = all_gather(logits, dim=-1)[:, : self.vocab_size]
        logits = logits.float()
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.soft_cap:
            logits = torch.tanh(logits / self.soft_cap) * self.soft_cap
        return logits

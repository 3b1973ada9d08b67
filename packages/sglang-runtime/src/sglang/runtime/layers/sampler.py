"""Batched token sampling on the logits' device, plus log-prob helpers.

`SamplingBatch.build` turns per-request `SamplingParams` into a handful of tensors once per step
(one host-to-device copy per kind of data) and records which stages any request needs, so a
plain greedy batch costs a single argmax.

Sampling uses the exponential race (argmax of p / Exp(1) noise), which draws from p exactly
and lets each seeded request fill its own noise row from its own generator. Every seeded row
always draws exactly `V` values in vocabulary order, so its tokens depend only on its logits and
its seed, never on which other requests share the batch or where it sits in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

import sglang.kernels as kernels
from sglang.protocol.sampling_params import SAMPLING_EPS, SamplingParams

_F32_TINY = torch.finfo(torch.float32).tiny


@dataclass
class SamplingBatch:
    temperatures: torch.Tensor  # [B, 1] float32; 1.0 on greedy rows so the division is harmless
    top_ps: torch.Tensor  # [B] float32
    top_ks: torch.Tensor  # [B] int64; vocab_size where disabled
    min_ps: torch.Tensor  # [B] float32
    greedy: torch.Tensor  # [B] bool
    generators: list[torch.Generator | None]
    seeded_rows: list[int]  # non-greedy rows that sample with their own generator
    vocab_size: int
    all_greedy: bool
    need_top_p: bool
    need_top_k: bool
    need_min_p: bool
    max_top_k: int  # widest top-k among sampling rows; vocab_size if any row has it disabled
    need_global_rng: bool  # some sampling row has no generator
    # Penalties: None when no request in the batch uses that penalty.
    repetition_penalties: torch.Tensor | None = None  # [B, 1]
    frequency_penalties: torch.Tensor | None = None  # [B, 1]
    presence_penalties: torch.Tensor | None = None  # [B, 1]
    seen_mask: torch.Tensor | None = None  # [B, V] bool, token in prompt or output
    output_counts: torch.Tensor | None = None  # [B, V] float32, occurrences in output
    # (row, token) pairs masked to -inf while a request is below min_new_tokens.
    eos_block: tuple[torch.Tensor, torch.Tensor] | None = None
    # logit_bias as sparse (rows, token ids, biases): added before greedy or sampling.
    logit_bias: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def need_penalties(self) -> bool:
        return (
            self.logit_bias is not None
            or self.repetition_penalties is not None
            or self.frequency_penalties is not None
            or self.presence_penalties is not None
        )

    @classmethod
    def build(
        cls,
        params: Sequence[SamplingParams],
        generators: Sequence[torch.Generator | None],
        output_ids: Sequence[Sequence[int]],
        prompt_ids: Sequence[Sequence[int]],
        vocab_size: int,
        device: torch.device | str,
        eos_block: Sequence[Sequence[int]],
    ) -> SamplingBatch:
        """`vocab_size` must be the logits' width. `eos_block[i]` only applies while
        `len(output_ids[i]) < params[i].min_new_tokens`, so callers may pass the same EOS/stop
        ids every step. Generators must live on `device`."""
        bsz = len(params)
        if not (len(generators) == len(output_ids) == len(prompt_ids) == len(eos_block) == bsz):
            raise ValueError("SamplingBatch.build: per-request lists must all have length B")
        greedy = [p.is_greedy for p in params]
        sampling = [i for i in range(bsz) if not greedy[i]]
        top_ks = [vocab_size if p.top_k < 0 else min(p.top_k, vocab_size) for p in params]

        # One transfer for every float column: temp, top_p, min_p, rep, freq, pres.
        cols = [
            [1.0 if g else p.temperature for p, g in zip(params, greedy)],
            [p.top_p for p in params],
            [p.min_p for p in params],
            [p.repetition_penalty for p in params],
            [p.frequency_penalty for p in params],
            [p.presence_penalty for p in params],
        ]
        floats = torch.tensor(cols, dtype=torch.float32).to(device, non_blocking=True)
        max_top_k = max((top_ks[i] for i in sampling), default=vocab_size)

        batch = cls(
            temperatures=floats[0].unsqueeze(1),
            top_ps=floats[1],
            top_ks=torch.tensor(top_ks, dtype=torch.int64).to(device, non_blocking=True),
            min_ps=floats[2],
            greedy=torch.tensor(greedy, dtype=torch.bool).to(device, non_blocking=True),
            generators=list(generators),
            seeded_rows=[i for i in sampling if generators[i] is not None],
            vocab_size=vocab_size,
            all_greedy=not sampling,
            need_top_p=any(params[i].top_p < 1.0 for i in sampling),
            need_top_k=max_top_k < vocab_size,
            need_min_p=any(params[i].min_p > 0.0 for i in sampling),
            max_top_k=max_top_k,
            need_global_rng=any(generators[i] is None for i in sampling),
        )

        use_rep = any(p.repetition_penalty != 1.0 for p in params)
        use_freq = any(p.frequency_penalty != 0.0 for p in params)
        use_pres = any(p.presence_penalty != 0.0 for p in params)
        if use_rep:
            batch.repetition_penalties = floats[3].unsqueeze(1)
            seqs = [list(prompt_ids[i]) + list(output_ids[i]) for i in range(bsz)]
            rows, ids = _flat_pairs(seqs, vocab_size, device)
            seen = torch.zeros(bsz, vocab_size, dtype=torch.bool, device=device)
            seen[rows, ids] = True
            batch.seen_mask = seen
        if use_freq or use_pres:
            batch.frequency_penalties = floats[4].unsqueeze(1) if use_freq else None
            batch.presence_penalties = floats[5].unsqueeze(1) if use_pres else None
            rows, ids = _flat_pairs(output_ids, vocab_size, device)
            counts = torch.zeros(bsz, vocab_size, dtype=torch.float32, device=device)
            counts.index_put_((rows, ids), torch.ones_like(ids, dtype=torch.float32), True)
            batch.output_counts = counts

        blocked = [
            list(eos_block[i]) if len(output_ids[i]) < params[i].min_new_tokens else []
            for i in range(bsz)
        ]
        if any(blocked):
            batch.eos_block = _flat_pairs(blocked, vocab_size, device)
        batch.logit_bias = _bias_triples(params, vocab_size, device)
        return batch


def reads_no_history(params: SamplingParams, generated: int) -> bool:
    """Whether sampling this row ignores its output so far: no repetition, frequency or
    presence penalty, and min_new_tokens (`generated`: output tokens so far) already reached."""
    return (
        params.repetition_penalty == 1.0
        and params.frequency_penalty == 0.0
        and params.presence_penalty == 0.0
        and generated >= params.min_new_tokens
    )


def argmax_only(params: SamplingParams, generated: int) -> bool:
    """Whether `sample` gives this row the argmax of its raw logits: greedy, and no logit_bias,
    penalty or still-pending min_new_tokens changes them. A batch of such rows needs no
    `SamplingBatch` at all."""
    return params.is_greedy and not params.logit_bias and reads_no_history(params, generated)


def _bias_triples(
    params: Sequence[SamplingParams], vocab_size: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Every request's logit_bias as (rows, ids, biases) tensors; None when no request has one."""
    rows: list[int] = []
    ids: list[int] = []
    vals: list[float] = []
    for r, p in enumerate(params):
        for tok, bias in p.bias_pairs():
            if tok < vocab_size:  # verify() refused larger ids; padded heads are wider
                rows.append(r)
                ids.append(tok)
                vals.append(bias)
    if not rows:
        return None
    index = torch.tensor([rows, ids], dtype=torch.int64).to(device, non_blocking=True)
    values = torch.tensor(vals, dtype=torch.float32).to(device, non_blocking=True)
    return index[0], index[1], values


def _flat_pairs(
    seqs: Sequence[Sequence[int]], vocab_size: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, token) index pairs for every token of every row, in a single transfer.
    Ids outside the vocabulary (e.g. image placeholders) are dropped rather than crashing."""
    rows: list[int] = []
    ids: list[int] = []
    for r, seq in enumerate(seqs):
        rows.extend([r] * len(seq))
        ids.extend(seq)
    pairs = torch.tensor([rows, ids], dtype=torch.int64).to(device, non_blocking=True)
    keep = (pairs[1] >= 0) & (pairs[1] < vocab_size)
    return pairs[0][keep], pairs[1][keep]


def apply_penalties(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """logit_bias, min_new_tokens masking and repetition/frequency/presence penalties.

    Returns a new tensor when anything applies, so the caller's raw logits (used for reported
    log-probs) stay intact; returns `logits` itself when nothing does.
    """
    if batch.eos_block is None and not batch.need_penalties:
        return logits
    logits = logits.float().clone()
    if batch.logit_bias is not None:
        rows, ids, values = batch.logit_bias
        # "5" and "05" name one token: their biases add up rather than one winning.
        logits.index_put_((rows, ids), values, accumulate=True)
    if batch.eos_block is not None:
        logits[batch.eos_block] = float("-inf")
    if batch.repetition_penalties is not None and batch.seen_mask is not None:
        pen = batch.repetition_penalties
        # HF semantics: shrink toward zero from either side, so a penalty > 1 always discourages.
        penalized = torch.where(logits > 0, logits / pen, logits * pen)
        logits = torch.where(batch.seen_mask, penalized, logits)
    if batch.output_counts is not None:
        if batch.frequency_penalties is not None:
            logits -= batch.frequency_penalties * batch.output_counts
        if batch.presence_penalties is not None:
            logits -= batch.presence_penalties * (batch.output_counts > 0).float()
    return logits


def _filter_probs(
    probs: torch.Tensor, batch: SamplingBatch
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero out tokens removed by top-k, top-p and min-p. Returns (kept probs, column->token
    index map or None when columns are already vocabulary order). Probs are not renormalised:
    the exponential race only needs relative weights."""
    idx: torch.Tensor | None = None
    if batch.need_top_p or batch.need_top_k:
        if batch.need_top_p or batch.max_top_k >= probs.shape[-1]:
            probs, idx = probs.sort(dim=-1, descending=True)
        else:
            probs, idx = probs.topk(batch.max_top_k, dim=-1)
        cols = torch.arange(probs.shape[-1], device=probs.device)
        if batch.need_top_k:
            probs = probs.masked_fill(cols >= batch.top_ks.unsqueeze(1), 0.0)
        if batch.need_top_p:
            # Nucleus over the top-k-renormalised distribution. The most likely token has
            # exclusive prefix sum 0, so it always survives.
            cum = probs.cumsum(dim=-1)
            limit = batch.top_ps.unsqueeze(1) * cum[:, -1:]
            probs = probs.masked_fill((cum - probs) > limit, 0.0)
    if batch.need_min_p:
        top = probs[:, :1] if idx is not None else probs.amax(dim=-1, keepdim=True)
        probs = probs.masked_fill(probs < top * batch.min_ps.unsqueeze(1), 0.0)
    return probs, idx


def greedy_tokens(logits: torch.Tensor) -> torch.Tensor:
    """Each row's argmax, first index on ties ([B] int64): on CUDA through the kernel library's
    argmax where this GPU's table measured it faster than torch's reduction (off CUDA torch's,
    without importing triton)."""
    return kernels.greedy_argmax(logits) if logits.is_cuda else logits.argmax(dim=-1)


def sample(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """Next token per row, shape [B] int64, on the logits' device. Does not modify `logits`."""
    logits = apply_penalties(logits, batch)
    if batch.all_greedy:
        return greedy_tokens(logits)

    probs = torch.softmax(logits.float() / batch.temperatures, dim=-1)
    width = probs.shape[-1]
    probs, idx = _filter_probs(probs, batch)
    if idx is not None:
        # Back to vocabulary order so each seeded row's noise lines up with fixed token ids.
        probs = probs.new_zeros((probs.shape[0], width)).scatter_(1, idx, probs)

    noise = torch.empty_like(probs)
    if batch.need_global_rng:
        noise.exponential_()
    for i in batch.seeded_rows:
        noise[i].exponential_(generator=batch.generators[i])
    # Exp(1) can round to 0 on some backends; 0/0 would be NaN and NaN wins argmax.
    noise.clamp_min_(_F32_TINY)
    sampled = (probs / noise).argmax(dim=-1)
    return torch.where(batch.greedy, greedy_tokens(logits), sampled)


# ---- log-probs -----------------------------------------------------------------------------


def compute_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax in float32 over the raw logits (before penalties and temperature),
    which is what SGLang reports as token log-probs."""
    return torch.log_softmax(logits.float(), dim=-1)


def gather_token_logprobs(logprobs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Log-prob of `token_ids` per row: [B] ids -> [B], [B, K] ids -> [B, K]."""
    ids = token_ids.to(device=logprobs.device, dtype=torch.int64)
    if ids.dim() == 1:
        return logprobs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return logprobs.gather(-1, ids)


def top_logprobs(logprobs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely tokens per row, descending: (values [B, k], token ids [B, k])."""
    k = max(0, min(k, logprobs.shape[-1]))
    values, indices = logprobs.topk(k, dim=-1)
    return values, indices


def normalized_logprob(token_logprobs: Sequence[float]) -> float:
    """Mean token log-prob, used to rank `choices` in select; 0.0 for an empty choice."""
    if not token_logprobs:
        return 0.0
    return float(sum(token_logprobs)) / len(token_logprobs)


__all__ = [
    "SAMPLING_EPS",
    "SamplingBatch",
    "apply_penalties",
    "argmax_only",
    "greedy_tokens",
    "reads_no_history",
    "compute_logprobs",
    "gather_token_logprobs",
    "normalized_logprob",
    "sample",
    "top_logprobs",
]

"""From logits to tokens and messages: sampling, logprobs, stop conditions, TokenOutput."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sglang.runtime.grammar.bitmask import mask_logits
from sglang.runtime.layers.sampler import (
    SamplingBatch,
    argmax_only,
    compute_logprobs,
    greedy_tokens,
    sample,
    top_logprobs,
)
from sglang.runtime.messages import FinishReason, TokenOutput
from sglang.runtime.scheduler.request import Req
from sglang.runtime.stop_regex import matched_stop_regex
from sglang.runtime.transfer import host_list

# Each sampled row's history (see `OutputProcessor.sample_on_device`), built on demand.
Histories = Callable[[], list[list[int]]]


class OutputProcessor:
    def __init__(self, tokenizer: Any, eos_ids: set[int], vocab_size: int,
                 stream_interval: int = 1) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.vocab_size = vocab_size
        # A streamed request's output goes out once it has this many new tokens (RuntimeArgs).
        self.stream_interval = stream_interval

    # ---- sampling -------------------------------------------------------------------------
    def sample(
        self, reqs: list[Req], logits: torch.Tensor, histories: Histories | None = None
    ) -> list[int]:
        next_ids = self.sample_on_device(reqs, logits, histories)
        if any(r.return_logprob for r in reqs):
            self._record_output_logprobs(reqs, logits[:, : self.vocab_size], next_ids)
        return host_list(next_ids)

    def sample_on_device(
        self, reqs: list[Req], logits: torch.Tensor, histories: Histories | None = None
    ) -> torch.Tensor:
        """Next token ids [B] on the logits' device; no host sync. Row i belongs to reqs[i];
        `histories()[i]` (default: its output_ids) is the output that row continues, which
        penalties and min_new_tokens read (a verify step's rows continue draft prefixes, at
        least as long as the output: called only when some row needs more than an argmax)."""
        logits = logits[:, : self.vocab_size]
        if all(r.grammar is None and argmax_only(r.params, len(r.output_ids)) for r in reqs):
            # Most steps: no parameter tensors to build and copy to the device.
            return greedy_tokens(logits)
        # Grammar masks go on a copy: reported logprobs stay those of the raw logits.
        logits = mask_logits(logits, [r.grammar for r in reqs])
        batch = SamplingBatch.build(
            [r.params for r in reqs],
            [r.generator for r in reqs],
            [r.output_ids for r in reqs] if histories is None else histories(),
            [r.prompt_ids for r in reqs],
            self.vocab_size,
            logits.device,
            # A grammar decides where its output may end; min_new_tokens must not mask the
            # only token it allows there.
            [self._stop_ids(r) if r.grammar is None else [] for r in reqs],
        )
        return sample(logits, batch)

    def _stop_ids(self, req: Req) -> list[int]:
        ids = list(req.params.stop_token_ids or ())
        if not req.params.ignore_eos:
            ids.extend(self.eos_ids)
        return ids

    def _record_output_logprobs(
        self, reqs: list[Req], logits: torch.Tensor, next_ids: torch.Tensor
    ) -> None:
        rows = [i for i, r in enumerate(reqs) if r.return_logprob]
        lp = compute_logprobs(logits[rows])
        chosen = lp.gather(1, next_ids[rows].view(-1, 1)).view(-1).tolist()
        k = max(reqs[i].top_logprobs_num for i in rows)
        top_v, top_i = top_logprobs(lp, k) if k > 0 else (None, None)
        for j, i in enumerate(rows):
            req = reqs[i]
            req.logprobs.output_token.append((chosen[j], int(next_ids[i])))
            if req.top_logprobs_num > 0:
                n = req.top_logprobs_num
                req.logprobs.output_top.append(
                    list(zip(top_v[j, :n].tolist(), top_i[j, :n].tolist()))  # type: ignore[index]
                )

    def record_input_logprobs(self, req: Req, logits: torch.Tensor) -> None:
        """`logits` has one row per token of this extend chunk; row j predicts the token at
        position kv_len + j + 1."""
        start, prompt = req.kv_len, req.prompt_ids
        rec = req.logprobs
        if start == 0 and req.logprob_start_len == 0:
            rec.input_token.append((None, prompt[0]))
            rec.input_top.append(None)
        positions = range(start + 1, min(start + req.extend_len + 1, len(prompt)))
        keep = [p for p in positions if p >= req.logprob_start_len]
        if not keep:
            return
        lp = compute_logprobs(logits[[p - start - 1 for p in keep], : self.vocab_size])
        # Image/video placeholders (ids past the vocabulary) have no logprob: None, like the
        # first token's.
        ids = [prompt[p] for p in keep]
        targets = torch.tensor([t if t < self.vocab_size else 0 for t in ids], device=lp.device)
        values = lp.gather(1, targets.view(-1, 1)).view(-1).tolist()
        rec.input_token.extend(
            (v if t < self.vocab_size else None, t) for v, t in zip(values, ids)
        )
        if req.top_logprobs_num > 0:
            top_v, top_i = top_logprobs(lp, req.top_logprobs_num)
            rec.input_top.extend(
                list(zip(v, i)) for v, i in zip(top_v.tolist(), top_i.tolist())
            )
        else:
            rec.input_top.extend([None] * len(keep))

    # ---- stopping -------------------------------------------------------------------------
    def check_finish(self, req: Req, context_len: int, new_tokens: int = 1) -> None:
        """SGLang's order: length first, then a completed grammar, then stop token ids / EOS,
        then stop strings, then stop_regex. `new_tokens`: how many tokens were just added (a jump-forward adds
        several, and a stop string may lie anywhere in them)."""
        p = req.params
        tok = req.output_ids[-1]
        if len(req.output_ids) >= p.max_new_tokens:
            req.finish_reason = FinishReason.at_length(p.max_new_tokens)
        elif req.grammar is not None and req.grammar.is_terminated():
            req.finish_reason = FinishReason.stop(tok)
        elif tok in (p.stop_token_ids or ()) or (not p.ignore_eos and tok in self.eos_ids):
            req.finish_reason = FinishReason.stop(tok)
        elif p.stop_strs and (matched := self._matched_stop_str(req, new_tokens)) is not None:
            req.finish_reason = FinishReason.stop(matched)
        elif p.stop_regex and (matched := matched_stop_regex(
                self.tokenizer, req.output_ids, p.stop_regex_list)) is not None:
            req.finish_reason = FinishReason.stop(matched)
        elif len(req.prompt_ids) + len(req.output_ids) >= context_len:
            req.finish_reason = FinishReason.at_length(len(req.output_ids))

    def _matched_stop_str(self, req: Req, new_tokens: int = 1) -> str | None:
        # Only the tail can hold a new match: a stop string spans at most len(stop) tokens.
        window = max(len(s) for s in req.params.stop_strs) + new_tokens
        tail = self.tokenizer.decode(req.output_ids[-window:], skip_special_tokens=False)
        for s in req.params.stop_strs:
            if s in tail:
                return s
        return None

    # ---- messages -------------------------------------------------------------------------
    def emit(self, req: Req, new_ids: list[int]) -> TokenOutput | None:
        """The message carrying `new_ids`; None when it is held back: a request that is not
        streamed needs only its final message, and a streamed one an output every
        `stream_interval` tokens. Held tokens wait on the request (`held_ids`; logprobs go out
        from `sent_output_logprobs` on). Every message is a cross-thread or cross-process hand-off,
        which costs the scheduler's step more than building it does."""
        if self._hold(req, len(new_ids)):
            req.held_ids.extend(new_ids)
            return None
        if req.held_ids:
            new_ids, req.held_ids = req.held_ids + new_ids, []
        out = TokenOutput(
            rid=req.rid,
            new_token_ids=new_ids,
            finished=req.finished,
            finish_reason=req.finish_reason,
            prompt_tokens=len(req.prompt_ids),
            completion_tokens=len(req.output_ids),
            cached_tokens=req.cached_tokens or 0,
            embedding=req.embedding,
        )
        if req.spec is not None:
            out.spec_verify_ct = req.spec.verify_ct
            out.spec_draft_tokens = req.spec.draft_tokens
            out.spec_accepted_tokens = req.spec.accepted_tokens
        if req.return_logprob:
            rec = req.logprobs
            out.output_token_logprobs = rec.output_token[req.sent_output_logprobs :]
            if req.top_logprobs_num > 0:
                out.output_top_logprobs = rec.output_top[req.sent_output_logprobs :]
            req.sent_output_logprobs = len(rec.output_token)
            if not req.sent_input_logprobs and req.wants_input_logprobs:
                out.input_token_logprobs = rec.input_token
                out.input_top_logprobs = rec.input_top
                req.sent_input_logprobs = True
        return out

    def _hold(self, req: Req, new: int) -> bool:
        if req.finished:
            return False
        if not req.stream:
            return True
        return self.stream_interval > 1 and len(req.held_ids) + new < self.stream_interval

"""Folds one generation's TokenOutputs into SGLang's result `{"text", "output_ids", "meta_info"}`
and its stream chunks; used by the offline Engine and by the server (/generate and OpenAI).

Text comes one of two ways: the server's detokenizer process sends it with each output
(`DetokOutput.text`, a delta), or, with `detokenize=True` (the Engine), it is decoded here
incrementally. Torch-free: it runs in the server's HTTP process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.detokenizer import IncrementalDetokenizer
from sglang.runtime.messages import FinishReason, TokenOutput

# (logprob, token id, token text or None)
Triple = tuple[float | None, int, str | None]


class RequestError(ValueError):
    """A request the runtime refused or could not finish (the message says why)."""


@dataclass(frozen=True)
class ResultStep:
    """One streamed step of a generation, read off its accumulator when it was taken: the
    accumulator keeps folding later outputs, and its lists only grow, so the counts here pin
    what belonged to this step."""

    delta: str
    acc: ResultAccumulator
    finish_reason: FinishReason | None
    num_output_logprobs: int

    def new_output_logprobs(self, seen: int) -> tuple[list[Triple], list[list[Triple] | None]]:
        """The output logprobs after the first `seen` up to this step, with their top lists
        (None where none were asked for)."""
        end = self.num_output_logprobs
        lps = self.acc.output_token_logprobs[seen:end]
        tops = self.acc.output_top_logprobs[seen:end]
        return lps, tops + [None] * (len(lps) - len(tops))


class ResultAccumulator:
    def __init__(
        self,
        rid: str,
        params: SamplingParams,
        tokenizer: Any,
        *,
        return_logprob: bool = False,
        top_logprobs_num: int = 0,
        with_text: bool = False,  # return_text_in_logprobs
        detokenize: bool = False,
    ) -> None:
        self.rid = rid
        self.tokenizer = tokenizer
        self.return_logprob = return_logprob
        self.top_logprobs_num = top_logprobs_num
        # Token texts need a tokenizer; without one (skip_tokenizer_init) they stay None.
        self.with_text = with_text and tokenizer is not None
        self._text_ids: int | None = None  # len(tokenizer), looked up on first use
        self.detok = IncrementalDetokenizer(tokenizer, params) if detokenize else None
        self.text = ""
        self.output_ids: list[int] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.finished = False
        self.finish_reason: FinishReason | None = None
        self.error: str | None = None
        self.input_token_logprobs: list[Triple] = []
        self.input_top_logprobs: list[list[Triple] | None] = []
        self.output_token_logprobs: list[Triple] = []
        self.output_top_logprobs: list[list[Triple] | None] = []
        self.normalized_prompt_logprob: float | None = None
        self.embedding: list[float] | None = None  # an embedding request's vector
        # Speculative decoding counters (meta_info's spec_*), when the runtime speculates.
        self.spec: dict[str, int] = {}
        # What the last fold added: a streaming chunk of deltas is built from these.
        self.new_ids: list[int] = []
        self._new_lps: list[Triple] = []
        self._new_tops: list[list[Triple] | None] = []

    # ---- folding outputs in -----------------------------------------------------------------
    def _fmt(self, pairs: list[tuple[float | None, int]] | None) -> list[Triple] | None:
        if pairs is None:
            return None
        # Token texts are decoded once, as the tokens arrive.
        return [(lp, tok, self._token_text(tok) if self.with_text else None)
                for lp, tok in pairs]

    def _token_text(self, tok: int) -> str | None:
        # Media placeholders (ids past the tokenizer's, see multimodal.items) have no text.
        if self._text_ids is None:
            self._text_ids = len(self.tokenizer) if hasattr(self.tokenizer, "__len__") else -1
        if 0 <= self._text_ids <= tok:
            return None
        return self.tokenizer.decode([tok])

    def fold(self, out: TokenOutput) -> str:
        """Fold one output in; return the text it adds. An error output finishes the request
        with `error` set (callers decide how to report it)."""
        self.prompt_tokens = out.prompt_tokens or self.prompt_tokens
        self.completion_tokens = out.completion_tokens
        self.cached_tokens = out.cached_tokens
        if out.spec_verify_ct is not None:
            self.spec = {"spec_verify_ct": out.spec_verify_ct,
                         "spec_draft_tokens": out.spec_draft_tokens or 0,
                         "spec_accepted_tokens": out.spec_accepted_tokens or 0}
        if out.finished:
            self.finished = True
            self.finish_reason = out.finish_reason
        if out.error is not None:
            self.finished, self.error = True, out.error
            self.new_ids, self._new_lps, self._new_tops = [], [], []
            return ""
        if out.embedding is not None:
            self.embedding = out.embedding
        self.new_ids = list(out.new_token_ids)
        self.output_ids.extend(out.new_token_ids)
        if self.detok is not None:
            delta = self.detok.add(out.new_token_ids, out.finish_reason, out.finished)
            # The final text is decoded whole (stop strings trimmed), as SGLang reports it.
            self.text = (self.detok.final_text(out.finish_reason) if out.finished
                         else self.text + delta)
        else:
            delta = getattr(out, "text", "")
            self.text += delta
        self._fold_logprobs(out)
        return delta

    def _fold_logprobs(self, out: TokenOutput) -> None:
        if not self.return_logprob:
            return
        if out.input_token_logprobs is not None:
            self.input_token_logprobs = self._fmt(out.input_token_logprobs) or []
            self.input_top_logprobs = [self._fmt(t) for t in out.input_top_logprobs or []]
            scored = [lp for lp, _ in out.input_token_logprobs if lp is not None]
            self.normalized_prompt_logprob = sum(scored) / len(scored) if scored else None
        self._new_lps = self._fmt(out.output_token_logprobs or []) or []
        self._new_tops = [self._fmt(t) for t in out.output_top_logprobs or []]
        self.output_token_logprobs.extend(self._new_lps)
        if self.top_logprobs_num:
            self.output_top_logprobs.extend(self._new_tops)

    def step(self, delta: str) -> ResultStep:
        return ResultStep(delta, self, self.finish_reason if self.finished else None,
                          len(self.output_token_logprobs))

    # ---- what the client sees -----------------------------------------------------------------
    def meta_info(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": self.rid,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "finish_reason": None if self.finish_reason is None else self.finish_reason.to_dict(),
            **self.spec,
        }
        if self.return_logprob:
            meta["input_token_logprobs"] = list(self.input_token_logprobs)
            meta["input_top_logprobs"] = list(self.input_top_logprobs)
            meta["output_token_logprobs"] = list(self.output_token_logprobs)
            meta["output_top_logprobs"] = list(self.output_top_logprobs)
            meta["normalized_prompt_logprob"] = self.normalized_prompt_logprob
        return meta

    def result(self) -> dict[str, Any]:
        """The whole generation so far: the final result once `finished`."""
        return {"text": self.text, "output_ids": list(self.output_ids),
                "meta_info": self.meta_info()}

    def embedding_result(self) -> dict[str, Any]:
        """An embedding request's result, as SGLang's /encode and Engine.encode give it."""
        meta = {k: v for k, v in self.meta_info().items() if k != "completion_tokens"}
        return {"embedding": self.embedding, "meta_info": meta}

    def cumulative_chunk(self, delta: str) -> dict[str, Any]:
        """The server's /generate stream chunk: everything so far, plus the new text."""
        return {**self.result(), "delta": delta}

    def delta_chunk(self, delta: str) -> dict[str, Any]:
        """The Engine's stream chunk: only what the last fold added (text, ids, logprobs)."""
        meta = self.meta_info()
        if self.return_logprob:
            meta["output_token_logprobs"] = list(self._new_lps)
            if self.top_logprobs_num:
                meta["output_top_logprobs"] = list(self._new_tops)
            else:
                meta.pop("output_top_logprobs")
        return {"text": delta, "output_ids": list(self.new_ids), "meta_info": meta}

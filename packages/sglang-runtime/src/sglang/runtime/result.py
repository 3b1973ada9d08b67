"""Collects a request's TokenOutputs into the `{"text", "output_ids", "meta_info"}` result."""

from __future__ import annotations

from typing import Any

from sglang.runtime.detokenizer import IncrementalDetokenizer
from sglang.runtime.messages import TokenOutput
from sglang.runtime.scheduler.request import Req


class RequestError(ValueError):
    """A request the runtime refused or could not finish (the message says why)."""


class RequestResult:
    def __init__(self, req: Req, tokenizer: Any, index: int = 0) -> None:
        self.req = req
        self.tokenizer = tokenizer
        self.index = index
        self.detok = IncrementalDetokenizer(tokenizer, req.params)
        self.last: TokenOutput | None = None
        self.input_token_logprobs: list = []
        self.input_top_logprobs: list = []
        self.output_token_logprobs: list = []
        self.output_top_logprobs: list = []

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.finished

    def update(self, out: TokenOutput, with_text: bool = False) -> dict | None:
        """Fold one output in; return the streaming chunk for it (None if nothing new)."""
        if out.error is not None:
            self.last = out
            raise RequestError(out.error)
        self.last = out
        delta = self.detok.add(out.new_token_ids, out.finish_reason, out.finished)
        if out.input_token_logprobs is not None:
            self.input_token_logprobs = out.input_token_logprobs
            self.input_top_logprobs = out.input_top_logprobs or []
        new_lp = out.output_token_logprobs or []
        new_top = out.output_top_logprobs or []
        self.output_token_logprobs.extend(new_lp)
        self.output_top_logprobs.extend(new_top)
        if not delta and not out.finished and not out.new_token_ids:
            return None
        meta = self._meta()
        if self.req.return_logprob:
            meta["output_token_logprobs"] = self._fmt(new_lp, with_text)
            if self.req.top_logprobs_num:
                meta["output_top_logprobs"] = [self._fmt(t, with_text) for t in new_top]
        return {"text": delta, "output_ids": list(out.new_token_ids), "meta_info": meta}

    def _fmt(self, pairs: Any, with_text: bool) -> list | None:
        if pairs is None:
            return None
        return [
            (lp, tok, self.tokenizer.decode([tok]) if with_text else None) for lp, tok in pairs
        ]

    def _meta(self) -> dict[str, Any]:
        out = self.last
        assert out is not None
        meta: dict[str, Any] = {
            "id": self.req.rid,
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "cached_tokens": out.cached_tokens,
            "finish_reason": out.finish_reason,
        }
        if self.req.return_logprob:
            meta["input_token_logprobs"] = self._fmt(self.input_token_logprobs, False)
            meta["input_top_logprobs"] = [self._fmt(t, False) for t in self.input_top_logprobs]
            scored = [lp for lp, _ in self.input_token_logprobs if lp is not None]
            meta["normalized_prompt_logprob"] = sum(scored) / len(scored) if scored else None
        return meta

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        meta = self._meta()
        if self.req.return_logprob:
            meta["input_token_logprobs"] = self._fmt(self.input_token_logprobs, with_text)
            meta["input_top_logprobs"] = [
                self._fmt(t, with_text) for t in self.input_top_logprobs
            ]
            meta["output_token_logprobs"] = self._fmt(self.output_token_logprobs, with_text)
            meta["output_top_logprobs"] = [
                self._fmt(t, with_text) for t in self.output_top_logprobs
            ]
        return {
            "text": self.detok.final_text(meta["finish_reason"]),
            "output_ids": list(self.detok.ids),
            "meta_info": meta,
        }

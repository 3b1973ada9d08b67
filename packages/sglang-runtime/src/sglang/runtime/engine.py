"""The offline Engine: `sgl.Engine(...).generate(...)` over an in-process scheduler."""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.builder import build_runtime
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.messages import TokenizedGenerateReq, TokenOutput
from sglang.runtime.result import RequestResult
from sglang.runtime.scheduler.request import Req, make_req
from sglang.runtime.scheduler.thread_loop import SchedulerThread

Prompt = str | list[int]


class Engine:
    """Load a model and generate with continuous batching and prefix caching.

    Keyword arguments are RuntimeArgs fields (model_path, dtype, device, mem_fraction_static,
    max_total_tokens, context_length, schedule_policy, disable_radix_cache, chunked_prefill_size,
    random_seed, log_level, ...). With no model_path, the embedded SmolLM2-135M-Instruct is used.
    """

    def __init__(self, model_path: str | None = None, **kwargs: Any) -> None:
        self.args = RuntimeArgs.from_kwargs(model_path=model_path, **kwargs)
        self.runtime = build_runtime(self.args)
        self.tokenizer = self.runtime.tokenizer
        self._loop: SchedulerThread | None = SchedulerThread(self.runtime.scheduler)

    # ---- requests -------------------------------------------------------------------------
    def _build_reqs(
        self,
        prompt: Prompt | list[str] | None,
        sampling_params: dict | SamplingParams | list | None,
        input_ids: list[int] | list[list[int]] | None,
        return_logprob: bool,
        logprob_start_len: int,
        top_logprobs_num: int,
    ) -> tuple[list[Req], bool]:
        if (prompt is None) == (input_ids is None):
            raise ValueError("give exactly one of prompt or input_ids")
        if prompt is not None:
            single = isinstance(prompt, str)
            texts = [prompt] if single else list(prompt)  # type: ignore[list-item]
            if not all(isinstance(t, str) for t in texts):
                raise ValueError("prompt must be a string or a list of strings")
            ids_list = [self.tokenizer.encode(t) for t in texts]
        else:
            single = bool(input_ids) and all(isinstance(t, int) for t in input_ids)  # type: ignore[union-attr]
            ids_list = [list(input_ids)] if single else [list(x) for x in input_ids]  # type: ignore[arg-type, union-attr]
        if isinstance(sampling_params, list):
            if len(sampling_params) != len(ids_list):
                raise ValueError(
                    f"got {len(sampling_params)} sampling_params for {len(ids_list)} prompts"
                )
            params = [self._params(p) for p in sampling_params]
        else:
            params = [self._params(sampling_params)] * len(ids_list)
        if top_logprobs_num < 0:
            raise ValueError(f"invalid top_logprobs_num={top_logprobs_num}: expected >= 0")
        reqs: list[Req] = []
        for ids, p in zip(ids_list, params):
            for copy in range(p.n):
                # Copies of one prompt differ: each gets the next seed.
                seed = None if p.seed is None else p.seed + copy
                msg = TokenizedGenerateReq(
                    rid=uuid.uuid4().hex, input_ids=ids,
                    sampling_params=msgspec.structs.replace(p, n=1, seed=seed),
                    return_logprob=return_logprob, logprob_start_len=logprob_start_len,
                    top_logprobs_num=top_logprobs_num,
                )
                reqs.append(make_req(msg, self.runtime.device))
        return reqs, single and params[0].n == 1

    def _params(self, p: dict | SamplingParams | None) -> SamplingParams:
        sp = p if isinstance(p, SamplingParams) else SamplingParams.from_dict(p)
        sp.verify(vocab_size=int(self.runtime.config.vocab_size))
        return sp

    def _submit(self, reqs: list[Req], sink_for: Any) -> list[RequestResult]:
        if self._loop is None:
            raise RuntimeError("the engine has been shut down")
        results = []
        for i, req in enumerate(reqs):
            res = RequestResult(req, self.tokenizer, index=i)
            results.append(res)
            self._loop.submit(req, sink_for(i))
        return results

    # ---- public API -----------------------------------------------------------------------
    def generate(
        self,
        prompt: Prompt | list[str] | None = None,
        sampling_params: dict | SamplingParams | list | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        return_logprob: bool = False,
        logprob_start_len: int = -1,
        top_logprobs_num: int = 0,
        stream: bool = False,
        return_text_in_logprobs: bool = False,
    ) -> dict | list[dict] | Iterator[dict]:
        reqs, single = self._build_reqs(
            prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
            top_logprobs_num,
        )
        inbox: queue.Queue[tuple[int, TokenOutput]] = queue.Queue()
        results = self._submit(reqs, lambda i: lambda out: inbox.put((i, out)))

        def chunks() -> Iterator[tuple[int, dict | None]]:
            pending = len(results)
            try:
                while pending:
                    i, out = inbox.get()
                    delta = results[i].update(out, return_text_in_logprobs)
                    pending -= out.finished
                    yield i, delta
            finally:
                for res in results:
                    if not res.finished and self._loop is not None:
                        self._loop.abort(res.req.rid)

        if stream:
            return self._stream(chunks(), single)
        for _ in chunks():
            pass
        outs = [r.to_dict(return_text_in_logprobs) for r in results]
        return outs[0] if single else outs

    @staticmethod
    def _stream(chunks: Iterator[tuple[int, dict | None]], single: bool) -> Iterator[dict]:
        for i, delta in chunks:
            if delta is None:
                continue
            if not single:
                delta["index"] = i
            yield delta

    async def async_generate(
        self,
        prompt: Prompt | list[str] | None = None,
        sampling_params: dict | SamplingParams | list | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        return_logprob: bool = False,
        logprob_start_len: int = -1,
        top_logprobs_num: int = 0,
        stream: bool = False,
        return_text_in_logprobs: bool = False,
    ) -> dict | list[dict] | AsyncIterator[dict]:
        reqs, single = self._build_reqs(
            prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
            top_logprobs_num,
        )
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[int, TokenOutput]] = asyncio.Queue()
        results = self._submit(
            reqs, lambda i: lambda out: loop.call_soon_threadsafe(inbox.put_nowait, (i, out))
        )

        async def chunks() -> AsyncIterator[dict]:
            pending = len(results)
            while pending:
                i, out = await inbox.get()
                delta = results[i].update(out, return_text_in_logprobs)
                pending -= out.finished
                if delta is not None:
                    if not single:
                        delta["index"] = i
                    yield delta

        if stream:
            return chunks()
        async for _ in chunks():
            pass
        outs = [r.to_dict(return_text_in_logprobs) for r in results]
        return outs[0] if single else outs

    def flush_cache(self) -> bool:
        """Drop every cached prefix; refused (False) while requests are in flight."""

        return bool(self._call(lambda s: s.flush_cache()))

    def check_integrity(self) -> None:
        self._call(lambda s: s.check_integrity())

    def _call(self, fn: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("the engine has been shut down")
        return self._loop.call(fn)

    def shutdown(self) -> None:
        if self._loop is not None:
            self._loop.shutdown()
            self._loop = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass

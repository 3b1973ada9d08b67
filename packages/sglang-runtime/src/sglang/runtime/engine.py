"""The offline Engine: `sgl.Engine(...).generate(...)` over an in-process scheduler."""

from __future__ import annotations

import asyncio
import functools
import queue
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import torch

from sglang.protocol.media import MediaField
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.builder import Runtime, build_runtime
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.messages import TokenizedGenerateReq, TokenOutput
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.multimodal.processor import (
    ItemsByIds,
    attach_items,
    has_media,
    media_to_input_ids,
)
from sglang.runtime.procs.remote import RemoteScheduler
from sglang.runtime.procs.thread_loop import SchedulerThread
from sglang.runtime.result import RequestResult
from sglang.runtime.scheduler.request import Req, make_req

Prompt = str | list[int]


def _load_tokenizer(args: RuntimeArgs) -> Any:
    from sglang.runtime.loading.default_model import default_model_path
    from sglang.runtime.loading.source import load_tokenizer

    try:
        return load_tokenizer(args.tokenizer_path or args.model_path or default_model_path())
    except (OSError, ValueError, TypeError):
        if args.load_format != "dummy":
            raise
        return None  # dummy weights next to a bare config.json, as the loader allows


class Engine:
    """Load a model and generate with continuous batching and prefix caching.

    Keyword arguments are RuntimeArgs fields (model_path, dtype, device, mem_fraction_static,
    max_total_tokens, context_length, schedule_policy, disable_radix_cache, chunked_prefill_size,
    random_seed, log_level, tp_size, ...). With no model_path, the embedded SmolLM2-135M-Instruct
    is used. tp_size=1 runs the scheduler in this process; tp_size=N > 1 starts one scheduler
    process per rank (`runtime` is then None; a dead or hung rank fails the requests in flight
    with a message naming it, and the engine refuses new ones). The ranks are spawned, so a
    script that uses tp_size > 1 must guard its entry point with `if __name__ == "__main__":`.
    """

    def __init__(self, model_path: str | None = None, **kwargs: Any) -> None:
        self.args = RuntimeArgs.from_kwargs(model_path=model_path, **kwargs)
        self._loop: SchedulerThread | RemoteScheduler | None = None
        self.runtime: Runtime | None = None
        if self.args.tp_size > 1:
            remote = RemoteScheduler(self.args)
            try:  # the ranks load the model meanwhile
                self.tokenizer = _load_tokenizer(self.args)
                remote.wait_ready()
            except BaseException:
                remote.shutdown()
                raise
            self._loop = remote
            self._device = torch.device("cpu")  # seeded generators live in the rank processes
            self._vocab_size = int(self._loop.info["vocab_size"])
        else:
            self.runtime = build_runtime(self.args)
            self.tokenizer = self.runtime.tokenizer
            self._device = self.runtime.device
            self._vocab_size = self.runtime.config.vocab_size
            self._loop = SchedulerThread(self.runtime.scheduler)

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
            if self.tokenizer is None:
                raise ValueError("this model has no tokenizer: pass input_ids instead of prompt")
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
                reqs.append(make_req(msg, self._device))
        return reqs, single and params[0].n == 1

    # ---- multimodal hook: to move into the shared front door (runtime/inputs.py) ----------
    def _media_hook(
        self,
        prompt: Prompt | list[str] | None,
        input_ids: list[int] | list[list[int]] | None,
        image_data: MediaField,
        video_data: MediaField,
    ) -> tuple[Any, Any, ItemsByIds]:
        """Prompts with media become input_ids holding placeholder spans (the processor's
        output); `attach_items` then gives each request its items."""
        if not has_media(image_data, video_data):
            return prompt, input_ids, {}
        ids, items = media_to_input_ids(
            self._model_config, self.tokenizer, prompt, input_ids, image_data, video_data
        )
        return None, ids, items

    @functools.cached_property
    def _model_config(self) -> ModelConfig:
        if self.runtime is not None:
            return self.runtime.config
        # tp_size > 1: the model lives in the rank processes; read its config here.
        from sglang.runtime.loading.loader import load_model_config

        return load_model_config(self.args.model_path, self.args.load_format)

    # ---- end of multimodal hook ----------------------------------------------------------
    def _params(self, p: dict | SamplingParams | None) -> SamplingParams:
        sp = p if isinstance(p, SamplingParams) else SamplingParams.from_dict(p)
        sp.verify(vocab_size=self._vocab_size)
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
        image_data: MediaField = None,
        video_data: MediaField = None,
    ) -> dict | list[dict] | Iterator[dict]:
        prompt, input_ids, items = self._media_hook(prompt, input_ids, image_data, video_data)
        reqs, single = self._build_reqs(
            prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
            top_logprobs_num,
        )
        attach_items(reqs, items)
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
        image_data: MediaField = None,
        video_data: MediaField = None,
    ) -> dict | list[dict] | AsyncIterator[dict]:
        prompt, input_ids, items = self._media_hook(prompt, input_ids, image_data, video_data)
        reqs, single = self._build_reqs(
            prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
            top_logprobs_num,
        )
        attach_items(reqs, items)
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

        if isinstance(self._loop, RemoteScheduler):
            return self._loop.flush_cache()
        return bool(self._call(lambda s: s.flush_cache()))

    def check_integrity(self) -> None:
        """The KV accounting invariant (on every rank, which must also agree with each other);
        AssertionError when it does not hold."""
        if isinstance(self._loop, RemoteScheduler):
            self._loop.check_integrity()
            return
        self._call(lambda s: s.check_integrity())

    def _call(self, fn: Any) -> Any:
        if isinstance(self._loop, RemoteScheduler):
            raise RuntimeError("with tp_size > 1 the scheduler runs in the rank processes")
        if self._loop is None:
            raise RuntimeError("the engine has been shut down")
        return self._loop.call(fn)

    def shutdown(self) -> None:
        if self._loop is not None:
            self._loop.shutdown()
            self._loop = None
            if self.runtime is not None and self.args.distributed:
                from sglang.runtime.distributed import destroy_distributed

                destroy_distributed()  # the one-rank group this process joined
            on_cuda = self.runtime is not None and self.runtime.device.type == "cuda"
            # Drop the model, KV pool and CUDA graphs now, not whenever the Engine object dies:
            # a second Engine in this process needs that device memory.
            self.runtime = None
            if on_cuda:
                import gc

                gc.collect()
                torch.cuda.empty_cache()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass

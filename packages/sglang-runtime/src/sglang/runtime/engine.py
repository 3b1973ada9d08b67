"""The offline Engine: `sgl.Engine(...).generate(...)` over an in-process scheduler."""

from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

import torch

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.media import MediaField
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.builder import Runtime, build_runtime
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.inputs import ModelLimits, prepare_request
from sglang.runtime.loading.default_model import resolve_model_paths
from sglang.runtime.messages import TokenOutput
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.multimodal.processor import InputProcessor, input_processor_for
from sglang.runtime.procs.remote import RemoteScheduler
from sglang.runtime.procs.thread_loop import SchedulerThread
from sglang.runtime.result import RequestError, ResultAccumulator
from sglang.runtime.scheduler.request import Req, make_req

Prompt = str | list[int]


def _load_tokenizer(args: RuntimeArgs) -> Any:
    from sglang.runtime.loading.default_model import default_model_path
    from sglang.runtime.loading.source import load_tokenizer

    if args.skip_tokenizer_init:
        return None
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
    skip_tokenizer_init=True loads no tokenizer: prompts are input_ids, results have output_ids
    and empty text. Bad requests raise InvalidRequest (a ValueError whose `.param` names the
    field).
    """

    def __init__(self, model_path: str | None = None, **kwargs: Any) -> None:
        self.args = RuntimeArgs.from_kwargs(model_path=model_path, **kwargs)
        # A missing model (a typo'd path, the default model not installed) is a one-line
        # ModelPathError here, before any process or download starts.
        resolve_model_paths(self.args.model_path, self.args.tokenizer_path)
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
            self._limits = ModelLimits(int(remote.info["context_len"]),
                                       int(remote.info["vocab_size"]))
        else:
            self.runtime = build_runtime(self.args)
            self.tokenizer = self.runtime.tokenizer
            self._device = self.runtime.device
            self._limits = ModelLimits(self.runtime.context_len,
                                       int(self.runtime.config.vocab_size))
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
        image_data: MediaField,
        video_data: MediaField,
        embed: bool = False,
        stream: bool = False,
    ) -> tuple[list[Req], bool]:
        """Through the front door shared with the server (runtime/inputs.py); InvalidRequest
        (a ValueError naming the field) for a bad request. Unless `stream`, the scheduler sends
        each request one output, when it finishes (`TokenizedGenerateReq.stream`)."""
        if (prompt is None) == (input_ids is None):
            raise InvalidRequest("give exactly one of prompt or input_ids", "prompt")
        obj = GenerateReqInput(
            text=prompt, input_ids=input_ids, sampling_params=sampling_params,  # type: ignore[arg-type]
            return_logprob=return_logprob, logprob_start_len=logprob_start_len,
            top_logprobs_num=top_logprobs_num,
            image_data=image_data, video_data=video_data,  # type: ignore[arg-type]
        )
        prepared = prepare_request(obj, self.tokenizer, self._limits, self._input_processor)
        reqs = [make_req(p.msg, self._device) for p in prepared.reqs]
        for req in reqs:
            req.embed = embed
            req.stream = stream
        return reqs, prepared.single

    def _input_processor(self) -> InputProcessor:
        return input_processor_for(self._model_config)

    @functools.cached_property
    def _model_config(self) -> ModelConfig:
        if self.runtime is not None:
            return self.runtime.config
        # tp_size > 1: the model lives in the rank processes; read its config here.
        from sglang.runtime.loading.loader import load_model_config

        return load_model_config(self.args.model_path, self.args.load_format)

    def _submit(
        self, reqs: list[Req], sink_for: Any, with_text: bool
    ) -> list[ResultAccumulator]:
        if self._loop is None:
            raise RuntimeError("the engine has been shut down")
        results = []
        for i, req in enumerate(reqs):
            results.append(ResultAccumulator(
                req.rid, req.params, self.tokenizer, return_logprob=req.return_logprob,
                top_logprobs_num=req.top_logprobs_num, with_text=with_text, detokenize=True,
            ))
            self._loop.submit(req, sink_for(i))
        return results

    @staticmethod
    def _fold(res: ResultAccumulator, out: TokenOutput) -> dict | None:
        """Fold one output in; its stream chunk, or None when it adds nothing to show."""
        delta = res.fold(out)
        if res.error is not None:
            raise RequestError(res.error)
        if not delta and not out.finished and not out.new_token_ids:
            return None
        return res.delta_chunk(delta)

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
        reqs, single = self._build_reqs(
            prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
            top_logprobs_num, image_data, video_data, stream=stream,
        )
        inbox: queue.SimpleQueue[tuple[int, TokenOutput]] = queue.SimpleQueue()
        results = self._submit(
            reqs, lambda i: lambda out: inbox.put((i, out)), return_text_in_logprobs
        )

        def chunks() -> Iterator[tuple[int, dict | None]]:
            pending = len(results)
            try:
                while pending:
                    i, out = inbox.get()
                    pending -= out.finished
                    yield i, self._fold(results[i], out)
            finally:
                for res in results:
                    if not res.finished and self._loop is not None:
                        self._loop.abort(res.rid)

        if stream:
            return self._stream(chunks(), single)
        for _ in chunks():
            pass
        outs = [r.result() for r in results]
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
        reqs, single = self._build_reqs(
            prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
            top_logprobs_num, image_data, video_data, stream=stream,
        )
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[int, TokenOutput]] = asyncio.Queue()
        results = self._submit(
            reqs, lambda i: lambda out: loop.call_soon_threadsafe(inbox.put_nowait, (i, out)),
            return_text_in_logprobs,
        )

        async def chunks() -> AsyncIterator[dict]:
            pending = len(results)
            while pending:
                i, out = await inbox.get()
                pending -= out.finished
                delta = self._fold(results[i], out)
                if delta is not None:
                    if not single:
                        delta["index"] = i
                    yield delta

        if stream:
            return chunks()
        async for _ in chunks():
            pass
        outs = [r.result() for r in results]
        return outs[0] if single else outs

    def encode(
        self,
        prompt: Prompt | list[str] | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        image_data: MediaField = None,
    ) -> dict | list[dict]:
        """Embed one prompt or a batch with an embedding model (`is_embedding=True`): one
        `{"embedding": [floats, L2-normalised], "meta_info": {...}}` per prompt (a list for a
        batch), as SGLang's Engine.encode. Prompts are prefilled only, then freed."""
        reqs, single = self._build_reqs(
            prompt, {"max_new_tokens": 0}, input_ids, False, -1, 0, image_data, None,
            embed=True,
        )
        inbox: queue.SimpleQueue[tuple[int, TokenOutput]] = queue.SimpleQueue()
        results = self._submit(reqs, lambda i: lambda out: inbox.put((i, out)), False)
        pending = len(results)
        while pending:
            i, out = inbox.get()
            pending -= out.finished
            self._fold(results[i], out)
        outs = [r.embedding_result() for r in results]
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
            if self.runtime is not None:  # its scheduler thread has stopped
                self.runtime.scheduler.runner.restore_cpu_threads()
                if self.args.distributed:
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

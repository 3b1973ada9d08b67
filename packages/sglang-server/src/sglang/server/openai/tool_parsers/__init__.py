"""Tool-call parsers: the formats (`FORMATS`, keyed by `--tool-call-parser` name), the choice of
one for a model, and the streaming side."""

from __future__ import annotations

from sglang.server.openai.tool_parsers import formats as _formats  # noqa: F401  (registers)
from sglang.server.openai.tool_parsers.base import (
    FORMATS,
    ParsedCall,
    Snapshot,
    ToolFormat,
    register_format,
)
from sglang.server.openai.tool_parsers.stream import ToolStream, final_content

# Text in a chat template that shows which format the model was trained on, in lookup order.
TEMPLATE_HINTS: tuple[tuple[str, str], ...] = (
    ("<tool_call>", "hermes"),
    ("[TOOL_CALLS]", "mistral"),
    ("<|python_tag|>", "llama3"),
    ("\"parameters\": ", "llama3"),
)
# Architectures (config.json) whose family has a known format.
ARCHITECTURE_HINTS: dict[str, str] = {
    "Qwen2ForCausalLM": "hermes", "Qwen2MoeForCausalLM": "hermes", "Qwen3ForCausalLM": "hermes",
    "Qwen3MoeForCausalLM": "hermes", "LlamaForCausalLM": "llama3",
    "MistralForCausalLM": "mistral", "MixtralForCausalLM": "mistral",
}
# Our built-in chat templates (`--chat-template NAME`) and the format of their tools prompt.
BUILTIN_TEMPLATE_HINTS: dict[str, str] = {
    "chatml": "hermes", "qwen": "hermes", "yi": "hermes", "llama-3": "llama3", "mistral": "mistral",
}
DEFAULT_FORMAT = "json"


def tool_parser_names() -> list[str]:
    return sorted(FORMATS)


def get_format(name: str) -> ToolFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown tool call parser {name!r}; known: "
                         f"{', '.join(tool_parser_names())}") from None


def infer_format_name(template_text: str | None, architectures: list[str],
                      builtin_template: str | None) -> str:
    """The format a model most likely emits: from our built-in template's name, then the Jinja
    template's text, then the architecture; the generic JSON one otherwise."""
    if builtin_template is not None and builtin_template in BUILTIN_TEMPLATE_HINTS:
        return BUILTIN_TEMPLATE_HINTS[builtin_template]
    for needle, name in TEMPLATE_HINTS:
        if template_text and needle in template_text:
            return name
    for arch in architectures:
        if arch in ARCHITECTURE_HINTS:
            return ARCHITECTURE_HINTS[arch]
    return DEFAULT_FORMAT


class NamedFormat(ToolFormat):
    """`tool_choice` naming a function: the grammar makes the whole output its arguments."""

    def __init__(self, function: str) -> None:
        self.function = function

    def snapshot(self, text: str, at_start: bool, final: bool) -> Snapshot:
        return Snapshot("", [ParsedCall(self.function, text)], False, False)


__all__ = [
    "DEFAULT_FORMAT", "FORMATS", "NamedFormat", "ParsedCall", "ToolFormat", "ToolStream",
    "final_content", "get_format", "infer_format_name", "register_format",
    "tool_parser_names",
]

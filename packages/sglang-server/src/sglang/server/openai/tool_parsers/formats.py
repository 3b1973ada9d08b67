"""The tool-call formats of the model families we serve, one class each, registered by name.

Examples of what each reads (the text a model generates):
  hermes   Qwen 2/2.5/3, Hermes, SmolLM3: `<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`,
           one block per call, ordinary text around them.
  llama3   Llama 3.1+/3.2 JSON tool calling: `{"name": "f", "parameters": {...}}` opening the answer
           or after `<|python_tag|>`; several calls separated by `;`.
  mistral  Mistral v0.3 instruct: `[TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]`; a bare
           JSON array opening the answer also counts (the marker is a special token that
           detokenization may drop).
  json     Generic: a call object or an array of them opening the answer; what
           `tool_choice="required"` constrains the output to.
"""

from __future__ import annotations

from sglang.server.openai.tool_parsers.base import (
    Region,
    ToolFormat,
    close_with,
    read_objects,
    register_format,
    short_call_id,
)
from sglang.server.openai.tool_parsers.json_scan import ERROR, skip_ws


def _array_or_object(text: str, i: int, final: bool) -> Region:
    """`[obj, obj, ...]` or a single `obj` at text[i] (after whitespace)."""
    j = skip_ws(text, i)
    if j < len(text) and text[j] == "[":
        return close_with(text, read_objects(text, j + 1, ",", final), "]", final)
    if j < len(text) and text[j] != "{":
        return Region(end=ERROR)
    return read_objects(text, j, None, final)


@register_format("qwen", "qwen25", "qwen3")
class HermesFormat(ToolFormat):
    name = "hermes"
    markers = ("<tool_call>",)

    def region(self, text: str, i: int, marker: str, final: bool) -> Region:
        return close_with(text, read_objects(text, i, None, final), "</tool_call>", final)


@register_format("llama", "llama32", "llama4")
class Llama3Format(ToolFormat):
    name = "llama3"
    markers = ("<|python_tag|>",)
    opening = "{"

    def region(self, text: str, i: int, marker: str, final: bool) -> Region:
        return read_objects(text, i, ";", final)


@register_format()
class MistralFormat(ToolFormat):
    name = "mistral"
    markers = ("[TOOL_CALLS]",)
    opening = "["

    def new_call_id(self) -> str:
        return short_call_id()

    def region(self, text: str, i: int, marker: str, final: bool) -> Region:
        return _array_or_object(text, i, final)


@register_format("generic")
class JsonFormat(ToolFormat):
    name = "json"
    opening = "{["

    def region(self, text: str, i: int, marker: str, final: bool) -> Region:
        return _array_or_object(text, i, final)


__all__ = ["HermesFormat", "JsonFormat", "Llama3Format", "MistralFormat"]

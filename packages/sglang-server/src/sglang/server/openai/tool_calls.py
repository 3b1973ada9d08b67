"""Tool calling on the chat endpoint: what `tools` / `tool_choice` / `parallel_tool_calls` ask
for (`ToolPlan`), the history's tool fields in template form, and the answer's `tool_calls`.

tool_choice:
  none       the tools are not offered to the template and the output is not parsed;
  auto       offered; the output is parsed with the model's format (`--tool-call-parser`);
  required   offered; the grammar backend constrains the output to a JSON array of
             {"name": ..., "arguments": ...} over the tools (one item without parallel calls),
             read back by the generic JSON parser, so the arguments always parse;
  {"type": "function", "function": {"name": F}}: the output is constrained to F's parameters
             schema and is F's arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sglang.server.errors import APIError, bad_request
from sglang.server.openai.protocol import ChatCompletionRequest, ChatMessage, Tool
from sglang.server.openai.tool_parsers import (
    NamedFormat,
    ToolFormat,
    ToolStream,
    final_content,
    get_format,
    infer_format_name,
)

TOOL_CHOICES = ("none", "auto", "required")
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def tool_dict(tool: Tool) -> dict[str, Any]:
    """A tool as chat templates take it (`tools=`): OpenAI's shape, parameters defaulted."""
    fn = tool.function
    out: dict[str, Any] = {"name": fn.name, "parameters": fn.parameters or ANY_OBJECT}
    if fn.description is not None:
        out["description"] = fn.description
    return {"type": "function", "function": out}


@dataclass
class ToolPlan:
    tools: list[dict[str, Any]] | None  # offered to the template; None: not offered
    fmt: ToolFormat | None  # reads the output; None: plain text
    max_calls: int | None = None
    schema: str | None = None  # the grammar for required / named choices

    def stream(self) -> ToolStream | None:
        return None if self.fmt is None else ToolStream(self.fmt, self.max_calls)

    def message(self, text: str) -> dict[str, Any]:
        """The assistant message of a finished answer."""
        if self.fmt is None:
            return {"role": "assistant", "content": text}
        content, calls = self.fmt.parse(text)
        calls = calls[:self.max_calls] if self.max_calls is not None else calls
        out: dict[str, Any] = {"role": "assistant", "content": final_content(content, calls)}
        if calls:
            out["tool_calls"] = [
                {"id": self.fmt.new_call_id(), "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        return out


    @contextmanager
    def grammar_errors(self) -> Iterator[None]:
        """A grammar refused by the runtime was built from the tools' parameters: say so."""
        try:
            yield
        except APIError as e:
            if self.schema is None or e.status != 400 or "json_schema" not in e.message:
                raise
            raise APIError(f"a tool's parameters are not a usable JSON schema: {e.message}",
                           e.status, e.type, "tools", e.code) from e


def call_finish_reason(reason: str | None, made_calls: bool) -> str | None:
    return "tool_calls" if made_calls and reason == "stop" else reason


# ---- the request ----------------------------------------------------------------------------


def _named_choice(req: ChatCompletionRequest) -> str | None:
    choice = req.tool_choice
    return None if choice is None or isinstance(choice, str) else choice.function.name


def _check_tools(req: ChatCompletionRequest) -> dict[str, Tool]:
    by_name: dict[str, Tool] = {}
    for i, tool in enumerate(req.tools or []):
        if tool.type != "function":
            raise bad_request(f"unsupported tool type {tool.type!r}; only 'function' tools are",
                              f"tools[{i}].type")
        if tool.function.name in by_name:
            raise bad_request(f"two tools are named {tool.function.name!r}",
                              f"tools[{i}].function.name")
        by_name[tool.function.name] = tool
    return by_name


def _required_schema(tools: list[Tool], parallel: bool) -> dict[str, Any]:
    one_of_the_tools = {"anyOf": [{
        "type": "object",
        "properties": {"name": {"const": t.function.name},
                       "arguments": t.function.parameters or ANY_OBJECT},
        "required": ["name", "arguments"], "additionalProperties": False,
    } for t in tools]}
    schema: dict[str, Any] = {"type": "array", "items": one_of_the_tools, "minItems": 1}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def plan_tools(req: ChatCompletionRequest, tm: Any) -> ToolPlan:
    """Check the tool fields and decide how this request offers and reads tool calls."""
    by_name = _check_tools(req)
    choice = req.tool_choice
    named = _named_choice(req)
    if choice is not None and not isinstance(choice, str) and choice.type != "function":
        raise bad_request(f"tool_choice.type must be 'function', got {choice.type!r}",
                          "tool_choice.type")
    if isinstance(choice, str) and choice not in TOOL_CHOICES:
        raise bad_request(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or a function,"
                          f" got {choice!r}", "tool_choice")
    if not req.tools:
        if choice == "required" or named is not None:
            raise bad_request("tool_choice needs tools", "tool_choice")
        return ToolPlan(None, None)
    if choice == "none":
        return ToolPlan(None, None)
    offered = [tool_dict(t) for t in req.tools]
    parallel = req.parallel_tool_calls is not False
    max_calls = None if parallel else 1
    if choice != "required" and named is None:
        return ToolPlan(offered, tool_format(tm), max_calls)
    if req.response_format is not None or req.json_schema or req.regex or req.ebnf:
        raise bad_request("tool_choice 'required' or a named function constrains the output "
                          "itself: give no response_format / regex / json_schema / ebnf",
                          "tool_choice")
    if named is not None:
        if named not in by_name:
            raise bad_request(f"tool_choice names {named!r}, which is not in tools",
                              "tool_choice.function.name")
        params = by_name[named].function.parameters or ANY_OBJECT
        return ToolPlan(offered, NamedFormat(named), 1, json.dumps(params))
    return ToolPlan(offered, get_format("json"), max_calls,
                    json.dumps(_required_schema(req.tools, parallel)))


# ---- the model's format -----------------------------------------------------------------------


def _architectures(model_path: str) -> list[str]:
    path = os.path.join(model_path, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            archs = json.load(f).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [a for a in archs if isinstance(a, str)]


def tool_format(tm: Any) -> ToolFormat:
    """The server's parser: `--tool-call-parser`, else inferred from the model once."""
    cached = getattr(tm, "_tool_format", None)
    if cached is not None:
        return cached
    args = getattr(tm, "server_args", None)
    name = getattr(args, "tool_call_parser", None)
    if name is None:
        template = getattr(tm, "chat_template", None)
        name = infer_format_name(
            getattr(tm.tokenizer, "chat_template", None),
            _architectures(getattr(tm, "model_path", "") or ""),
            getattr(template, "name", None),
        )
    fmt = get_format(name)
    try:
        tm._tool_format = fmt
    except AttributeError:  # a tokenizer manager stand-in that takes no attributes
        pass
    return fmt


# ---- the history ---------------------------------------------------------------------------


def _arguments_value(text: str) -> Any:
    """Arguments as templates expect them (an object, rendered with `tojson`); text that is
    not JSON is passed on as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def add_tool_fields(message: ChatMessage, out: dict[str, Any]) -> None:
    """Copy a history message's tool fields into its template form (both chat_media forms)."""
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id or f"call_{i}", "type": "function",
             "function": {"name": c.function.name,
                          "arguments": _arguments_value(c.function.arguments)}}
            for i, c in enumerate(message.tool_calls)
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.role == "tool" and message.name is not None:
        out["name"] = message.name


def uses_tools(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)




# ---- streamed answers -------------------------------------------------------------------------


def tool_choices(k: int, deltas: list[dict[str, Any]], logprobs: dict[str, Any] | None
                 ) -> list[dict[str, Any]]:
    """Chunk choices for one step's deltas; its logprobs go with the first (or alone)."""
    if not deltas and logprobs is not None:
        deltas = [{"content": ""}]
    return [{"index": k, "delta": d, "logprobs": logprobs if i == 0 else None,
             "finish_reason": None} for i, d in enumerate(deltas)]


def tool_finish(k: int, stream: ToolStream, reason: str) -> list[dict[str, Any]]:
    """What the parser still held, then the finish chunk."""
    out = tool_choices(k, stream.finish(), None)
    out.append({"index": k, "delta": {}, "logprobs": None,
                "finish_reason": call_finish_reason(reason, stream.has_calls)})
    return out


__all__ = [
    "TOOL_CHOICES", "ToolPlan", "add_tool_fields", "call_finish_reason", "plan_tools",
    "tool_choices", "tool_dict", "tool_finish", "tool_format", "uses_tools",
]

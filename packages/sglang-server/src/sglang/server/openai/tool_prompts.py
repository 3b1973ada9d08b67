"""Tools and tool turns in the prompt.

A model's own (Jinja) template renders them when it knows how: it gets `tools=` and the history
with `tool_calls` / the `tool` role as Hugging Face templates expect. Our built-in templates
(`--chat-template NAME`) know only system / user / assistant turns, so the tools are written
into those turns in the format of the template's family (`TOOL_PROMPTS`, keyed by parser name):
the tool list in the system text, past calls in the assistant's turn as the model would write
them, tool results as a user turn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sglang.server.errors import bad_request
from sglang.server.openai.tool_calls import uses_tools
from sglang.server.openai.tool_parsers import BUILTIN_TEMPLATE_HINTS

Messages = list[dict[str, Any]]
ToolPrompt = Callable[[Messages, list[dict[str, Any]] | None], Messages]
TOOL_PROMPTS: dict[str, ToolPrompt] = {}


def _prompt(name: str) -> Callable[[ToolPrompt], ToolPrompt]:
    def register(fn: ToolPrompt) -> ToolPrompt:
        TOOL_PROMPTS[name] = fn
        return fn

    return register


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _with_system(messages: Messages, extra: str) -> Messages:
    """`extra` appended to the leading system message (one is added when there is none)."""
    if messages and messages[0]["role"] == "system":
        head = dict(messages[0], content=f"{messages[0]['content']}\n\n{extra}".lstrip())
        return [head, *messages[1:]]
    return [{"role": "system", "content": extra}, *messages]


def _rewrite(messages: Messages, call_text: Callable[[list[dict[str, Any]]], str],
             result_text: Callable[[list[str]], str]) -> Messages:
    """Assistant calls appended to the assistant's text; runs of tool results as one user turn."""
    out: Messages = []
    results: list[str] = []
    for m in messages:
        if m["role"] == "tool":
            results.append(str(m.get("content") or ""))
            continue
        if results:
            out.append({"role": "user", "content": result_text(results)})
            results = []
        if m.get("tool_calls"):
            text = "\n".join(filter(None, [m.get("content") or "", call_text(m["tool_calls"])]))
            out.append({"role": "assistant", "content": text})
        else:
            out.append({"role": m["role"], "content": m.get("content")})
    if results:
        out.append({"role": "user", "content": result_text(results)})
    return out


@_prompt("hermes")
def _hermes(messages: Messages, tools: list[dict[str, Any]] | None) -> Messages:
    out = _rewrite(
        messages,
        lambda calls: "\n".join(
            f"<tool_call>\n{_dumps({'name': c['function']['name'], 'arguments': c['function']['arguments']})}\n</tool_call>"  # noqa: E501
            for c in calls),
        lambda results: "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in results),
    )
    if not tools:
        return out
    listing = "\n".join(_dumps(t) for t in tools)
    return _with_system(out, (
        "# Tools\n\nThese functions are available to you; call any of them when it helps "
        f"answer.\n<tools>\n{listing}\n</tools>\n\nTo call one, write a JSON object with its "
        "name and arguments between <tool_call> and </tool_call>:\n<tool_call>\n"
        '{"name": "function name", "arguments": {"argument": "value"}}\n</tool_call>'
    ))


@_prompt("llama3")
def _llama3(messages: Messages, tools: list[dict[str, Any]] | None) -> Messages:
    out = _rewrite(
        messages,
        lambda calls: "; ".join(
            _dumps({"name": c["function"]["name"], "parameters": c["function"]["arguments"]})
            for c in calls),
        lambda results: "\n".join(f"Function result: {r}" for r in results),
    )
    if not tools:
        return out
    listing = "\n\n".join(_dumps(t) for t in tools)
    return _with_system(out, (
        "You can call these functions. To call one, answer only with a JSON object "
        '{"name": function name, "parameters": {argument name: value}}.\n\n' + listing
    ))


@_prompt("mistral")
def _mistral(messages: Messages, tools: list[dict[str, Any]] | None) -> Messages:
    out = _rewrite(
        messages,
        lambda calls: "[TOOL_CALLS] " + _dumps(
            [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
             for c in calls]),
        lambda results: "\n".join(f"[TOOL_RESULTS] {r} [/TOOL_RESULTS]" for r in results),
    )
    if not tools:
        return out
    return _with_system(out, f"[AVAILABLE_TOOLS] {_dumps(tools)} [/AVAILABLE_TOOLS]")


def builtin_messages(template_name: str, messages: Messages,
                     tools: list[dict[str, Any]] | None) -> Messages:
    """Messages for a built-in template: tool fields written into ordinary turns."""
    if not tools and not uses_tools(messages):
        return messages
    prompt = TOOL_PROMPTS.get(BUILTIN_TEMPLATE_HINTS.get(template_name, ""))
    if prompt is None:
        raise bad_request(
            f"the chat template {template_name!r} cannot render tools or tool messages; "
            f"templates that can: {', '.join(sorted(BUILTIN_TEMPLATE_HINTS))}, or the model's own",
            "tools" if tools else "messages",
        )
    return prompt(messages, tools)


def jinja_kwargs(template_text: str | None, tools: list[dict[str, Any]] | None
                 ) -> dict[str, Any]:
    """`apply_chat_template` arguments for the tools; a 400 when the template ignores them
    (it never mentions `tools`), which would drop them silently."""
    if not tools:
        return {}
    if not template_text or "tools" not in template_text:
        raise bad_request(
            "this model's chat template cannot render tools; restart the server with a "
            "--chat-template that does (a .jinja file, or a built-in: "
            f"{', '.join(sorted(BUILTIN_TEMPLATE_HINTS))})", "tools",
        )
    return {"tools": tools}


__all__ = ["TOOL_PROMPTS", "builtin_messages", "jinja_kwargs"]

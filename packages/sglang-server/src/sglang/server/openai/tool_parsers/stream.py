"""Streaming tool-call parsing: text deltas in, OpenAI chat deltas out.

Each feed takes a snapshot of the text since the last settled point (nothing held back there,
so it is committed and dropped: a long plain answer is never re-read) and sends what is new
against what was sent: content, then for each call a first delta with its index, id, type and
name (arguments ""), then argument fragments. Whitespace at the end of the content is held back
until more text follows, because an answer that ends in calls drops it (`final_content`).
"""

from __future__ import annotations

from typing import Any

from sglang.server.openai.tool_parsers.base import ParsedCall, ToolFormat


def final_content(content: str, calls: list[Any]) -> str | None:
    """The message content of an answer: with calls, trailing whitespace dropped and None for
    an empty one (OpenAI's shape of a calls-only answer)."""
    if not calls:
        return content
    return content.rstrip() or None


class ToolStream:
    def __init__(self, fmt: ToolFormat, max_calls: int | None = None) -> None:
        self.fmt, self.max_calls = fmt, max_calls
        self._text = ""
        self._at_start = True
        self._done_content = ""  # committed content before `_text`
        self._done_calls: list[ParsedCall] = []
        self._sent_content = 0
        self._sent_args: list[int] = []  # per call index: argument characters sent
        self.ids: list[str] = []

    @property
    def has_calls(self) -> bool:
        return bool(self.ids)

    def feed(self, delta: str) -> list[dict[str, Any]]:
        self._text += delta
        return self._advance(final=False)

    def finish(self) -> list[dict[str, Any]]:
        return self._advance(final=True)

    def _advance(self, final: bool) -> list[dict[str, Any]]:
        snap = self.fmt.snapshot(self._text, self._at_start, final)
        content = self._done_content + snap.content
        calls = self._done_calls + snap.calls
        if self.max_calls is not None:
            calls = calls[:self.max_calls]
        if snap.settled and not final:
            self._done_content, self._done_calls = content, calls
            self._text, self._at_start = "", snap.at_start
        out: list[dict[str, Any]] = []
        visible = len(content.rstrip()) if not final or calls else len(content)
        if visible > self._sent_content:
            out.append({"content": content[self._sent_content:visible]})
            self._sent_content = visible
        for k, call in enumerate(calls):
            if k == len(self.ids):
                self.ids.append(self.fmt.new_call_id())
                self._sent_args.append(0)
                out.append({"tool_calls": [{
                    "index": k, "id": self.ids[k], "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }]})
            if len(call.arguments) > self._sent_args[k]:
                fragment = call.arguments[self._sent_args[k]:]
                self._sent_args[k] = len(call.arguments)
                out.append({"tool_calls": [{"index": k, "function": {"arguments": fragment}}]})
        return out


__all__ = ["ToolStream", "final_content"]

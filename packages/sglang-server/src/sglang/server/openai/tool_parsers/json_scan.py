"""A tolerant scanner over JSON text that may still be growing (a model's output mid-stream).

Parsers need spans, not values: a call's arguments are passed on exactly as the model wrote
them, so the streamed fragments and the final string are the same text. Every function answers
from the characters seen so far only: "incomplete" at the end of the text, "error" for text that
no continuation could make valid, so a verdict never changes as more text arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

INCOMPLETE = -1
ERROR = -2
WS = " \t\r\n"
# Keys whose value is a call's arguments: OpenAI-style "arguments", Llama 3's "parameters".
ARG_KEYS = ("arguments", "parameters")
_LITERAL_END = ",}] \t\r\n"


def skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in WS:
        i += 1
    return i


def scan_string(text: str, i: int) -> int:
    """End (after the closing quote) of the string starting at text[i] == '"'."""
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    return INCOMPLETE


def scan_value(text: str, i: int) -> int:
    """End of the JSON value starting at text[i] (no leading whitespace), INCOMPLETE or ERROR.
    Containers are matched by bracket depth outside strings; their contents are checked by
    json.loads once the value is whole."""
    if i >= len(text):
        return INCOMPLETE
    c = text[i]
    if c == '"':
        return scan_string(text, i)
    if c in "{[":
        depth, j = 0, i
        while j < len(text):
            ch = text[j]
            if ch == '"':
                j = scan_string(text, j)
                if j == INCOMPLETE:
                    return INCOMPLETE
                continue
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return j + 1 if _valid(text[i:j + 1]) else ERROR
            j += 1
        return INCOMPLETE
    if c in "-0123456789tfn":
        j = i
        while j < len(text) and text[j] not in _LITERAL_END:
            j += 1
        if j == len(text):
            return INCOMPLETE
        return j if _valid(text[i:j]) else ERROR
    return ERROR


def _valid(raw: str) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


@dataclass
class CallScan:
    """What one call object `{"name": ..., "arguments": ...}` holds so far."""

    name: str | None = None
    args: str = ""  # the arguments' JSON text as written (a string value: its decoded text)
    end: int = INCOMPLETE  # after the closing brace; INCOMPLETE or ERROR otherwise
    has_args: bool = False  # the arguments value is whole
    args_key: bool = False  # an arguments key was seen (what makes a named object a call)

    @property
    def call_name(self) -> str | None:
        """The name once this object is known to be a call: a name and an arguments key, so
        plain JSON such as {"name": "Bob", "age": 3} is never taken for one."""
        return self.name if self.args_key else None


def scan_call(text: str, i: int) -> CallScan:
    """Read the call object starting at text[i] == '{' as far as the text goes."""
    out = CallScan()
    j = skip_ws(text, i + 1)
    first = True
    while True:
        if j >= len(text):
            return out
        if text[j] == "}" and first:
            out.end = j + 1
            return out
        if text[j] != '"':
            out.end = ERROR
            return out
        key_end = scan_string(text, j)
        if key_end == INCOMPLETE:
            return out
        key = json.loads(text[j:key_end])
        j = skip_ws(text, key_end)
        if j >= len(text):
            return out
        if text[j] != ":":
            out.end = ERROR
            return out
        v = skip_ws(text, j + 1)
        if v >= len(text):
            return out
        end = scan_value(text, v)
        if end == ERROR:
            out.end = ERROR
            return out
        _take(out, key, text, v, end)
        if end == INCOMPLETE:
            return out
        j = skip_ws(text, end)
        if j >= len(text):
            return out
        if text[j] == "}":
            out.end = j + 1
            return out
        if text[j] != ",":
            out.end = ERROR
            return out
        j = skip_ws(text, j + 1)
        first = False


def _take(out: CallScan, key: str, text: str, start: int, end: int) -> None:
    if key == "name":
        if end != INCOMPLETE and text[start] == '"':
            out.name = json.loads(text[start:end])
        return
    if key not in ARG_KEYS or out.has_args:
        return
    out.args_key = True
    if text[start] == '"':
        # Arguments sent as a JSON-encoded string: their text is known only once it is whole.
        if end != INCOMPLETE:
            out.args, out.has_args = json.loads(text[start:end]), True
        return
    out.args = text[start:] if end == INCOMPLETE else text[start:end]
    out.has_args = end != INCOMPLETE


__all__ = ["ARG_KEYS", "ERROR", "INCOMPLETE", "CallScan", "scan_call", "scan_value", "skip_ws"]

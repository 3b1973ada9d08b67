"""The shape every tool-call format shares: plain text, with call regions in it that start at a
marker (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`) or, for JSON-only formats, at a bracket
that opens the output. A format says where regions start and how one is read; `snapshot` walks
the text the same way for a whole output and for any prefix of it, which is what lets the
streaming side (stream.py) send differences between snapshots.

A region whose first call never gets a name (not JSON, or an object without "name") was not a
call: its marker is ordinary text. Text that may still become a marker or a call is held back
until more arrives (or the output ends), so nothing sent as content is ever taken back.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from sglang.server.openai.tool_parsers.json_scan import (
    ERROR,
    INCOMPLETE,
    CallScan,
    scan_call,
    skip_ws,
)


@dataclass
class ParsedCall:
    name: str
    arguments: str  # JSON text as the model wrote it (possibly partial mid-stream)


@dataclass
class Region:
    """A call region read from its start: its calls, and where plain text resumes (INCOMPLETE
    while the region may go on; ERROR when it was no call region after all)."""

    calls: list[ParsedCall] = field(default_factory=list)
    end: int = INCOMPLETE


@dataclass
class Snapshot:
    content: str
    calls: list[ParsedCall]
    settled: bool  # nothing held back: the text so far can be committed
    at_start: bool  # still only whitespace seen (formats whose calls open the output)


def read_objects(text: str, i: int, sep: str | None, final: bool) -> Region:
    """Call objects from text[i], separated by `sep` (None: just one). `end` is after the last
    object; ERROR when the first object is no call."""
    out = Region()
    j = skip_ws(text, i)
    while True:
        if j >= len(text) or text[j] != "{":
            if j >= len(text) and not final:
                return out  # INCOMPLETE
            out.end = j if out.calls else ERROR  # after a separator: the rest is text
            return out
        scan: CallScan = scan_call(text, j)
        name = scan.call_name
        if name is None and (scan.end != INCOMPLETE or final):
            # A finished (or broken) object that is no call: ends a region it opens, and is
            # skipped after calls.
            if not out.calls:
                out.end = ERROR
                return out
        elif name is not None:
            out.calls.append(ParsedCall(name, scan.args))
        if scan.end == INCOMPLETE:
            out.end = len(text) if final else INCOMPLETE
            return out
        if scan.end == ERROR:
            # A broken object after a named call: the rest of the output is taken as its tail.
            out.end = len(text) if final else INCOMPLETE
            return out
        k = skip_ws(text, scan.end)
        if k >= len(text) and not final:
            return out  # a separator may still come
        if sep is not None and text.startswith(sep, k):
            j = skip_ws(text, k + len(sep))
            continue
        out.end = scan.end
        return out


def close_with(text: str, region: Region, closer: str, final: bool) -> Region:
    """Consume an optional closing `closer` (after whitespace) at the end of a region."""
    if region.end < 0:
        return region
    k = skip_ws(text, region.end)
    rest = text[k:]
    if rest.startswith(closer):
        region.end = k + len(closer)
    elif closer.startswith(rest) and not final:
        region.end = INCOMPLETE
    return region


class ToolFormat:
    """One output format. Subclasses set `markers` / `opening` and implement `region`."""

    name: ClassVar[str] = ""
    markers: ClassVar[tuple[str, ...]] = ()  # texts that open a region anywhere
    opening: ClassVar[str] = ""  # characters that open a region at the start of the output

    def new_call_id(self) -> str:
        """An id for a call the model made (clients send it back with the tool's result)."""
        return f"call_{uuid.uuid4().hex[:24]}"

    def region(self, text: str, i: int, marker: str, final: bool) -> Region:
        """Read the region whose body starts at text[i] (after `marker`; "" for an opening
        bracket, which is text[i] itself)."""
        raise NotImplementedError

    def snapshot(self, text: str, at_start: bool, final: bool) -> Snapshot:
        content: list[str] = []
        calls: list[ParsedCall] = []
        i = 0
        while i < len(text):
            if at_start and self.opening:
                j = skip_ws(text, i)
                if j == len(text) and not final:
                    return Snapshot("".join(content), calls, False, True)
                at_start = False
                if j < len(text) and text[j] in self.opening:
                    region = self.region(text, j, "", final)
                    if region.end == ERROR:  # not a call: plain text from here on
                        continue
                    content.append(text[i:j])
                    calls.extend(region.calls)
                    if region.end == INCOMPLETE:
                        return Snapshot("".join(content), calls, False, False)
                    i = region.end
                continue
            at, marker = self._next_marker(text, i)
            if at < 0:
                hold = 0 if final else self._held(text, i)
                content.append(text[i:len(text) - hold])
                return Snapshot("".join(content), calls, hold == 0, at_start)
            content.append(text[i:at])
            region = self.region(text, at + len(marker), marker, final)
            if region.end == ERROR:
                content.append(marker)
                i = at + len(marker)
                continue
            calls.extend(region.calls)
            if region.end == INCOMPLETE:
                return Snapshot("".join(content), calls, False, at_start)
            i = region.end
        return Snapshot("".join(content), calls, True, at_start and not final)

    def _next_marker(self, text: str, i: int) -> tuple[int, str]:
        best, found = -1, ""
        for m in self.markers:
            at = text.find(m, i)
            if at >= 0 and (best < 0 or at < best):
                best, found = at, m
        return best, found

    def _held(self, text: str, i: int) -> int:
        """Length of the longest tail of text[i:] that could grow into a marker."""
        longest = 0
        for m in self.markers:
            for n in range(min(len(m) - 1, len(text) - i), longest, -1):
                if text.endswith(m[:n]):
                    longest = n
                    break
        return longest

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        """A whole output: (content, calls)."""
        snap = self.snapshot(text, at_start=True, final=True)
        return snap.content, snap.calls


def short_call_id() -> str:
    """Mistral's templates accept only 9 alphanumeric characters as a call id."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


FORMATS: dict[str, ToolFormat] = {}


def register_format(*names: str) -> Callable[[type[ToolFormat]], type[ToolFormat]]:
    """Register a format under its name and aliases (`--tool-call-parser NAME`)."""
    def register(cls: type[ToolFormat]) -> type[ToolFormat]:
        instance = cls()
        for n in (cls.name, *names):
            if n in FORMATS:
                raise ValueError(f"tool call parser {n!r} is already registered")
            FORMATS[n] = instance
        return cls

    return register


__all__ = [
    "FORMATS", "ParsedCall", "Region", "Snapshot", "ToolFormat", "close_with", "read_objects",
    "register_format", "short_call_id",
]

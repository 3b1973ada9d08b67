"""Reasoning formats: how a reasoning model's output marks its thinking, and the parser that
splits the output into reasoning and content, whole or delta by delta.

Shared by the server (`--reasoning-parser`, the chat API's `reasoning_content`, the native
`/separate_reasoning` route) and the frontend (`sgl.separate_reasoning`), so it is torch-free.

One state machine serves both ways: the whole-text split is `feed(text)` then `finish()`, so a
streamed answer always concatenates to the non-streamed one, wherever the deltas were cut.
Whitespace right after the opening tag, before the closing tag and right after the closing tag is
dropped (it is formatting, "<think>\\n...\\n</think>\\n\\n"); a tag cut across deltas is held back
until it is known to be (or not to be) a tag, so tags never leak into either field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec


@dataclass(frozen=True)
class ReasoningFormat:
    name: str
    start: str = "<think>"
    end: str = "</think>"
    # The chat template opens the reasoning itself (DeepSeek-R1: the prompt ends with
    # "<think>\n"), so the output starts inside it and may lack the opening tag.
    starts_in_reasoning: bool = False
    # The chat_template_kwargs key that turns thinking off (Qwen3's enable_thinking) and its
    # default; None: the model always reasons.
    switch: str | None = None
    switch_default: bool = True

    def thinking(self, template_kwargs: dict[str, Any] | None) -> bool:
        """Whether reasoning is expected for a request rendered with `template_kwargs`."""
        if self.switch is None:
            return True
        value = (template_kwargs or {}).get(self.switch, self.switch_default)
        return bool(value)


REASONING_FORMATS: dict[str, ReasoningFormat] = {}


def register_reasoning_format(fmt: ReasoningFormat) -> None:
    if fmt.name in REASONING_FORMATS:
        raise ValueError(f"reasoning format {fmt.name!r} is already registered")
    REASONING_FORMATS[fmt.name] = fmt


for _fmt in (
    ReasoningFormat("deepseek-r1", starts_in_reasoning=True),
    # DeepSeek-V3.1+: hybrid, thinking only when the template's `thinking` switch is on.
    ReasoningFormat("deepseek-v3", switch="thinking", switch_default=False),
    ReasoningFormat("qwen3", switch="enable_thinking"),
    # Qwen3-*-Thinking-2507: the template opens <think>; always reasons.
    ReasoningFormat("qwen3-thinking", starts_in_reasoning=True),
    ReasoningFormat("kimi", start="◁think▷", end="◁/think▷"),
):
    register_reasoning_format(_fmt)


def reasoning_format(name: str) -> ReasoningFormat:
    try:
        return REASONING_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown reasoning parser {name!r}; known: "
                         f"{', '.join(sorted(REASONING_FORMATS))}") from None


class SeparateReasoningReqInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The native `POST /separate_reasoning` body: split a finished generation's text.
    Answered with {"text": content, "reasoning_text": reasoning}."""

    text: str
    reasoning_parser: str | None = None  # default: the server's --reasoning-parser


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper prefix of `tag` (0: none)."""
    for k in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-k:]):
            return k
    return 0


_UNDECIDED, _REASONING, _CONTENT = "undecided", "reasoning", "content"


class ReasoningParser:
    """Splits one generation. `in_reasoning`: the prompt already opened the reasoning (the
    format's `starts_in_reasoning`, or a template that ended the prompt with the opening tag);
    `thinking=False`: no reasoning is expected, everything is content."""

    def __init__(self, fmt: ReasoningFormat, in_reasoning: bool = False,
                 thinking: bool = True) -> None:
        self.fmt = fmt
        self.forced = in_reasoning or fmt.starts_in_reasoning
        self.state = _UNDECIDED if thinking else _CONTENT
        self.buf = ""
        self.strip_lead = False  # drop whitespace before the next visible character
        self.opened = False  # the generation had a reasoning part

    @property
    def reasoning_done(self) -> bool:
        return self.state == _CONTENT

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning, content) that `text` adds; either may be "" (held back or absent)."""
        self.buf += text
        reasoning, content = [], []
        while True:
            if self.state == _UNDECIDED:
                if not self._decide():
                    break
            elif self.state == _REASONING:
                if self.strip_lead:
                    self.buf = self.buf.lstrip()
                    if not self.buf:
                        break
                    self.strip_lead = False
                at = self.buf.find(self.fmt.end)
                if at < 0:
                    keep = _partial_suffix(self.buf, self.fmt.end)
                    safe = self.buf[:len(self.buf) - keep]
                    emit = len(safe.rstrip())  # trailing whitespace may precede the end tag
                    reasoning.append(self.buf[:emit])
                    self.buf = self.buf[emit:]
                    break
                reasoning.append(self.buf[:at].rstrip())
                self.buf = self.buf[at + len(self.fmt.end):]
                self.state, self.strip_lead = _CONTENT, True
            else:
                if self.strip_lead:
                    self.buf = self.buf.lstrip()
                    if not self.buf:
                        break
                    self.strip_lead = False
                content.append(self.buf)
                self.buf = ""
                break
        return "".join(reasoning), "".join(content)

    def _decide(self) -> bool:
        """Leave the undecided state when the text so far allows it; False: wait for more."""
        head = self.buf.lstrip()
        if not head or (len(head) < len(self.fmt.start) and self.fmt.start.startswith(head)):
            return False
        if head.startswith(self.fmt.start):
            self.buf = head[len(self.fmt.start):]
            self.state, self.strip_lead, self.opened = _REASONING, True, True
        elif self.forced:
            self.buf = head
            self.state, self.opened = _REASONING, True
        else:
            self.state = _CONTENT
        return True

    def finish(self) -> tuple[str, str]:
        """What was held back, at the end of the generation."""
        rest, self.buf = self.buf, ""
        if self.state == _UNDECIDED:
            if self.forced:
                self.opened = True
                return rest.strip(), ""
            return "", rest
        if self.state == _REASONING:  # the reasoning never closed (e.g. max_tokens)
            return (rest.lstrip() if self.strip_lead else rest).rstrip(), ""
        return "", rest.lstrip() if self.strip_lead else rest


def split_reasoning(text: str, fmt: ReasoningFormat, in_reasoning: bool = False,
                    thinking: bool = True) -> tuple[str | None, str]:
    """(reasoning, or None when the generation had none; content) of a whole generation."""
    parser = ReasoningParser(fmt, in_reasoning, thinking)
    r1, c1 = parser.feed(text)
    r2, c2 = parser.finish()
    return (r1 + r2 if parser.opened else None), c1 + c2


__all__ = [
    "REASONING_FORMATS", "ReasoningFormat", "ReasoningParser", "SeparateReasoningReqInput",
    "reasoning_format",
    "register_reasoning_format", "split_reasoning",
]

"""Reasoning models on the chat API (`--reasoning-parser`): the plan for one request, the
`reasoning_content` of a whole message, the `reasoning_content` deltas of a stream, and the
gate that keeps a grammar off the thinking.

A request expects reasoning when a parser is set, the template's switch (Qwen3's
`enable_thinking` in `chat_template_kwargs`) leaves thinking on and the prompt has not closed
this turn's block already (an empty block for thinking off, an assistant prefill past it). It
starts inside the reasoning when the format says so (DeepSeek-R1), the rendered prompt ends
with the opening tag, or the prefill leaves a block open. The
request's `separate_reasoning=false` keeps the raw text in `content`; `stream_reasoning=false`
sends the reasoning as one delta when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang.protocol.reasoning import ReasoningFormat, ReasoningParser, reasoning_format


@dataclass(frozen=True)
class ReasoningPlan:
    fmt: ReasoningFormat
    thinking: bool  # reasoning is expected
    in_reasoning: bool  # the prompt opened it
    separate: bool  # split it out of content
    stream_reasoning: bool

    def parser(self) -> ReasoningParser:
        return ReasoningParser(self.fmt, self.in_reasoning, self.thinking)


def server_reasoning_parser(tm: Any) -> str | None:
    args = getattr(tm, "server_args", None)
    return getattr(args, "reasoning_parser", None)


def _prompt_block(fmt: ReasoningFormat, req: Any, prompt: str) -> str | None:
    """"open" when the prompt leaves a reasoning block open for the model, "closed" when the
    prompt already holds this turn's reasoning (or prefills the answer), None: the model
    decides."""
    if req.continue_final_message:  # the assistant prefill is where this turn stands
        last = req.messages[-1].content
        text = last if isinstance(last, str) else ""
        start, end = text.rfind(fmt.start), text.rfind(fmt.end)
        return "open" if start > end else "closed"
    tail = prompt.rstrip()
    if tail.endswith(fmt.end):  # e.g. Qwen3's empty block for enable_thinking=false
        return "closed"
    return "open" if tail.endswith(fmt.start) else None


def plan_reasoning(tm: Any, req: Any, prompt: str) -> ReasoningPlan | None:
    """The request's plan, or None when the server has no reasoning parser."""
    name = server_reasoning_parser(tm)
    if name is None:
        return None
    fmt = reasoning_format(name)
    block = _prompt_block(fmt, req, prompt)
    thinking = fmt.thinking(req.chat_template_kwargs) and block != "closed"
    return ReasoningPlan(
        fmt, thinking, in_reasoning=thinking and block == "open",
        separate=req.separate_reasoning, stream_reasoning=req.stream_reasoning,
    )


def gate_constraint(params: dict[str, Any], plan: ReasoningPlan | None) -> None:
    """Constrain only what follows the reasoning: the grammar opens after the end tag."""
    constrained = any(params.get(k) is not None for k in ("regex", "json_schema", "ebnf"))
    if plan is not None and plan.thinking and constrained:
        params["constraint_after"] = plan.fmt.end


def message_fields(plan: ReasoningPlan | None, text: str) -> dict[str, Any]:
    """`content` (and `reasoning_content`, None when the answer had none) of a whole answer."""
    if plan is None or not plan.separate:
        return {"content": text}
    parser = plan.parser()
    r1, c1 = parser.feed(text)
    r2, c2 = parser.finish()
    return {"content": c1 + c2, "reasoning_content": r1 + r2 if parser.opened else None}


class ReasoningStream:
    """The delta fields of each choice of a stream, through one parser per choice."""

    def __init__(self, plan: ReasoningPlan) -> None:
        self.plan = plan
        self.parsers: dict[int, ReasoningParser] = {}
        self.held: dict[int, str] = {}  # stream_reasoning=false: reasoning not sent yet

    def delta(self, k: int, text: str, final: bool) -> dict[str, str]:
        """The fields for choice `k`'s new `text` ({} when everything is held back);
        `final`: the generation ended, flush what the parser holds."""
        parser = self.parsers.get(k)
        if parser is None:
            parser = self.parsers[k] = self.plan.parser()
        reasoning, content = parser.feed(text)
        if final:
            r, c = parser.finish()
            reasoning, content = reasoning + r, content + c
        if not self.plan.stream_reasoning:
            self.held[k] = self.held.get(k, "") + reasoning
            reasoning = ""
            if parser.reasoning_done or final:
                reasoning = self.held.pop(k, "")
        out: dict[str, str] = {}
        if reasoning:
            out["reasoning_content"] = reasoning
        if content:
            out["content"] = content
        return out


def stream_for(plan: ReasoningPlan | None) -> ReasoningStream | None:
    return ReasoningStream(plan) if plan is not None and plan.separate else None


def with_history_reasoning(req: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The template's messages with the assistant turns' `reasoning_content` (templates such as
    Qwen3's render it back for the turns after the last user message)."""
    if len(messages) != len(req.messages):
        return messages
    return [{**m, "reasoning_content": src.reasoning_content}
            if getattr(src, "reasoning_content", None) is not None else m
            for m, src in zip(messages, req.messages)]


__all__ = [
    "ReasoningPlan", "ReasoningStream", "gate_constraint", "message_fields", "plan_reasoning",
    "server_reasoning_parser", "stream_for", "with_history_reasoning",
]

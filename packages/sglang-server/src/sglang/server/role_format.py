"""Describe the server's chat template as one (prefix, suffix) pair per role, for the frontend.

The frontend language (`sgl.system/user/assistant`) builds a prompt by concatenating role
blocks, `prefix + content + suffix`, so it needs the template in that shape. Templates are
programs (a tokenizer's Jinja template, or our renderers for `--chat-template`), so the pieces
are discovered by rendering conversations whose contents are unique sentinels and cutting the
output around them. The result is then checked: composing the pieces must reproduce real
renderings exactly, with and without a system message and with and without the generation
prompt. A template that can't be described this way (e.g. Llama-2 folding the system prompt
into the first user turn) raises `RoleFormatError` instead of returning something subtly wrong.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

logger = logging.getLogger("sglang.server")

Messages = list[dict[str, str]]
Render = Callable[[Messages, bool], str]  # (messages, add_generation_prompt) -> prompt text

# Sentinels: no whitespace (templates may trim contents) and nothing a template would contain.
SYS, U1, A1, U2, A2 = (f"SGLSENTINEL{k}X" for k in ("SYS", "USRA", "ASTA", "USRB", "ASTB"))


class RoleFormatError(ValueError):
    """The template cannot be expressed as per-role prefixes and suffixes."""


@dataclass
class RoleFormat:
    name: str
    role_prefix_and_suffix: dict[str, tuple[str, str]]
    default_system_prompt: str | None = None
    stop_str: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role_prefix_and_suffix": {
                role: list(pair) for role, pair in self.role_prefix_and_suffix.items()
            },
            "default_system_prompt": self.default_system_prompt,
            "stop_str": list(self.stop_str),
        }

    def compose(self, messages: Messages, add_generation_prompt: bool) -> str:
        """The prompt the frontend builds for `messages` with these pieces."""
        if self.default_system_prompt is not None and (
            not messages or messages[0]["role"] != "system"
        ):
            messages = [{"role": "system", "content": self.default_system_prompt}, *messages]
        out = [f"{self.role_prefix_and_suffix[m['role']][0]}{m['content']}"
               f"{self.role_prefix_and_suffix[m['role']][1]}" for m in messages]
        if add_generation_prompt:
            out.append(self.role_prefix_and_suffix["assistant"][0])
        return "".join(out)


def _msgs(*pairs: tuple[str, str]) -> Messages:
    return [{"role": r, "content": c} for r, c in pairs]


def _cut(text: str, sentinels: list[str]) -> list[str]:
    """The pieces of `text` around the sentinels, in order: len(sentinels) + 1 strings."""
    pieces, pos = [], 0
    for s in sentinels:
        i = text.find(s, pos)
        if i < 0:
            raise RoleFormatError(f"the template dropped or reordered a message ({s})")
        pieces.append(text[pos:i])
        pos = i + len(s)
    pieces.append(text[pos:])
    return pieces


def _without_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise RoleFormatError(f"{what}: {text!r} does not start with {prefix!r}")
    return text[len(prefix):]


def _without_suffix(text: str, suffix: str, what: str) -> str:
    if not text.endswith(suffix):
        raise RoleFormatError(f"{what}: {text!r} does not end with {suffix!r}")
    return text[: len(text) - len(suffix)]


def derive_role_format(render: Render, name: str, stop_str: list[str] | None = None) -> RoleFormat:
    """Discover the per-role pieces of `render`; raises RoleFormatError if they don't exist."""
    try:
        return _derive(render, name, stop_str or [])
    except RoleFormatError:
        raise
    except Exception as e:  # a template's raise_exception(), e.g. "system role not supported"
        raise RoleFormatError(f"the template failed on a probe conversation: {e}") from e


def _derive(render: Render, name: str, stop_str: list[str]) -> RoleFormat:
    five = _msgs(("system", SYS), ("user", U1), ("assistant", A1), ("user", U2), ("assistant", A2))
    # pS SYS sS+pU U1 sU+pA A1 sA+pU U2 sU+pA A2 sA
    pieces = _cut(render(five, False), [SYS, U1, A1, U2, A2])
    p_sys, gap_su, gap_ua, gap_au, gap_ua2, s_asst = pieces
    if gap_ua != gap_ua2:
        raise RoleFormatError("the user/assistant boundary differs between turns")
    # sA is known (the end of the text), so the assistant->user gap gives the user prefix, and
    # the system->user gap then gives the system suffix.
    p_user = _without_prefix(gap_au, s_asst, "assistant->user boundary")
    s_sys = _without_suffix(gap_su, p_user, "system->user boundary")
    # The user suffix is what follows a final user turn; the generation prompt is what
    # add_generation_prompt appends. The assistant prefix must be that prompt, or the frontend
    # would generate after different text than the server's own chat path.
    four = five[:4]
    no_gen, with_gen = render(four, False), render(four, True)
    s_user = _cut(no_gen, [SYS, U1, A1, U2])[-1]
    gen_prompt = _without_prefix(with_gen, no_gen, "generation prompt")
    p_asst = _without_prefix(gap_ua, s_user, "user->assistant boundary")
    if p_asst != gen_prompt:
        raise RoleFormatError(
            f"the generation prompt {gen_prompt!r} differs from the assistant prefix {p_asst!r}"
        )
    # Without a system message, whatever precedes the user prefix is an implicit system block.
    before = _cut(render(five[1:], False), [U1, A1, U2, A2])[0]
    default_system: str | None = None
    if before != p_user:
        body = _without_prefix(before, p_sys, "implicit system block")
        default_system = _without_suffix(body, s_sys + p_user, "implicit system block")
    fmt = RoleFormat(
        name=name,
        role_prefix_and_suffix={
            "system": (p_sys, s_sys), "user": (p_user, s_user), "assistant": (p_asst, s_asst),
        },
        default_system_prompt=default_system,
        stop_str=list(stop_str),
    )
    _verify(fmt, render)
    return fmt


def _verify(fmt: RoleFormat, render: Render) -> None:
    """Ordinary contents (spaces, newlines) through both paths must give identical text."""
    conv = _msgs(("system", "Be brief.\n"), ("user", "Hi there!"), ("assistant", " Hello."),
                 ("user", "What is 2 + 2?"), ("assistant", "4\n"))
    for messages, gen in ((conv, False), (conv[:4], True), (conv[1:], False), (conv[1:4], True)):
        if fmt.compose(messages, gen) != render(messages, gen):
            raise RoleFormatError(
                "composing per-role prefixes and suffixes does not reproduce the template "
                f"({len(messages)} messages, add_generation_prompt={gen})"
            )


# ---- sources --------------------------------------------------------------------------------


def adds_bos(tokenizer: Any) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return bos_id is not None and tokenizer("a").input_ids[:1] == [bos_id]


def tokenizer_render(tokenizer: Any) -> Render:
    """Render through the tokenizer's Jinja template. A leading BOS text is dropped when the
    tokenizer adds BOS itself: the frontend's text is tokenized by the server, which would
    otherwise put BOS twice."""
    bos = tokenizer.bos_token if adds_bos(tokenizer) else None

    def render(messages: Messages, add_generation_prompt: bool) -> str:
        out = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return out[len(bos):] if bos and out.startswith(bos) else out

    return render


def template_render(template: Any) -> Render:
    """Render through a `sglang.server.chat_templates.ChatTemplate`, which always ends with the
    generation prompt: that prompt is what an empty conversation renders to (with the implicit
    system message switched off), so stripping it gives the version without it."""
    bare = msgspec.structs.replace(template, system_message=None)
    gen_prompt = bare.render([])

    def render(messages: Messages, add_generation_prompt: bool) -> str:
        out = template.render(messages)
        if add_generation_prompt:
            return out
        return _without_suffix(out, gen_prompt, "rendering without the generation prompt")

    return render


def from_tokenizer(tokenizer: Any, name: str = "tokenizer") -> RoleFormat:
    if not getattr(tokenizer, "chat_template", None):
        raise RoleFormatError("the tokenizer has no chat template")
    fmt = derive_role_format(tokenizer_render(tokenizer), name)
    # The model ends its turn with EOS; list it when it is what closes an assistant block.
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in fmt.role_prefix_and_suffix["assistant"][1]:
        fmt.stop_str = [eos]
    return fmt


def from_chat_template(template: Any) -> RoleFormat:
    return derive_role_format(template_render(template), template.name, template.stop_strs)


def server_role_format(tm: Any) -> dict[str, Any] | None:
    """/get_model_info's `chat_template` for a TokenizerManager: from `--chat-template` when
    given, else from the tokenizer; None when it can't be described. Never raises: describing
    the template is a convenience and must not stop the server from starting."""
    try:
        if tm.chat_template is not None:
            return from_chat_template(tm.chat_template).to_dict()
        name = os.path.basename(str(tm.tokenizer_path).rstrip("/")) or "tokenizer"
        return from_tokenizer(tm.tokenizer, name).to_dict()
    except Exception as e:
        logger.warning("chat template not described in /get_model_info: %s", e)
        return None


__all__ = [
    "RoleFormat", "RoleFormatError", "adds_bos", "derive_role_format", "from_chat_template",
    "from_tokenizer", "server_role_format", "template_render", "tokenizer_render",
]

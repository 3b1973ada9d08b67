"""Conversation templates: turn OpenAI-style `messages` into one prompt string.

A `ChatTemplate` uses the conversation format of SGLang's README JSON file (`name`, `system`,
`user`, `assistant` role prefixes, `sep_style`, `sep`, `stop_str`). How the pieces are joined is
decided by a renderer registered per `sep_style`, so a new family is a new renderer, not a new
branch. Rendered prompts do not contain the BOS token: the tokenizer adds it when encoding.

`system` is normally a role prefix ("<|im_start|>system"); it may instead contain the placeholder
`{system_message}` to give the whole system block (Llama-2's `<<SYS>>` wrapper needs that).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import msgspec

from sglang.server.errors import APIError, bad_request

_PLACEHOLDER = "{system_message}"

Turn = tuple[str, str]  # (role, content), role in system / user / assistant
Renderer = Callable[["ChatTemplate", list[Turn]], str]
_RENDERERS: dict[str, Renderer] = {}


class ChatTemplate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    system: str = ""
    user: str = ""
    assistant: str = ""
    # Defaults follow SGLang's JSON loader: a file may give only a ChatML model's role prefixes.
    sep_style: str = "CHATML"
    sep: str = "<|im_end|>"
    sep2: str | None = None
    stop_str: str | list[str] | None = None
    system_message: str | None = None

    def __post_init__(self) -> None:
        self.sep_style = self.sep_style.upper()
        if self.sep_style not in _RENDERERS:
            raise ValueError(
                f"chat template {self.name!r}: unknown sep_style {self.sep_style!r}; "
                f"known: {', '.join(sorted(_RENDERERS))}"
            )

    @property
    def stop_strs(self) -> list[str]:
        if self.stop_str is None:
            return []
        return [self.stop_str] if isinstance(self.stop_str, str) else list(self.stop_str)

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for `messages` (role/content dicts with string content), ending with the
        assistant's generation prompt."""
        turns: list[Turn] = []
        for i, m in enumerate(messages):
            role, content = m.get("role"), m.get("content")
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"messages[{i}]: unsupported role {role!r}")
            turns.append((role, "" if content is None else str(content)))
        if self.system_message and (not turns or turns[0][0] != "system"):
            turns.insert(0, ("system", self.system_message))
        return _RENDERERS[self.sep_style](self, turns)

    def prefix(self, role: str) -> str:
        return {"system": self.system, "user": self.user, "assistant": self.assistant}[role]

    def system_text(self, message: str, joiner: str) -> str:
        """The system block's text (without the closing separator)."""
        if _PLACEHOLDER in self.system:
            return self.system.replace(_PLACEHOLDER, message)
        return f"{self.system}{joiner}{message}" if self.system else message


def _style(name: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        _RENDERERS[name] = fn
        return fn

    return register


@_style("CHATML")
def _render_chatml(t: ChatTemplate, turns: list[Turn]) -> str:
    out = []
    for role, content in turns:
        head = t.system_text(content, "\n") if role == "system" else f"{t.prefix(role)}\n{content}"
        out.append(f"{head}{t.sep}\n")
    return "".join(out) + f"{t.assistant}\n"


@_style("LLAMA3")
def _render_llama3(t: ChatTemplate, turns: list[Turn]) -> str:
    out = []
    for role, content in turns:
        is_system = role == "system"
        head = t.system_text(content, "\n\n") if is_system else f"{t.prefix(role)}\n\n{content}"
        out.append(head + t.sep)
    return "".join(out) + f"{t.assistant}\n\n"


def _fold_system(turns: list[Turn], t: ChatTemplate) -> list[Turn]:
    """For formats without a system role: prepend system text to the next user message."""
    out: list[Turn] = []
    pending: list[str] = []
    for role, content in turns:
        if role == "system":
            pending.append(content)
            continue
        if role == "user" and pending:
            block = t.system_text("\n".join(pending), "")
            if _PLACEHOLDER not in t.system:
                block += "\n\n"
            content, pending = block + content, []
        out.append((role, content))
    if pending:  # a conversation of only system text: send it as the user's message
        out.append(("user", "\n".join(pending)))
    return out


@_style("LLAMA2")
def _render_llama2(t: ChatTemplate, turns: list[Turn]) -> str:
    # "[INST] {user} [/INST] {assistant} </s><s>[INST] ..."; the model answers after "[/INST]".
    out = []
    for role, content in _fold_system(turns, t):
        if role == "user":
            out.append(f"{t.user}{t.sep}{content}{t.sep}{t.assistant}")
        else:
            out.append(f"{t.sep}{content}{t.sep2 or ''}")
    return "".join(out)


@_style("GEMMA")
def _render_gemma(t: ChatTemplate, turns: list[Turn]) -> str:
    out = [f"{t.prefix(role)}\n{content}{t.sep}\n" for role, content in _fold_system(turns, t)]
    return "".join(out) + f"{t.assistant}\n"


def _leading_system(t: ChatTemplate, turns: list[Turn], joiner: str) -> tuple[str, list[Turn]]:
    """(system block + sep, remaining turns) for the single-line styles."""
    if turns and turns[0][0] == "system":
        return t.system_text(turns[0][1], joiner) + t.sep, turns[1:]
    return "", turns


@_style("ADD_COLON_SINGLE")
def _render_add_colon_single(t: ChatTemplate, turns: list[Turn]) -> str:
    head, rest = _leading_system(t, turns, ": ")
    return head + "".join(f"{t.prefix(r)}: {c}{t.sep}" for r, c in rest) + f"{t.assistant}:"


@_style("ADD_COLON_TWO")
def _render_add_colon_two(t: ChatTemplate, turns: list[Turn]) -> str:
    # Vicuna: user turns end with `sep`, assistant turns with `sep2` (the EOS text).
    head, rest = _leading_system(t, turns, ": ")
    body = "".join(
        f"{t.prefix(r)}: {c}{t.sep2 if r == 'assistant' and t.sep2 is not None else t.sep}"
        for r, c in rest
    )
    return head + body + f"{t.assistant}:"


@_style("NO_COLON_SINGLE")
def _render_no_colon_single(t: ChatTemplate, turns: list[Turn]) -> str:
    head, rest = _leading_system(t, turns, "")
    return head + "".join(f"{t.prefix(r)}{c}{t.sep}" for r, c in rest) + t.assistant


# ---- built-ins ----------------------------------------------------------------------------

_BUILTINS: dict[str, ChatTemplate] = {}


def register_chat_template(template: ChatTemplate, override: bool = False) -> None:
    if template.name in _BUILTINS and not override:
        raise ValueError(f"chat template {template.name!r} is already registered")
    _BUILTINS[template.name] = template


def _chatml_like(name: str, stop: list[str], system_message: str | None = None) -> ChatTemplate:
    return ChatTemplate(
        name=name, system="<|im_start|>system", user="<|im_start|>user",
        assistant="<|im_start|>assistant", sep_style="CHATML", sep="<|im_end|>",
        stop_str=stop, system_message=system_message,
    )


def _llama3_header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>"


for _t in (
    _chatml_like("chatml", ["<|im_end|>"]),
    _chatml_like("qwen", ["<|im_end|>", "<|endoftext|>"], "You are a helpful assistant."),
    _chatml_like("yi", ["<|im_end|>", "<|endoftext|>"]),
    ChatTemplate(
        name="llama-2", system="<<SYS>>\n{system_message}\n<</SYS>>\n\n", user="[INST]",
        assistant="[/INST]", sep_style="LLAMA2", sep=" ", sep2=" </s><s>",
    ),
    # Mistral Instruct has no system role: the system text leads the first user message.
    ChatTemplate(
        name="mistral", system="{system_message}\n\n", user="[INST]", assistant="[/INST]",
        sep_style="LLAMA2", sep=" ", sep2="</s>",
    ),
    ChatTemplate(
        name="llama-3", system=_llama3_header("system"), user=_llama3_header("user"),
        assistant=_llama3_header("assistant"), sep_style="LLAMA3", sep="<|eot_id|>",
        stop_str=["<|eot_id|>"],
    ),
    ChatTemplate(
        name="gemma", system="{system_message}\n\n", user="<start_of_turn>user",
        assistant="<start_of_turn>model", sep_style="GEMMA", sep="<end_of_turn>",
        stop_str=["<end_of_turn>"],
    ),
    ChatTemplate(
        name="vicuna_v1.1", system="", user="USER", assistant="ASSISTANT",
        sep_style="ADD_COLON_TWO", sep=" ", sep2="</s>",
        system_message=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    # LLaVA's own conversation formats. Image parts arrive as the model's image token inside
    # the user's text ("<image>\nWhat is this?"), so the templates need no image field.
    ChatTemplate(
        name="llava", system="", user="USER", assistant="ASSISTANT",
        sep_style="ADD_COLON_TWO", sep=" ", sep2="</s>",
        system_message=(
            "A chat between a curious human and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the human's questions."
        ),
    ),
    # LLaVA-NeXT on Yi-34B / ChatML bases (SGLang's chatml-llava).
    _chatml_like("chatml-llava", ["<|im_end|>"], "You are a helpful assistant."),
    # Yi-VL's "mm_default": "### Human: ...\n### Assistant:" after a bilingual system text.
    ChatTemplate(
        name="yi-vl", system="", user="### Human", assistant="### Assistant",
        sep_style="ADD_COLON_SINGLE", sep="\n", stop_str=["###"],
        system_message=(
            "This is a chat between an inquisitive human and an AI assistant. Assume the role "
            "of the AI assistant. Read all the images carefully, and respond to the human's "
            "questions with informative, helpful, detailed and polite answers. "
            "这是一个好奇的人类和一个人工智能助手之间的对话。假设你扮演这个AI助手的角色。"
            "仔细阅读所有的图像，并对人类的问题做出信息丰富、有帮助、详细的和礼貌的回答。"
        ),
    ),
):
    register_chat_template(_t)


def builtin_chat_template_names() -> list[str]:
    return sorted(_BUILTINS)


def get_chat_template(name: str) -> ChatTemplate:  # KeyError for unknown names
    return _BUILTINS[name]


# ---- resolution ---------------------------------------------------------------------------


def resolve_chat_template(name_or_path: str | None, tokenizer: Any) -> ChatTemplate | None:
    """`--chat-template` → a template, or None meaning "use the tokenizer's own template".

    Accepts a built-in name, a JSON file in SGLang's README format, or a Jinja file (`.jinja`),
    which replaces `tokenizer.chat_template` and resolves to None.
    """
    if name_or_path is None:
        return None
    if name_or_path in _BUILTINS:
        return _BUILTINS[name_or_path]
    if os.path.isfile(name_or_path):
        if name_or_path.endswith((".jinja", ".jinja2")):
            with open(name_or_path, encoding="utf-8") as f:
                tokenizer.chat_template = f.read()
            return None
        return load_chat_template_file(name_or_path)
    raise ValueError(
        f"unknown chat template {name_or_path!r}: not a file; built-in templates are "
        f"{', '.join(builtin_chat_template_names())}"
    )


def load_chat_template_file(path: str) -> ChatTemplate:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return msgspec.json.decode(data, type=ChatTemplate)
    except msgspec.ValidationError as e:  # also covers errors raised by __post_init__
        raise ValueError(f"invalid chat template file {path}: {e}") from e
    except msgspec.DecodeError as e:
        raise ValueError(f"chat template file {path} is not valid JSON: {e}") from e


def render_with_tokenizer(
    tokenizer: Any, messages: list[dict[str, Any]], **template_args: Any
) -> str:
    """Render through the tokenizer's own (Jinja) chat template; `template_args` go to
    `apply_chat_template` (add_generation_prompt, continue_final_message, template variables)."""
    if not getattr(tokenizer, "chat_template", None):
        raise APIError(
            "this model's tokenizer has no chat template; restart the server with "
            f"--chat-template (built-ins: {', '.join(builtin_chat_template_names())}, "
            "or a JSON/Jinja file), or use /v1/completions",
            status=400, param="messages",
        )
    try:
        prompt = tokenizer.apply_chat_template(
            messages, tokenize=False, **{"add_generation_prompt": True, **template_args}
        )
    except Exception as e:  # a template's raise_exception(), e.g. roles must alternate
        raise bad_request(f"the chat template rejected the messages: {e}", "messages") from e
    if not isinstance(prompt, str):
        raise APIError("the tokenizer's chat template did not return a string", status=500,
                       type="server_error")
    return prompt


__all__ = [
    "ChatTemplate", "builtin_chat_template_names", "get_chat_template", "load_chat_template_file",
    "register_chat_template", "render_with_tokenizer", "resolve_chat_template",
]

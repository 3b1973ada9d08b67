"""How a chat request asks its prompt to be rendered: `chat_template_kwargs` (variables for the
Jinja template, e.g. Qwen3's `enable_thinking`), `add_generation_prompt` and
`continue_final_message` (assistant prefill: the model continues the last assistant message
instead of starting a new one), checked as vLLM checks them.

The tokenizer's Jinja template takes all three (transformers' `apply_chat_template`). A server
template (`--chat-template` name or JSON) has no variables and always ends with the generation
prompt, so there `chat_template_kwargs` and a bare `add_generation_prompt=false` are refused;
`continue_final_message` is rendered by cutting the prompt where the last message's text
starts and appending that text unclosed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sglang.server.errors import bad_request

# apply_chat_template's own arguments: a template variable of these names would clash with them.
RESERVED_KWARGS = frozenset({
    "conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
    "continue_final_message", "tokenize", "padding", "truncation", "max_length",
    "return_tensors", "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs",
})
# Stands for the final message's text while the rest of the prompt is rendered around it.
_SENTINEL = "\x00sglang-prefill\x00"


@dataclass
class TemplateArgs:
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)

    def jinja(self) -> dict[str, Any]:
        """Keyword arguments for `apply_chat_template` (the prefill flag only when set, so
        tokenizers that predate it keep working)."""
        out = {**self.kwargs, "add_generation_prompt": self.add_generation_prompt}
        if self.continue_final_message:
            out["continue_final_message"] = True
        return out


def template_args(req: Any) -> TemplateArgs:
    """The request's rendering options, or a 400 naming the field at fault."""
    kwargs = dict(req.chat_template_kwargs or {})
    clash = sorted(k for k in kwargs if k in RESERVED_KWARGS)
    if clash:
        raise bad_request(f"chat_template_kwargs may not set {', '.join(clash)}: "
                          "use the request field of that name", "chat_template_kwargs")
    agp = req.add_generation_prompt
    cont = req.continue_final_message
    if cont and agp:
        raise bad_request("continue_final_message and add_generation_prompt cannot both be "
                          "true: send add_generation_prompt=false to continue the final "
                          "assistant message", "continue_final_message")
    if cont and (not req.messages or req.messages[-1].role != "assistant"):
        raise bad_request("continue_final_message needs the last message to be an assistant "
                          "message (the text to continue)", "continue_final_message")
    return TemplateArgs(agp, cont, kwargs)


def render_server_template(template: Any, messages: list[dict[str, Any]],
                           args: TemplateArgs) -> str:
    """A `--chat-template` template's prompt under `args` (ValueError: the messages' fault)."""
    if args.kwargs:
        raise bad_request(f"chat_template_kwargs need a Jinja chat template; this server renders "
                          f"with the {template.name!r} template, which has no variables",
                          "chat_template_kwargs")
    if args.continue_final_message:
        last = messages[-1]
        text = "" if last.get("content") is None else str(last["content"])
        prompt = template.render([*messages[:-1], {**last, "content": _SENTINEL}])
        at = prompt.rfind(_SENTINEL)
        return prompt[:at] + text
    if not args.add_generation_prompt:
        raise bad_request(f"add_generation_prompt=false needs a Jinja chat template; the "
                          f"{template.name!r} template always ends with the assistant's prompt",
                          "add_generation_prompt")
    return str(template.render(messages))


__all__ = ["RESERVED_KWARGS", "TemplateArgs", "render_server_template", "template_args"]

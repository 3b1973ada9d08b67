"""Request bodies of the utility routes (`utility_routes.py`), in SGLang's shapes. Like the
OpenAI structs, they refuse fields they do not declare (a 400 naming the field)."""

from __future__ import annotations

import msgspec

from sglang.server.openai.protocol import ChatMessage


class TokenizeReq(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`prompt` (a string or a batch of them) or chat `messages`, which are rendered through
    the chat template exactly as /v1/chat/completions renders them."""

    prompt: str | list[str] | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    model: str | None = None


class DetokenizeReq(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Token ids or a batch of them (msgspec takes one list type per union: `check` refuses a mix).
    tokens: list[int | list[int]]
    skip_special_tokens: bool = True
    model: str | None = None


class AbortRequestReq(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rid: str = ""
    abort_all: bool = False


class EncodeReqInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Native `/encode` (an embedding model): one prompt or a batch, as `/generate` takes."""

    text: str | list[str] | None = None
    input_ids: list[int | list[int]] | None = None
    rid: str | None = None

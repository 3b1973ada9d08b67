"""Chat messages with media: OpenAI content parts (text, image_url, and the video_url extension)
become prompt text holding the model's image/video token where each part was, plus the media
references in the same order, which go along as /generate's image_data / video_data.

Each part type has one handler (`PART_KINDS`); a new kind of part is a new entry, not a branch.
Two renderings come out: string content (media as their token, parts joined by newlines, the
LLaVA convention "<image>\\nWhat is this?") for the server's named templates and for Jinja
templates that treat content as text, and Hugging Face's list content ({"type": "image"}, ...)
for Jinja templates that place media themselves (llava-hf's do)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sglang.server.errors import bad_request
from sglang.server.openai.protocol import (
    CONTENT_PART_TYPES,
    IMAGE_DETAILS,
    ChatCompletionRequest,
    ContentPart,
)
from sglang.server.openai.tool_calls import add_tool_fields

# "developer" is OpenAI's newer name for the system role.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "tool"}
# `modalities`: only text is generated; the rest are SGLang's input hints, accepted as such.
OUTPUT_MODALITIES = ("text",)
INPUT_HINTS = ("image", "multi-images", "video")
# Joins a message's parts, so an image part before a question gives "<image>\nquestion".
PART_JOINER = "\n"


@dataclass
class ChatInputs:
    """A conversation ready for a template, and its media in prompt order."""

    messages: list[dict[str, Any]] = field(default_factory=list)  # string content
    hf_messages: list[dict[str, Any]] = field(default_factory=list)  # HF list content
    images: list[str] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)  # VideoRef JSON form

    @property
    def has_media(self) -> bool:
        return bool(self.images or self.videos)


@dataclass
class _Part:
    text: str  # what the part contributes to string content
    hf: dict[str, Any]  # its HF list-content form


PartHandler = Callable[[ContentPart, str, dict[str, str], ChatInputs], _Part]
PART_KINDS: dict[str, PartHandler] = {}


def _kind(name: str) -> Callable[[PartHandler], PartHandler]:
    def register(fn: PartHandler) -> PartHandler:
        PART_KINDS[name] = fn
        return fn

    return register


@_kind("text")
def _text(part: ContentPart, where: str, tokens: dict[str, str], out: ChatInputs) -> _Part:
    if part.text is None:
        raise bad_request("a text content part needs 'text'", f"{where}.text")
    return _Part(part.text, {"type": "text", "text": part.text})


@_kind("image_url")
def _image(part: ContentPart, where: str, tokens: dict[str, str], out: ChatInputs) -> _Part:
    ref = part.image_url
    if ref is None:
        raise bad_request("an image_url content part needs 'image_url': {\"url\": ...}",
                          f"{where}.image_url")
    url = ref if isinstance(ref, str) else ref.url
    if not isinstance(ref, str) and ref.detail is not None and ref.detail not in IMAGE_DETAILS:
        raise bad_request(
            f"image_url.detail must be one of {', '.join(IMAGE_DETAILS)}, got {ref.detail!r}",
            f"{where}.image_url.detail",
        )
    if not url:
        raise bad_request("image_url.url is empty", f"{where}.image_url.url")
    out.images.append(url)
    return _Part(tokens["image"], {"type": "image"})


@_kind("video_url")
def _video(part: ContentPart, where: str, tokens: dict[str, str], out: ChatInputs) -> _Part:
    ref = part.video_url
    if ref is None or not ref.url:
        raise bad_request("a video_url content part needs 'video_url': {\"url\": ...}",
                          f"{where}.video_url")
    if ref.num_frames is not None and ref.num_frames < 1:
        raise bad_request(f"video_url.num_frames must be >= 1, got {ref.num_frames}",
                          f"{where}.video_url.num_frames")
    entry: dict[str, Any] = {"url": ref.url}
    if ref.num_frames is not None:
        entry["num_frames"] = ref.num_frames
    out.videos.append(entry)
    return _Part(tokens["video"], {"type": "video"})


assert set(PART_KINDS) == set(CONTENT_PART_TYPES), "protocol and handlers list the same parts"


def check_modalities(req: ChatCompletionRequest) -> None:
    if req.modalities is None:
        return
    known = (*OUTPUT_MODALITIES, *INPUT_HINTS)
    for m in req.modalities:
        if m not in known:
            raise bad_request(
                f"unsupported modality {m!r}: this server generates text only "
                f"(accepted: {', '.join(known)})", "modalities",
            )


def collect_chat_inputs(req: ChatCompletionRequest, tokens: dict[str, str]) -> ChatInputs:
    """Messages with string and HF list content, and the media of every part in order.
    `tokens` maps "image" / "video" to the model's token text."""
    if not req.messages:
        raise bad_request("messages must be a non-empty list", "messages")
    out = ChatInputs()
    for i, m in enumerate(req.messages):
        role = ROLES.get(m.role)
        if role is None:
            raise bad_request(
                f"unsupported role {m.role!r}; use one of {', '.join(ROLES)}",
                f"messages[{i}].role",
            )
        if m.content is None:
            if role != "assistant":  # OpenAI allows null content only for assistant messages
                raise bad_request(f"a {m.role} message needs content", f"messages[{i}].content")
            parts = [_Part("", {"type": "text", "text": ""})]
        elif isinstance(m.content, str):
            parts = [_Part(m.content, {"type": "text", "text": m.content})]
        else:
            parts = []
            for j, part in enumerate(m.content):
                where = f"messages[{i}].content[{j}]"
                handler = PART_KINDS.get(part.type)
                if handler is None:
                    raise bad_request(
                        f"unsupported content part type {part.type!r}; supported: "
                        f"{', '.join(PART_KINDS)}", f"{where}.type",
                    )
                parts.append(handler(part, where, tokens, out))
        out.messages.append({"role": role, "content": PART_JOINER.join(p.text for p in parts)})
        out.hf_messages.append({"role": role, "content": [p.hf for p in parts]})
        add_tool_fields(m, out.messages[-1])
        add_tool_fields(m, out.hf_messages[-1])
    return out


def template_places_media(chat_template: str | None) -> bool:
    """Whether a Jinja chat template handles list content with image/video parts itself (so it
    gets HF list content); otherwise it gets string content with the tokens in place."""
    if not chat_template:
        return False
    return any(f"{q}{kind}{q}" in chat_template for kind in ("image", "video") for q in "'\"")


__all__ = [
    "PART_KINDS", "ChatInputs", "check_modalities",
    "collect_chat_inputs", "template_places_media",
]

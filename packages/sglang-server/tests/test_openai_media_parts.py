"""OpenAI chat content parts with media, without a model: image_url / video_url parts become the
model's media token at their place in the text and the references go along in order; `detail`
and `modalities` are validated; named templates and Jinja templates (string or HF list content)
place the tokens; a model without an input processor answers media parts with a 400."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from sglang.protocol.media import MEDIA_TOKENS
from sglang.server.chat_templates import get_chat_template
from sglang.server.errors import APIError
from sglang.server.openai.chat import media_tokens, render_chat, without_bos
from sglang.server.openai.chat_media import (
    check_modalities,
    collect_chat_inputs,
    template_places_media,
)
from sglang.server.openai.protocol import ChatCompletionRequest

TOKENS = {"image": "<img>", "video": "<vid>"}
A, B = "data:image/png;base64,AAAA", "https://example.invalid/b.png"


def _req(messages: list[dict[str, Any]], **extra: Any) -> ChatCompletionRequest:
    return msgspec.convert({"messages": messages, **extra}, ChatCompletionRequest)


def _parts(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def image(url: str, detail: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if detail is not None:
        body["detail"] = detail
    return {"type": "image_url", "image_url": body}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def test_each_media_part_becomes_a_token_at_its_place() -> None:
    req = _req([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [image(A), text("What is this?")]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": [text("And"), image(B, "low"), text("vs"),
                                     {"type": "video_url", "video_url": {"url": "v.mp4",
                                                                         "num_frames": 8}}]},
    ])
    out = collect_chat_inputs(req, TOKENS)
    assert [m["content"] for m in out.messages] == [
        "Be brief.", "<img>\nWhat is this?", "A cat.", "And\n<img>\nvs\n<vid>"
    ]
    assert out.images == [A, B]
    assert out.videos == [{"url": "v.mp4", "num_frames": 8}]
    assert out.hf_messages[3]["content"] == [
        {"type": "text", "text": "And"}, {"type": "image"}, {"type": "text", "text": "vs"},
        {"type": "video"},
    ]
    assert out.has_media


def test_a_bare_url_string_is_taken_and_text_only_has_no_media() -> None:
    out = collect_chat_inputs(_req(_parts({"type": "image_url", "image_url": A})), TOKENS)
    assert out.images == [A]
    plain = collect_chat_inputs(_req([{"role": "user", "content": "hi"}]), TOKENS)
    assert not plain.has_media and plain.messages == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("part", "param", "fragment"),
    [
        (image(A, "ultra"), "messages[0].content[0].image_url.detail", "detail must be one of"),
        (image(""), "messages[0].content[0].image_url.url", "is empty"),
        ({"type": "image_url"}, "messages[0].content[0].image_url", "needs 'image_url'"),
        ({"type": "video_url"}, "messages[0].content[0].video_url", "needs 'video_url'"),
        ({"type": "input_audio", "input_audio": {}}, "messages[0].content[0].type",
         "unsupported content part type"),
        ({"type": "text"}, "messages[0].content[0].text", "needs 'text'"),
    ],
)
def test_malformed_parts_are_400s_naming_the_part(part: dict, param: str, fragment: str) -> None:
    with pytest.raises(APIError) as info:
        collect_chat_inputs(_req(_parts(part)), TOKENS)
    assert (info.value.status, info.value.param) == (400, param)
    assert fragment in info.value.message


@pytest.mark.parametrize("modalities", [None, [], ["text"], ["text", "image"], ["video"]])
def test_text_and_input_hints_are_accepted(modalities: list[str] | None) -> None:
    check_modalities(_req([{"role": "user", "content": "hi"}], modalities=modalities))


@pytest.mark.parametrize("modalities", [["text", "audio"], ["speech"]])
def test_other_output_modalities_are_refused(modalities: list[str]) -> None:
    with pytest.raises(APIError) as info:
        check_modalities(_req([{"role": "user", "content": "hi"}], modalities=modalities))
    assert (info.value.status, info.value.param) == (400, "modalities")
    assert "generates text only" in info.value.message


class _Tok:
    bos_token = "<s>"
    bos_token_id = 1

    def __init__(self, chat_template: str | None = None) -> None:
        self.chat_template = chat_template
        self.seen: list[Any] = []

    def __call__(self, text: str) -> Any:
        return type("Enc", (), {"input_ids": [1, 5]})()

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        self.seen.append(messages)
        return "<s>" + "".join(f"[{m['role']}]{m['content']}" for m in messages)


class _TM:
    def __init__(self, template: Any = None, tokenizer: Any = None,
                 processor: Any = None) -> None:
        self.chat_template, self.tokenizer = template, tokenizer or _Tok("{{ x }}")
        self._processor = processor

    def input_processor(self) -> Any:
        if self._processor is None:
            raise ValueError("this model (LlamaForCausalLM) does not take images or videos")
        return self._processor


def test_named_templates_place_the_image_where_the_part_was() -> None:
    req = _req(_parts(image(A), text("What is this?")))
    inputs = collect_chat_inputs(req, MEDIA_TOKENS)
    for name, expected in [
        ("vicuna_v1.1", "USER: <image>\nWhat is this? ASSISTANT:"),
        ("llava", "USER: <image>\nWhat is this? ASSISTANT:"),
        ("chatml-llava", "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n"
                         "<|im_start|>assistant\n"),
        ("yi-vl", "### Human: <image>\nWhat is this?\n### Assistant:"),
    ]:
        prompt, _ = render_chat(_TM(get_chat_template(name)), inputs)  # type: ignore[arg-type]
        assert prompt.endswith(expected), (name, prompt)
        assert prompt.count("<image>") == 1


def test_jinja_templates_get_list_content_only_when_they_place_media() -> None:
    llava_like = "{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}"
    assert template_places_media(llava_like)
    assert not template_places_media("{{ message['content'] }}")
    assert not template_places_media(None)
    inputs = collect_chat_inputs(_req(_parts(image(A), text("Q"))), TOKENS)
    for source, expected in [(llava_like, inputs.hf_messages), ("{{ x }}", inputs.messages)]:
        tok = _Tok(source)
        render_chat(_TM(tokenizer=tok), inputs)  # type: ignore[arg-type]
        assert tok.seen[-1] == expected


def test_bos_text_is_dropped_when_the_tokenizer_adds_bos() -> None:
    assert without_bos(_Tok(), "<s>USER: hi") == "USER: hi"
    assert without_bos(_Tok(), "USER: hi") == "USER: hi"


def test_media_tokens_come_from_the_processor_and_text_only_models_refuse() -> None:
    media = _req(_parts(text("look"), image(A)))
    plain = _req([{"role": "user", "content": "hi"}])

    class Proc:
        image_token = "<image_placeholder>"

    got = asyncio.run(media_tokens(_TM(processor=Proc()), media))  # type: ignore[arg-type]
    assert got == {"image": "<image_placeholder>", "video": "<video>"}
    # A text-only request never looks the processor up.
    assert asyncio.run(media_tokens(_TM(), plain)) == MEDIA_TOKENS  # type: ignore[arg-type]
    with pytest.raises(APIError) as info:
        asyncio.run(media_tokens(_TM(), media))  # type: ignore[arg-type]
    assert (info.value.status, info.value.param) == (400, "messages[0].content[1]")
    assert "does not take images" in info.value.message


# A llava-hf style template: images first in each message, then its text (transformers'
# `{% generation %}` tag left out; it changes nothing when rendering).
LLAVA_HF_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def test_a_real_tokenizer_with_a_llava_hf_template_places_the_image() -> None:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"t0": 0, "t1": 1}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0")
    hf.chat_template = LLAVA_HF_TEMPLATE
    req = _req(_parts(text("What is this?"), image(A)))
    inputs = collect_chat_inputs(req, MEDIA_TOKENS)
    prompt, stops = render_chat(_TM(tokenizer=hf), inputs)  # type: ignore[arg-type]
    assert prompt == "USER: <image>\nWhat is this? ASSISTANT:"
    assert stops == [] and inputs.images == [A]

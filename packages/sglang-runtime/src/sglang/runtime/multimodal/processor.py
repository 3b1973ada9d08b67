"""The input-processor interface and the torch-free functions a front door calls.

An input processor turns a prompt plus its media into input_ids with placeholder spans and typed
items. Processors register in `plugins.INPUT_PROCESSORS` under the HF architecture names they
serve; each entry is a factory `(ModelConfig) -> InputProcessor` (a class works). The server's
tokenizer process and the offline Engine both go through `prepare_multimodal`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sglang.protocol.media import MediaField, MediaRef, media_per_prompt
from sglang.runtime import plugins
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.multimodal.items import check_items

Prompt = str | list[int]


@runtime_checkable
class InputProcessor(Protocol):
    def process(
        self,
        prompt: Prompt,
        images: Sequence[MediaRef],
        videos: Sequence[MediaRef],
        tokenizer: Any,
    ) -> tuple[list[int], list[MultimodalItem]]:
        """Tokenize `prompt` (text) or take it as ids, load and preprocess the media, and
        return input_ids with one placeholder span per item plus the items in span order.
        Unreadable media and prompts that do not match the media raise ValueError."""
        ...


_instances: dict[tuple[int, str], InputProcessor] = {}
_lock = threading.Lock()


def input_processor_for(config: ModelConfig) -> InputProcessor:
    """The processor of the first architecture of `config` that has one; ValueError when the
    model takes no images or videos."""
    for arch in config.architectures:
        if arch in plugins.INPUT_PROCESSORS:
            with _lock:
                key = (id(config), arch)
                if key not in _instances:
                    _instances[key] = plugins.INPUT_PROCESSORS.get(arch)(config)
                return _instances[key]
    raise ValueError(
        f"this model ({', '.join(config.architectures) or 'no architecture'}) does not take "
        f"images or videos: no input processor is registered for it"
    )


def has_media(image_data: MediaField, video_data: MediaField) -> bool:
    return bool(image_data) or bool(video_data)


def prepare_multimodal(
    config: ModelConfig,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    image_data: MediaField,
    video_data: MediaField,
    is_batch: bool,
) -> list[tuple[list[int], list[MultimodalItem] | None]]:
    """(input_ids, items) for every prompt: text-only prompts of the batch are tokenized
    (or taken as ids) as usual with items None. Raises ValueError (-> HTTP 400) for media of a
    model without a processor, unreadable media, or spans the processor got wrong. Run it
    after the client's input_ids were checked against the vocabulary: placeholders are not."""
    images = media_per_prompt(image_data, len(prompts), is_batch, "image_data")
    videos = media_per_prompt(video_data, len(prompts), is_batch, "video_data")
    out: list[tuple[list[int], list[MultimodalItem] | None]] = []
    for prompt, imgs, vids in zip(prompts, images, videos):
        if not imgs and not vids:
            ids = list(prompt) if not isinstance(prompt, str) else _encode(tokenizer, prompt)
            out.append((ids, None))
            continue
        ids, items = input_processor_for(config).process(prompt, imgs, vids, tokenizer)
        items = sorted(items, key=lambda it: it.offset)
        check_items(ids, items, config.vocab_size)
        out.append((list(ids), items or None))
    return out


def _encode(tokenizer: Any, text: str) -> list[int]:
    if tokenizer is None:
        raise ValueError("this model has no tokenizer: pass input_ids instead of prompt")
    return list(tokenizer.encode(text))


ItemsByIds = dict[tuple[int, ...], list[MultimodalItem]]


def media_to_input_ids(
    config: ModelConfig,
    tokenizer: Any,
    prompt: str | list[str] | None,
    input_ids: list[int] | list[list[int]] | None,
    image_data: MediaField,
    video_data: MediaField,
) -> tuple[list[int] | list[list[int]], ItemsByIds]:
    """For a front door that takes `prompt` or `input_ids` (one or a batch): the prompts as ids
    with placeholder spans, in the caller's shape, and each prompt's items keyed by its ids (a
    prompt's ids, placeholders included, determine its items; `attach_items` uses that)."""
    if (prompt is None) == (input_ids is None):
        raise ValueError("give exactly one of prompt or input_ids")
    if prompt is not None:
        is_batch = not isinstance(prompt, str)
        prompts: list[Prompt] = list(prompt) if is_batch else [prompt]  # type: ignore[arg-type]
    else:
        is_batch = bool(input_ids) and not all(isinstance(t, int) for t in input_ids)  # type: ignore[union-attr]
        prompts = [list(x) for x in input_ids] if is_batch else [list(input_ids)]  # type: ignore[arg-type, union-attr]
    done = prepare_multimodal(config, tokenizer, prompts, image_data, video_data, is_batch)
    by_ids: ItemsByIds = {tuple(ids): items for ids, items in done if items}
    ids_out = [ids for ids, _ in done]
    return (ids_out if is_batch else ids_out[0]), by_ids


def attach_items(reqs: Sequence[Any], by_ids: ItemsByIds) -> None:
    """Give every request (each copy of an n > 1 fan-out too) the items of its prompt."""
    for req in reqs:
        req.mm_items = by_ids.get(tuple(req.prompt_ids))

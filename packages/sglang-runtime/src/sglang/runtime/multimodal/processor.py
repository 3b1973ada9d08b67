"""The input-processor interface and the torch-free functions a front door calls.

An input processor turns a prompt plus its media into input_ids with placeholder spans and typed
items. Processors register in `plugins.INPUT_PROCESSORS` under the HF architecture names they
serve; each entry is a factory `(ModelConfig) -> InputProcessor` (a class works). The server's
tokenizer process and the offline Engine both reach it through the front door
(`sglang.runtime.inputs`), which calls `process_prompt` for each prompt that carries media."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sglang.protocol.media import MediaRef
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


def process_prompt(
    processor: InputProcessor,
    prompt: Prompt,
    images: Sequence[MediaRef],
    videos: Sequence[MediaRef],
    tokenizer: Any,
    vocab_size: int,
) -> tuple[list[int], list[MultimodalItem]]:
    """One prompt with media through its model's processor: input_ids holding one placeholder
    span per item, and the items in span order. ValueError (-> HTTP 400) for unreadable media
    or spans the processor got wrong. The front door runs it after checking a client's
    input_ids against the vocabulary: placeholders lie beyond it on purpose."""
    ids, items = processor.process(prompt, images, videos, tokenizer)
    items = sorted(items, key=lambda it: it.offset)
    check_items(ids, items, vocab_size)
    return list(ids), items

"""The media of a batch's prompts are preprocessed side by side: jobs really overlap, a shared
tokenizer is called one thread at a time, and a batch reports its first bad prompt."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.inputs import ModelLimits, prepare_request
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.multimodal import parallel
from sglang.runtime.multimodal.items import Features, splice_items

VOCAB = 50
MARKER = 7


@pytest.fixture
def two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_pool", ThreadPoolExecutor(2))


def test_jobs_of_a_batch_overlap(two_threads: None) -> None:
    both_inside = threading.Barrier(2, timeout=10)  # breaks (an error) unless both run at once
    futures = parallel.side_by_side([both_inside.wait, both_inside.wait])
    assert sorted(f.result() for f in futures) == [0, 1]


def test_a_single_job_runs_inline_and_keeps_its_error() -> None:
    def boom() -> None:
        raise ValueError("bad image")

    (future,) = parallel.side_by_side([boom])
    assert future.done()
    with pytest.raises(ValueError, match="bad image"):
        future.result()


class _Tokenizer:
    """Records whether two threads were ever inside it at once."""

    name_or_path = "fake"

    def __init__(self) -> None:
        self.inside = 0
        self.overlapped = False

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        self.inside += 1
        self.overlapped |= self.inside > 1
        time.sleep(0.01)
        self.inside -= 1
        return [1 + len(word) % 5 for word in text.split()]


def test_the_shared_tokenizer_is_called_one_thread_at_a_time(two_threads: None) -> None:
    tok = _Tokenizer()
    shared = parallel.serial_tokenizer(tok)
    assert parallel.serial_tokenizer(tok) is shared and shared.name_or_path == "fake"
    futures = parallel.side_by_side([lambda: shared.encode("a bb ccc")] * 6)
    assert [f.result() for f in futures] == [[2, 3, 4]] * 6
    assert not tok.overlapped


class _Processor:
    """Each image ref is "ok:<n>" (n tokens) or anything else (unreadable)."""

    def process(self, prompt: Any, images: list, videos: list,
                tokenizer: Any) -> tuple[list[int], list[MultimodalItem]]:
        feats = []
        for ref in images:
            if not str(ref).startswith("ok:"):
                raise ValueError(f"cannot decode image {ref!r}")
            n = int(str(ref)[3:])
            feats.append(Features("image", bytes(4 * n), "float32", (n,), n))
        return splice_items(list(prompt), {MARKER: feats}, VOCAB)


def test_a_batch_reports_its_first_bad_prompt_and_keeps_prompt_order(two_threads: None) -> None:
    limits = ModelLimits(256, VOCAB)
    processor = _Processor()

    def prepare(refs: list[str]) -> Any:
        obj = GenerateReqInput(input_ids=[[1, MARKER, 2]] * len(refs),
                               image_data=[[r] for r in refs])
        return prepare_request(obj, _Tokenizer(), limits, lambda: processor)

    out = prepare(["ok:3", "ok:1", "ok:5"])
    assert [len(r.msg.input_ids) for r in out.reqs] == [5, 3, 7]
    with pytest.raises(InvalidRequest, match="'first-bad'") as info:
        prepare(["ok:2", "first-bad", "second-bad"])
    assert info.value.param == "image_data"

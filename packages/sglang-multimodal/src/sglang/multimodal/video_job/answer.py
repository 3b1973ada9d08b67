"""The job's unit of work, `answer(batch of videos) -> one record per video`, and its plug-ins.

An answerer is built once per worker from the `JobSpec` (a plain msgspec Struct, so it travels
to Ray actors and subprocesses) and then called with batches. It returns one `Record` per task,
in order: a video it could not answer is a record with `error`, never an exception. An exception
out of `answer` fails the whole batch: the runner redoes its videos one by one, and an exception
for a video alone is a failed attempt of that video (retried, then its error row).

`--answerer` names the factory: a name of `ANSWERERS` or `module:attr` (tests use a fake one;
other backends plug in the same way).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from sglang.multimodal.video_job.records import Record

# Built-in answerers by name -> "module:attr" of a factory `(JobSpec) -> Answerer`.
ANSWERERS: dict[str, str] = {
    "engine": "sglang.multimodal.video_job.engine_answer:EngineAnswerer",
}


class VideoTask(msgspec.Struct, frozen=True):
    id: str  # the manifest id (a path relative to the video folder)
    path: str  # where to read it
    prompt: str  # the full prompt text, the video's token included


class JobSpec(msgspec.Struct, kw_only=True):
    """Everything a worker needs to build its answerer."""

    answerer: str = "engine"
    engine_kwargs: dict[str, Any] = {}  # RuntimeArgs fields for sglang.runtime.engine.Engine
    sampling: dict[str, Any] = {}  # SamplingParams fields
    num_frames: int | None = None  # frames sampled per video (None: the model's default)
    options: dict[str, str] = {}  # --answerer-option KEY=VALUE, for the answerer's own use


class Answerer(Protocol):
    def answer(self, tasks: list[VideoTask]) -> list[Record]: ...

    def close(self) -> None: ...


def answerer_factory(name: str) -> Callable[[JobSpec], Answerer]:
    target = ANSWERERS.get(name, name)
    if ":" not in target:
        raise ValueError(
            f"unknown answerer {name!r}: expected one of {', '.join(ANSWERERS)} or module:attr"
        )
    module, _, attr = target.partition(":")
    factory: Any = importlib.import_module(module)
    for part in attr.split("."):
        factory = getattr(factory, part)
    return factory  # type: ignore[no-any-return]


def build_answerer(spec: JobSpec) -> Answerer:
    return answerer_factory(spec.answerer)(spec)


def check_answers(tasks: list[VideoTask], records: list[Record]) -> list[Record]:
    """The answerer's records, checked to be one per task in order: a broken answerer must not
    commit a record under the wrong video."""
    got = [r.id for r in records]
    want = [t.id for t in tasks]
    if got != want:
        raise RuntimeError(f"the answerer returned records for {got}, expected {want}")
    return records

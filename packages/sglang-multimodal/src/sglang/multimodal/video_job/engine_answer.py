"""The answerer backed by the offline Engine: one `generate` call per batch of videos.

The Engine refuses a whole batch when one prompt's media is unreadable (the front door checks
every prompt before any reaches the scheduler), so a refused batch is split and each video is
asked alone: one corrupt file costs its own error row, never its neighbours' answers.
"""

from __future__ import annotations

from typing import Any

from sglang.multimodal.video_job.answer import JobSpec, VideoTask
from sglang.multimodal.video_job.records import Record


def video_ref(path: str, num_frames: int | None) -> Any:
    """A `video_data` entry for `path` that asks for `num_frames` frames: the one place that knows
    how a request spells it (`{"url", "num_frames"}`, `sglang.protocol.media.VideoRef`'s JSON
    form). A protocol without VideoRef takes the bare path; the model samples its default."""
    try:
        from sglang.protocol.media import VideoRef  # type: ignore[attr-defined]
    except ImportError:
        return path
    return VideoRef(source=path, num_frames=num_frames).to_json()


def _meta(out: dict[str, Any]) -> dict[str, Any]:
    info = out.get("meta_info", {})
    keep = ("prompt_tokens", "completion_tokens", "finish_reason")
    return {k: info[k] for k in keep if k in info}


class EngineAnswerer:
    def __init__(self, spec: JobSpec) -> None:
        from sglang.runtime.engine import Engine

        self.spec = spec
        self.engine = Engine(**spec.engine_kwargs)

    def _generate(self, tasks: list[VideoTask]) -> list[dict[str, Any]]:
        outs = self.engine.generate(
            [t.prompt for t in tasks],
            [dict(self.spec.sampling) for _ in tasks],
            video_data=[[video_ref(t.path, self.spec.num_frames)] for t in tasks],
        )
        assert isinstance(outs, list)
        return outs

    def answer(self, tasks: list[VideoTask]) -> list[Record]:
        try:
            outs = self._generate(tasks)
        except ValueError as e:  # InvalidRequest, RequestError: the request, not the engine
            if len(tasks) > 1:
                return [r for t in tasks for r in self.answer([t])]
            return [Record(id=tasks[0].id, error=str(e))]
        return [Record(id=t.id, answer=o["text"], meta=_meta(o)) for t, o in zip(tasks, outs)]

    def close(self) -> None:
        self.engine.shutdown()

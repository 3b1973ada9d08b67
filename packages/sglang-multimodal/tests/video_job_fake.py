"""A fast, deterministic answerer for the video-job tests (`--answerer video_job_fake:Fake`).

Options (`--answerer-option KEY=VALUE`):
- fail=ID,ID     these videos fail every attempt
- flaky=ID,ID    these fail their first attempt in each process, then succeed
- raise=ID       answer() raises for any batch holding this video
- crash=ID       the process kills itself (SIGKILL) when handed this video, once: the first to
                 do so creates `marker` (required with crash), later ones answer it
- calls=PATH     one line per video answered is appended here (how much "model work" ran)
- delay=SECONDS  time spent per video

The answer is a digest of the video's bytes and prompt, so a test can recompute it; a file
PyAV cannot decode becomes an error record, as with the real model.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

from sglang.multimodal.video_job.answer import JobSpec, VideoTask
from sglang.multimodal.video_job.records import Record


def expected_answer(path: Path | str, prompt: str) -> str:
    digest = hashlib.sha256(Path(path).read_bytes() + prompt.encode()).hexdigest()[:16]
    return f"video {digest}"


def _decodes(path: str) -> str | None:
    import av

    try:
        with av.open(path) as container:
            next(container.decode(video=0))
    except Exception as e:  # any PyAV failure: the file is no video
        return f"cannot decode {path}: {e}"
    return None


def _ids(text: str | None) -> set[str]:
    return {s for s in (text or "").split(",") if s}


class Fake:
    def __init__(self, spec: JobSpec) -> None:
        opts = spec.options
        self.fail, self.flaky, self.crash, self.raises = (
            _ids(opts.get(k)) for k in ("fail", "flaky", "crash", "raise"))
        self.marker = Path(opts["marker"]) if self.crash else None
        self.calls = Path(opts["calls"]) if "calls" in opts else None
        self.delay = float(opts.get("delay", 0))
        self.seen: Counter[str] = Counter()

    def _maybe_crash(self, tasks: list[VideoTask]) -> None:
        if self.marker is None or not self.crash & {t.id for t in tasks}:
            return
        try:
            with open(self.marker, "x"):
                pass
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    def _one(self, task: VideoTask) -> Record:
        time.sleep(self.delay)
        self.seen[task.id] += 1
        if self.calls is not None:
            with open(self.calls, "a") as f:
                f.write(task.id + "\n")
        if task.id in self.fail or (task.id in self.flaky and self.seen[task.id] == 1):
            return Record(id=task.id, error=f"told to fail {task.id}")
        error = _decodes(task.path)
        if error is not None:
            return Record(id=task.id, error=error)
        return Record(id=task.id, answer=expected_answer(task.path, task.prompt))

    def answer(self, tasks: list[VideoTask]) -> list[Record]:
        self._maybe_crash(tasks)
        if self.raises & {t.id for t in tasks}:
            raise RuntimeError(f"raised for {sorted(self.raises & {t.id for t in tasks})}")
        return [self._one(t) for t in tasks]

    def close(self) -> None:
        pass

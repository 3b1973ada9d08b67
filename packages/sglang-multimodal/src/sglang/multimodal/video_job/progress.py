"""What the job shows while it runs (a tqdm bar: videos done, videos/s, ETA) and at the end (one
summary line; `--summary-json` writes the same numbers for benchmarks)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Summary:
    videos: int  # this node's share of the manifest
    skipped: int  # already finished by an earlier run
    answered: int = 0
    errors: int = 0
    redone: int = 0  # attempts repeated after a failure or a dead worker
    load_s: float = 0.0  # start-up: building the answerers (model load)
    run_s: float = 0.0  # from the first batch handed out to the last record committed

    @property
    def videos_per_s(self) -> float:
        done = self.answered + self.errors
        return done / self.run_s if self.run_s > 0 else 0.0

    def line(self) -> str:
        return (f"video_job: {self.videos} videos, {self.skipped} already done, "
                f"{self.answered} answered, {self.errors} errors, {self.redone} redone; "
                f"{self.videos_per_s:.2f} videos/s over {self.run_s:.1f} s "
                f"(+{self.load_s:.1f} s start-up)")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "videos_per_s": self.videos_per_s}


class Progress:
    """The bar plus the summary's counters; `start()` when the first batch goes out."""

    def __init__(self, summary: Summary, enabled: bool) -> None:
        self.summary = summary
        self._t0 = time.perf_counter()
        self._started: float | None = None
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=summary.videos - summary.skipped, unit=" videos",
                             dynamic_ncols=True, file=sys.stderr)

    def start(self) -> None:
        if self._started is None:
            self._started = time.perf_counter()
            self.summary.load_s = self._started - self._t0
            if self._bar is not None:
                self._bar.reset()  # rate and ETA count from here, not from the model load

    def committed(self, ok: bool) -> None:
        if ok:
            self.summary.answered += 1
        else:
            self.summary.errors += 1
        if self._bar is not None:
            self._bar.update(1)
            if self.summary.errors:
                self._bar.set_postfix(errors=self.summary.errors, refresh=False)

    def redone(self, n: int) -> None:
        self.summary.redone += n

    def finish(self, summary_json: Path | None = None) -> Summary:
        if self._started is not None:
            self.summary.run_s = time.perf_counter() - self._started
        if self._bar is not None:
            self._bar.close()
        print(self.summary.line(), file=sys.stderr, flush=True)
        if summary_json is not None:
            summary_json.write_text(json.dumps(self.summary.to_json(), indent=1) + "\n")
        return self.summary

"""Settling answered batches into records, and the in-process loop that uses one answerer.

`Ledger` is the one place that decides what happens to an attempt: an answer, or an error on the
last allowed attempt, is committed (exactly one record per video per run); an earlier error goes
back to the queue. Both the local loop and the Ray driver feed it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import msgspec

from sglang.multimodal.video_job.answer import (
    Answerer,
    JobSpec,
    VideoTask,
    build_answerer,
    check_answers,
)
from sglang.multimodal.video_job.progress import Progress
from sglang.multimodal.video_job.records import Record, RecordLog

# Times a video may be in flight on a worker that dies before it is given up with an error row:
# a file that crashes its decoder must not take down every worker of the pool in turn.
MAX_WORKER_DEATHS = 3


def batches(tasks: Iterable[VideoTask], size: int) -> deque[list[VideoTask]]:
    out: deque[list[VideoTask]] = deque()
    for task in tasks:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(task)
    return out


class Ledger:
    def __init__(self, log: RecordLog, progress: Progress, retries: int) -> None:
        self.log = log
        self.progress = progress
        self.retries = retries
        self.attempts: Counter[str] = Counter()
        self.deaths: Counter[str] = Counter()
        self.committed: set[str] = set()

    def _commit(self, record: Record) -> None:
        if record.id in self.committed:
            return  # a late duplicate (never expected): the first record stands
        meta = {**record.meta, "attempts": self.attempts[record.id]}
        self.log.append(msgspec.structs.replace(record, meta=meta))
        self.committed.add(record.id)
        self.progress.committed(record.ok)

    def settle(self, tasks: list[VideoTask], records: list[Record]) -> list[VideoTask]:
        """Commit what is final; return the tasks to try again. `records` match `tasks` one to
        one (`check_answers`)."""
        redo = []
        for task, record in zip(tasks, records, strict=True):
            self.attempts[task.id] += 1
            if record.ok or self.attempts[task.id] > self.retries:
                self._commit(record)
            else:
                redo.append(task)
        self.progress.redone(len(redo))
        return redo

    def raised(self, tasks: list[VideoTask], error: str) -> list[list[VideoTask]]:
        """The answerer raised for the whole batch: the batches to queue again. Several videos
        are split up and redone one by one (uncounted: one of them may have spoiled the rest);
        a video alone counts one failed attempt."""
        if len(tasks) > 1:
            self.progress.redone(len(tasks))
            return [[t] for t in tasks]
        redo = self.settle(tasks, [Record(id=tasks[0].id, error=error)])
        return [redo] if redo else []

    def worker_died(self, tasks: list[VideoTask]) -> list[VideoTask]:
        """The worker died with these in flight: redo them (not counted as attempts, the video
        may be innocent) unless they have been on too many dying workers already."""
        redo = []
        for task in tasks:
            self.deaths[task.id] += 1
            if self.deaths[task.id] >= MAX_WORKER_DEATHS:
                self._commit(Record(id=task.id, error=(
                    f"the worker died {self.deaths[task.id]} times while answering this video")))
            else:
                redo.append(task)
        self.progress.redone(len(redo))
        return redo


def _answer_checked(answerer: Answerer, batch: list[VideoTask]) -> list[Record]:
    return check_answers(batch, answerer.answer(batch))


def run_local(
    tasks: list[VideoTask], spec: JobSpec, ledger: Ledger, batch_size: int, inflight: int = 1
) -> None:
    """Answer `tasks` in this process with one answerer, retrying failed videos. `inflight`
    batches run at once (threads into the one answerer: the Engine takes concurrent calls), so
    the next batch's videos are decoded while the model works on the current one. Records are
    committed here, in this thread only."""
    answerer = build_answerer(spec)
    queue = batches(tasks, batch_size)
    ledger.progress.start()
    running: dict[Future[list[Record]], list[VideoTask]] = {}
    try:
        with ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="video-job") as pool:
            while queue or running:
                while queue and len(running) < inflight:
                    batch = queue.popleft()
                    running[pool.submit(_answer_checked, answerer, batch)] = batch
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    batch = running.pop(future)
                    try:
                        records = future.result()
                    except Exception as e:  # the answerer's failure, not the job's: retry
                        queue.extend(ledger.raised(batch, f"{type(e).__name__}: {e}"))
                        continue
                    redo = ledger.settle(batch, records)
                    if redo:
                        queue.append(redo)
    finally:
        answerer.close()

"""Scale-out on Ray: one actor per GPU (or CPU worker) owning an answerer, fed from one queue.

The driver keeps the queue of batches and hands the next one to whichever actor is free, so a
slow or lost node simply takes less. Actors only answer; the driver commits every record to one
log, so the records of a Ray job are gathered by construction. An actor that dies (node lost,
process killed, a decoder crash) loses nothing committed: its in-flight batch is split into
single videos and queued again for the others (`Ledger.worker_died` bounds how often one video
may take a worker down). The pool is sized explicitly: a local cluster gets exactly the CPUs the
actors ask for, since a pool whose actors cannot all be placed waits forever.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any

from sglang.multimodal.video_job.answer import JobSpec, VideoTask, build_answerer, check_answers
from sglang.multimodal.video_job.records import Record
from sglang.multimodal.video_job.runner import Ledger, batches

logger = logging.getLogger("sglang.multimodal.video_job")


@dataclass(frozen=True)
class RayOptions:
    address: str | None  # None: start a local cluster for this job
    workers: int | None  # None: one per GPU group of the cluster (at least one)
    gpus_per_worker: float | None  # None: tp_size when the cluster has GPUs and the job uses them
    cpus_per_worker: float = 1.0
    inflight: int = 1  # batches each actor holds at once


class VideoWorker:
    """The actor: builds its answerer once, then answers batches."""

    def __init__(self, spec: JobSpec) -> None:
        self.answerer = build_answerer(spec)

    def ready(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def answer(self, tasks: list[VideoTask]) -> list[Record]:
        return check_answers(tasks, self.answerer.answer(tasks))


def _uses_gpu(spec: JobSpec) -> bool:
    return not str(spec.engine_kwargs.get("device", "auto")).startswith("cpu")


def _pool_shape(ray: Any, spec: JobSpec, opts: RayOptions) -> tuple[int, float]:
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per = opts.gpus_per_worker
    if per is None:
        per = float(spec.engine_kwargs.get("tp_size", 1)) if gpus and _uses_gpu(spec) else 0.0
    workers = opts.workers if opts.workers is not None else (int(gpus // per) if per else 1)
    return max(workers, 1), per


def _start(ray: Any, opts: RayOptions) -> bool:
    """Connect or start a cluster unless this process already has one; True when we own it."""
    if ray.is_initialized():
        return False
    if opts.address is not None:
        ray.init(address=opts.address, include_dashboard=False)
    elif opts.workers is not None:
        cpus = math.ceil(opts.workers * opts.cpus_per_worker)
        ray.init(num_cpus=max(1, cpus), include_dashboard=False)
    else:  # one worker per GPU: Ray counts this machine's GPUs and CPUs
        ray.init(include_dashboard=False)
    return True


def _ready(ray: Any, actors: list[Any]) -> list[Any]:
    from ray.exceptions import RayActorError

    alive = []
    for actor in actors:
        try:
            where = ray.get(actor.ready.remote())
        except RayActorError as e:
            logger.warning("a video worker failed to start: %s", e)
            continue
        logger.info("video worker ready on %s", where)
        alive.append(actor)
    if not alive:
        raise RuntimeError("no video worker started (see the errors above)")
    return alive


def _drive(ray: Any, actors: list[Any], ledger: Ledger, queue: deque[list[VideoTask]],
           inflight: int) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    # One slot per batch an actor may hold at once; a dead actor's slots are never refilled.
    free = deque(actor for _ in range(inflight) for actor in actors)
    dead: set[Any] = set()
    in_flight: dict[Any, tuple[Any, list[VideoTask]]] = {}
    ledger.progress.start()
    while queue or in_flight:
        while free and queue:
            actor = free.popleft()
            if actor in dead:
                continue
            batch = queue.popleft()
            in_flight[actor.answer.remote(batch)] = (actor, batch)
        if not in_flight:
            left = sum(len(b) for b in queue)
            raise RuntimeError(f"every video worker died with {left} videos left; "
                               "rerun the same command to finish them")
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        actor, batch = in_flight.pop(ref)
        try:
            records = ray.get(ref)
        except RayActorError as e:
            if actor not in dead:
                logger.warning("a video worker died; redoing its videos: %s", e)
            dead.add(actor)
            queue.extend([t] for t in ledger.worker_died(batch))
            continue
        except RayTaskError as e:
            redo = ledger.failed(batch, str(e.cause if e.cause is not None else e))
        else:
            redo = ledger.settle(batch, records)
        free.append(actor)
        if redo:
            queue.append(redo)


def run_ray(
    tasks: list[VideoTask], spec: JobSpec, ledger: Ledger, batch_size: int, opts: RayOptions
) -> None:
    """Answer `tasks` on a pool of actors, each holding `opts.inflight` batches at once (a
    threaded actor: the next batch decodes while the model works)."""
    import ray

    owned = _start(ray, opts)
    actors: list[Any] = []
    try:
        workers, gpus = _pool_shape(ray, spec, opts)
        actor_cls = ray.remote(num_cpus=opts.cpus_per_worker, num_gpus=gpus, max_restarts=0,
                               max_task_retries=0, max_concurrency=opts.inflight)(VideoWorker)
        actors = [actor_cls.remote(spec) for _ in range(min(workers, max(len(tasks), 1)))]
        _drive(ray, _ready(ray, actors), ledger, batches(tasks, batch_size), opts.inflight)
    finally:
        for actor in actors:
            ray.kill(actor)
        if owned:
            ray.shutdown()

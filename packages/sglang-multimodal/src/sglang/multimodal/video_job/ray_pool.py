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
    start_timeout: float = 900.0  # seconds to wait for the first actor's Engine


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
    """(actors, GPUs each), at most what the whole cluster holds: more actors than fit would
    wait forever for resources that never come."""
    total = ray.cluster_resources()
    gpus, cpus = float(total.get("GPU", 0)), float(total.get("CPU", 0))
    per = opts.gpus_per_worker
    if per is None:
        per = float(spec.engine_kwargs.get("tp_size", 1)) if gpus and _uses_gpu(spec) else 0.0
    workers = opts.workers if opts.workers is not None else (int(gpus // per) if per else 1)
    fit = min(int(gpus // per) if per else workers,
              int(cpus // opts.cpus_per_worker) if opts.cpus_per_worker else workers)
    if fit < 1:
        raise RuntimeError(f"the Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs) cannot hold one "
                           f"video worker of {opts.cpus_per_worker:g} CPUs and {per:g} GPUs")
    if workers > fit:
        logger.warning("the Ray cluster holds %d video workers, not %d", fit, workers)
    return max(1, min(workers, fit)), per


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


class _Pool:
    """The driver's view: actors still starting, free slots (one per batch an actor may hold),
    batches in flight. An actor joins when its Engine is up, so work starts with the first."""

    def __init__(self, ray: Any, actors: list[Any], inflight: int) -> None:
        self.ray = ray
        self.inflight = inflight
        self.starting = {actor.ready.remote(): actor for actor in actors}
        self.free: deque[Any] = deque()
        self.dead: set[Any] = set()
        self.running: dict[Any, tuple[Any, list[VideoTask]]] = {}

    def dispatch(self, queue: deque[list[VideoTask]]) -> None:
        while self.free and queue:
            actor = self.free.popleft()
            if actor not in self.dead:
                batch = queue.popleft()
                self.running[actor.answer.remote(batch)] = (actor, batch)

    def started(self, ref: Any) -> None:
        from ray.exceptions import RayActorError

        actor = self.starting.pop(ref)
        try:
            where = self.ray.get(ref)
        except RayActorError as e:
            logger.warning("a video worker failed to start: %s", e)
            return
        logger.info("video worker ready on %s", where)
        self.free.extend([actor] * self.inflight)


def _drive(pool: _Pool, ledger: Ledger, queue: deque[list[VideoTask]],
           start_timeout: float) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    ray = pool.ray
    while queue or pool.running:
        pool.dispatch(queue)
        if not pool.running and not pool.starting:
            left = sum(len(b) for b in queue)
            raise RuntimeError(f"every video worker died with {left} videos left; "
                               "rerun the same command to finish them")
        # Nothing to do until an actor is up: bounded, since actors that cannot be placed
        # (the cluster busy with others) would otherwise be waited for forever.
        timeout = start_timeout if not pool.running and not pool.free else None
        done, _ = ray.wait([*pool.running, *pool.starting], num_returns=1, timeout=timeout)
        if not done:
            raise RuntimeError(
                f"no video worker started within {start_timeout:g} s: is the cluster busy with "
                "other actors, or short of the CPUs/GPUs one needs?")
        [ref] = done
        if ref in pool.starting:
            pool.started(ref)
            if pool.free:
                ledger.progress.start()
            continue
        actor, batch = pool.running.pop(ref)
        try:
            records = ray.get(ref)
        except RayActorError as e:
            if actor not in pool.dead:
                logger.warning("a video worker died; redoing its videos: %s", e)
            pool.dead.add(actor)
            queue.extend([t] for t in ledger.worker_died(batch))
            continue
        except RayTaskError as e:
            cause = e.cause if e.cause is not None else e
            queue.extend(ledger.raised(batch, f"{type(cause).__name__}: {cause}"))
        else:
            redo = ledger.settle(batch, records)
            if redo:
                queue.append(redo)
        pool.free.append(actor)


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
        pool = _Pool(ray, actors, opts.inflight)
        _drive(pool, ledger, batches(tasks, batch_size), opts.start_timeout)
    finally:
        for actor in actors:
            ray.kill(actor)
        if owned:
            ray.shutdown()

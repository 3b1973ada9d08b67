"""One run of the job: manifest, this node's share minus what is already recorded, answer the
rest (in process or on Ray), then merge.

Exit status: 0 when every video of this node's share has a record (error rows included: a
corrupt video is an answer of its own kind); 1 when the run stopped early (every Ray worker
died, the model failed to load) or a merge finds videos missing; rerunning the same command
finishes the job without repeating finished videos.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sglang.multimodal.video_job import cli
from sglang.multimodal.video_job.answer import JobSpec, VideoTask
from sglang.multimodal.video_job.manifest import build_manifest, video_path
from sglang.multimodal.video_job.merge import check, merge, output_format
from sglang.multimodal.video_job.progress import Progress, Summary
from sglang.multimodal.video_job.prompts import Prompter, load_prompts
from sglang.multimodal.video_job.records import RecordLog, new_log_path, read_folder, records_dir
from sglang.multimodal.video_job.runner import Ledger, run_local
from sglang.multimodal.video_job.static import resolve_split

logger = logging.getLogger("sglang.multimodal.video_job")


def _say(text: str) -> None:
    print(f"video_job: {text}", file=sys.stderr, flush=True)


def _spec(ns: argparse.Namespace) -> JobSpec:
    return JobSpec(
        answerer=ns.answerer, engine_kwargs=cli.engine_kwargs(ns), sampling=cli.sampling_dict(ns),
        num_frames=ns.num_frames, options=cli.answerer_options(ns),
    )


def _check_numbers(ns: argparse.Namespace) -> None:
    for flag, value, least in (("--batch-size", ns.batch_size, 1), ("--retries", ns.retries, 0),
                               ("--num-frames", ns.num_frames, 1), ("--inflight", ns.inflight, 1)):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")


def _merge_and_report(manifest: list[str], ns: argparse.Namespace) -> int:
    result = merge(manifest, ns.output)
    _say(f"{ns.output}: {result.describe()}")
    return 0 if result.complete else 1


def _answer(tasks: list[VideoTask], spec: JobSpec, ledger: Ledger, ns: argparse.Namespace) -> None:
    if ns.ray or ns.ray_address is not None:
        from sglang.multimodal.video_job.ray_pool import RayOptions, run_ray

        opts = RayOptions(address=ns.ray_address, workers=ns.ray_workers,
                          gpus_per_worker=ns.ray_gpus_per_worker,
                          cpus_per_worker=ns.ray_cpus_per_worker, inflight=ns.inflight,
                          start_timeout=ns.ray_start_timeout)
        run_ray(tasks, spec, ledger, ns.batch_size, opts)
    else:
        run_local(tasks, spec, ledger, ns.batch_size, ns.inflight)


def run_job(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_numbers(ns)
        output_format(ns.output)
        manifest = build_manifest(ns.video_dir)
        split = resolve_split(ns.num_nodes, ns.node_rank)
        spec = _spec(ns)
        common, per_video = load_prompts(ns.prompts_file)
        prompter = Prompter(common or ns.prompt, ns.prompt_template, per_video)
    except ValueError as e:
        parser.error(str(e))
    if ns.merge:
        return _merge_and_report(manifest, ns)

    mine = split.take(manifest)
    folder = records_dir(ns.output)
    done = read_folder(folder).finished(retry_errors=ns.retry_errors)
    tasks = [VideoTask(i, video_path(ns.video_dir, i), prompter(i)) for i in mine if i not in done]
    progress = Progress(Summary(videos=len(mine), skipped=len(mine) - len(tasks)),
                        enabled=ns.progress and bool(tasks))
    try:
        if tasks:  # a finished share builds no answerer: no model load, no work
            with RecordLog(new_log_path(folder, split.tag)) as log:
                _answer(tasks, spec, Ledger(log, progress, ns.retries), ns)
    except Exception as e:  # the job could not finish; what it committed stays for a rerun
        logger.exception("the job stopped early")
        _say(f"stopped early: {type(e).__name__}: {e}; rerun the same command to finish")
        progress.finish(ns.summary_json)
        return 1
    progress.finish(ns.summary_json)

    if split.world == 1:
        return _merge_and_report(manifest, ns)
    # The node that completes the manifest merges; any node may also be merged later with
    # --merge. Two nodes finishing together write the same file: the rename keeps one whole.
    if check(manifest, read_folder(folder)).complete:
        return _merge_and_report(manifest, ns)
    _say(f"node {split.rank} of {split.world} done; records in {folder}; once every node is "
         f"done, run the same command with --merge")
    return 0

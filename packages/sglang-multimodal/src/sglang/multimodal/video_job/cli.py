"""Command line of `python -m sglang.multimodal.video_job`.

Three groups: the job's own flags (declared here), sampling flags (one per scalar field of
`SamplingParams`) and the Engine's flags (one per `RuntimeArgs` field, generated the way
launch_server generates them, `sglang.runtime.arg_fields.add_flag`), so no default or help text
is declared twice.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any

import msgspec

from sglang.multimodal.video_job.answer import ANSWERERS
from sglang.multimodal.video_job.prompts import DEFAULT_PROMPT, DEFAULT_TEMPLATE
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.arg_fields import ArgField, add_flag, arg_fields
from sglang.runtime.config import FLAG_ALIASES, RuntimeArgs

# RuntimeArgs fields the job leaves out: its nodes are independent engines (one per node or per
# Ray worker), so an engine spanning machines has no place here, and `--node-rank` is the job's.
ENGINE_FIELDS_LEFT_OUT = frozenset({"nnodes", "node_rank", "dist_init_addr"})
# One answer per video; token-id lists have no plain command-line form.
SAMPLING_FIELDS_LEFT_OUT = frozenset({"n", "stop", "stop_token_ids"})


def engine_fields() -> tuple[ArgField, ...]:
    return tuple(f for f in arg_fields(RuntimeArgs) if f.name not in ENGINE_FIELDS_LEFT_OUT)


def _scalar(tp: Any) -> tuple[type | None, bool]:
    """(str / int / float / bool, optional) of an annotation, or (None, _) for anything else."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(rest) < len(typing.get_args(tp))
        tp = rest[0] if len(rest) == 1 else None
    return (tp if tp in (str, int, float, bool) else None), optional


def sampling_fields() -> tuple[ArgField, ...]:
    out = []
    for f in msgspec.structs.fields(SamplingParams):
        tp, optional = _scalar(f.type)
        if tp is None or f.name in SAMPLING_FIELDS_LEFT_OUT:
            continue
        out.append(ArgField(
            name=f.name, type=tp, optional=optional, default=f.default,
            description=f"sampling parameter {f.name}, as in /generate's sampling_params",
            fixed_choices=(), registry=None, metavar=None, unset="unset" if optional else None,
        ))
    return tuple(out)


def _job_flags(p: argparse.ArgumentParser) -> None:
    job = p.add_argument_group("job")
    job.add_argument("--video-dir", type=Path, required=True,
                     help="folder of videos (.mp4 .avi .mov .mkv .webm), searched recursively")
    job.add_argument("--output", type=Path, required=True,
                     help="merged results: .csv (video_name,answer,error) or .jsonl (with meta); "
                          "records accumulate in OUTPUT.records/ beside it")
    job.add_argument("--prompt", default=DEFAULT_PROMPT, help="the question asked of every video")
    job.add_argument("--prompts-file", type=Path, default=None,
                     help="a .csv/.jsonl of video_name,prompt rows (others keep --prompt), or a "
                          "text file holding the one prompt")
    job.add_argument("--prompt-template", default=DEFAULT_TEMPLATE,
                     help="the full prompt around {prompt}, with the model's video token "
                          "(default: %(default)r)")
    job.add_argument("--num-frames", type=int, default=None,
                     help="frames sampled per video (default: the model's)")
    job.add_argument("--batch-size", type=int, default=8, help="videos per Engine call")
    job.add_argument("--inflight", type=int, default=2,
                     help="Engine calls each worker keeps going at once, so the next batch's "
                          "videos decode while the model runs (default: %(default)s)")
    job.add_argument("--retries", type=int, default=0,
                     help="times a failed video is tried again before its error row is written")
    job.add_argument("--retry-errors", action="store_true",
                     help="also redo videos an earlier run recorded as errors")
    job.add_argument("--num-nodes", type=int, default=None,
                     help="static split over K nodes (default: torchrun's WORLD_SIZE, else 1)")
    job.add_argument("--node-rank", type=int, default=None,
                     help="this node's index in the static split (default: torchrun's RANK)")
    job.add_argument("--merge", action="store_true",
                     help="only merge the records of every node into --output")
    job.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                     help="show a progress bar")
    job.add_argument("--summary-json", type=Path, default=None,
                     help="also write the summary (videos/s, counts) to this JSON file")
    job.add_argument("--answerer", default="engine",
                     help=f"what answers a batch: {', '.join(ANSWERERS)} or module:factory")
    job.add_argument("--answerer-option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option for a custom answerer (repeatable)")


def _ray_flags(p: argparse.ArgumentParser) -> None:
    ray = p.add_argument_group("ray (pip install 'sglang-multimodal[ray]')")
    ray.add_argument("--ray", action="store_true",
                     help="spread the videos over Ray actors (a local cluster unless "
                          "--ray-address names one)")
    ray.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                     help="an existing Ray cluster (implies --ray)")
    ray.add_argument("--ray-workers", type=int, default=None,
                     help="actors, each with its own Engine (default: one per GPU group of "
                          "--ray-gpus-per-worker, or 1 without GPUs)")
    ray.add_argument("--ray-gpus-per-worker", type=float, default=None,
                     help="GPUs each actor holds (default: --tp-size when the cluster has GPUs "
                          "and --device is not cpu, else 0)")
    ray.add_argument("--ray-cpus-per-worker", type=float, default=1.0,
                     help="CPUs each actor holds (default: %(default)s)")
    ray.add_argument("--ray-start-timeout", type=float, default=900.0,
                     help="seconds to wait for the first actor to load its model before giving "
                          "up (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sglang.multimodal.video_job",
        description="Answer a prompt for every video of a folder, exactly once per video; "
                    "resumable, split over nodes or Ray workers.",
    )
    _job_flags(p)
    _ray_flags(p)
    sampling = p.add_argument_group("sampling")
    for field in sampling_fields():
        add_flag(sampling, field)
    engine = p.add_argument_group("engine (keyword arguments of sglang.Engine)")
    for field in engine_fields():
        add_flag(engine, field, FLAG_ALIASES.get(field.name, ()))
    return p


def engine_kwargs(ns: argparse.Namespace) -> dict[str, Any]:
    """The Engine's keywords, checked now (RuntimeArgs validation) rather than in each worker."""
    kwargs = {f.name: getattr(ns, f.name) for f in engine_fields()}
    RuntimeArgs(**kwargs)
    return kwargs


def sampling_dict(ns: argparse.Namespace) -> dict[str, Any]:
    values = {f.name: getattr(ns, f.name) for f in sampling_fields()}
    SamplingParams.from_dict(values).verify()
    return values


def answerer_options(ns: argparse.Namespace) -> dict[str, str]:
    out = {}
    for item in ns.answerer_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--answerer-option {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    from sglang.multimodal.video_job.job import run_job

    parser = build_parser()
    return run_job(parser, parser.parse_args(argv))

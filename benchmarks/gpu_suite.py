"""H100 benchmark suite: our Engine against the measured hardware ceilings and transformers.

One call (< 10 minutes on one H100) measures, on Llama-3-8B-shaped random weights in bf16:
  1. copy bandwidth and bf16 matmul rate (the two ceilings, measured in this run);
  2. batch-1 decode against its roofline (weight + KV bytes per step / copy bandwidth);
  3. offline throughput (1000 requests, inputs uniform in [512, 1024], 512 outputs) against
     transformers `generate` (static batches of 64) and against the workload's ceiling;
  4. transformers' batch-1 decode, eager and with static cache + torch.compile, for reference;
  5. a shared-prefix workload with the radix cache on and off;
  6. kernel micro-benchmarks (benchmarks/kernel_micro.py);
  7. with --tp N: all-reduce latency, batch-1 decode and offline throughput at tp=N.
Each phase group runs in its own process under its own timeout, so one failing or slow phase
cannot take the GPU memory or the time of the others. The table goes to stdout; everything to
--out as JSON (default $OUT/gpu_suite.json when OUT is set), each child's log beside it.

    python benchmarks/gpu_suite.py --out $OUT/gpu_suite.json        # full suite, 466 s on an H100
    python benchmarks/gpu_suite.py --quick --phases decode,offline  # smaller sizes, some phases
    python benchmarks/gpu_suite.py --dry-run --tp 2                 # tiny model on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the helper modules sit next to this file

from gpu_suite_plan import (  # noqa: E402
    PHASES,
    SIZES,
    Context,
    group_runs,
    select_phases,
)
from gpu_suite_report import derive, table  # noqa: E402
from gpu_suite_roofline import ModelShape  # noqa: E402
from gpu_suite_runner import run_group, tail  # noqa: E402

MODELS = {name: HERE / name for name in ("llama3_8b", "llama3_70b", "mixtral_8x7b")}
# The configs' 128K max_position_embeddings would size the request table (max running x
# context) at ~1 GB; the suite's longest request is ~2.2K tokens.
DEFAULT_ENGINE_ARGS = {"context_length": 8192}
DRY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
    "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 1024},
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
DRY_ENGINE_ARGS = {"max_total_tokens": 16384, "max_running_requests": 64}
MIN_START_S = 15.0  # don't start a phase group with less suite budget than this


# ---- arguments -----------------------------------------------------------------------------
def _default_grammar_model() -> str | None:
    from tokenizer_folder import DEFAULT_DIR

    return str(DEFAULT_DIR) if (DEFAULT_DIR / "config.json").is_file() else None


def _engine_arg(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phases", default=None,
                   help="comma-separated phases or aliases (prefix, hf, tp); default: all "
                        "(the tp ones only with --tp). 'ceilings' is added when needed.")
    p.add_argument("--list", action="store_true", help="list the phases and exit")
    p.add_argument("--quick", action="store_true", help="smaller workloads (~4 minutes)")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny model, tiny sizes, on the CPU: exercises every code path")
    p.add_argument("--model", default="llama3_8b",
                   help=f"{' or '.join(MODELS)}, or a folder holding a config.json")
    p.add_argument("--tp", type=int, default=1, help="also run the tp phases at this tp_size")
    p.add_argument("--mem-fraction-static", type=float, default=0.85)
    p.add_argument("--engine-arg", type=_engine_arg, action="append", default=[],
                   metavar="KEY=VALUE", help="extra sgl.Engine argument (JSON value), repeatable")
    p.add_argument("--hf-compile-backend", default="inductor")
    p.add_argument("--hf-batch", type=int, default=None,
                   help="transformers' static batch size (default: the mode's; MoE models whose "
                        "transformers experts path copies weights per token need a small one)")
    p.add_argument("--grammar-model", default=_default_grammar_model(), metavar="DIR",
                   help="folder with config.json + tokenizer for the grammar phase (its weights "
                        "are drawn at random; default: the folder benchmarks/tokenizer_folder.py "
                        "writes, when present); without one the phase is skipped")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="wall-clock budget for all phases; later groups are skipped past it")
    p.add_argument("--timeout-scale", type=float, default=1.0,
                   help="multiply every phase's timeout")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", default=None, help="JSON results (default $OUT/gpu_suite.json)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ctx", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_context(args: argparse.Namespace, work: Path) -> Context:
    mode = "dry" if args.dry_run else "quick" if args.quick else "full"
    if args.dry_run:
        model_dir = work / "tiny_llama"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(DRY_CONFIG, indent=2))
        name, device, dtype, extra = "tiny_llama", "cpu", "float32", dict(DRY_ENGINE_ARGS)
    else:
        model_dir = MODELS.get(args.model, Path(args.model))
        name, device, dtype = args.model, "cuda", "bfloat16"
        extra = dict(DEFAULT_ENGINE_ARGS)
        if not (model_dir / "config.json").is_file():
            raise SystemExit(f"--model {args.model}: no config.json in {model_dir}")
    extra.update(dict(args.engine_arg))
    sizes = SIZES[mode] if args.hf_batch is None else replace(SIZES[mode], hf_batch=args.hf_batch)
    config = json.loads((model_dir / "config.json").read_text())
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    return Context(mode=mode, device=device, dtype=dtype, model_name=name,
                   model_dir=str(model_dir), model_config=config, results_dir=str(results),
                   tp=args.tp, seed=args.seed, mem_fraction_static=args.mem_fraction_static,
                   engine_args=extra, hf_compile_backend=args.hf_compile_backend,
                   grammar_model=args.grammar_model, sizes=sizes)


# ---- child side ----------------------------------------------------------------------------
def child_main(names: list[str], ctx_path: str) -> int:
    ctx = Context.from_json(json.loads(Path(ctx_path).read_text()))
    results = Path(ctx.results_dir)
    import gpu_suite_engine
    from gpu_suite_common import PhaseSkipped
    from gpu_suite_phases import runners

    table_of_runners = runners()
    try:
        for name in names:
            (results / f"{name}.start").write_text(str(time.time()))
            print(f"=== phase {name} ({time.strftime('%H:%M:%S')})", flush=True)
            t0 = time.perf_counter()
            record: dict[str, Any]
            try:
                record = {"status": "ok", "result": table_of_runners[name](ctx)}
            except PhaseSkipped as e:
                record = {"status": "skipped", "error": str(e)}
            except Exception as e:
                traceback.print_exc()
                record = {"status": "error", "error": f"{type(e).__name__}: {e}"[:500]}
            record["seconds"] = time.perf_counter() - t0
            tmp = results / f"{name}.json.tmp"
            tmp.write_text(json.dumps(record, default=str))
            tmp.replace(results / f"{name}.json")
            print(f"=== phase {name}: {record['status']} in {record['seconds']:.1f} s",
                  flush=True)
    finally:
        gpu_suite_engine.shutdown_engine()
    return 0


# ---- parent side ---------------------------------------------------------------------------
def _print_phase(name: str, rec: dict[str, Any]) -> None:
    secs = f" in {rec['seconds']:.1f} s" if "seconds" in rec else ""
    msg = f": {rec['error']}" if rec.get("error") else ""
    print(f"[{name}] {rec['status']}{secs}{msg}", flush=True)
    if rec["status"] in ("error", "timeout"):
        for line in tail(Path(rec["log"])):
            print(f"    | {line}", flush=True)


def _write(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child.split(","), args.ctx)
    if args.list:
        for p in PHASES:
            tp = " (--tp only)" if p.tp else ""
            print(f"{p.name:15s} group {p.group:15s} timeouts {p.timeout_s}  {p.title}{tp}")
        return 0
    phases, notes = select_phases(args.phases, args.tp)
    out_env = os.environ.get("OUT")
    out = Path(args.out) if args.out else (Path(out_env) / "gpu_suite.json" if out_env else None)
    work = Path(tempfile.mkdtemp(prefix="gpu_suite-"))
    log_dir = (out.parent / "gpu_suite_logs") if out else (work / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = build_context(args, work)
    shape = ModelShape.from_config(ctx.model_config)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"gpu_suite {started}: mode {ctx.mode}, model {ctx.model_name} "
          f"({shape.total_params / 1e9:.2f}B params, {ctx.dtype}, dummy weights), "
          f"device {ctx.device}, tp {args.tp}, phases {','.join(p.name for p in phases)}")
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}; logs in {log_dir}")
    for n in notes:
        print(f"note: {n}")
    t_start = time.time()
    deadline = t_start + args.budget_s
    records: dict[str, dict[str, Any]] = {}
    payload: dict[str, Any] = {"suite": {"started": started, "argv": sys.argv[1:],
                                         "mode": ctx.mode, "budget_s": args.budget_s},
                               "context": ctx.to_json(), "phases": records}
    for i, run in enumerate(group_runs(phases)):
        if deadline - time.time() < MIN_START_S:
            for p in run:
                records[p.name] = {"status": "skipped", "error": "the suite's --budget-s ran out"}
                _print_phase(p.name, records[p.name])
            continue
        log = log_dir / f"{i:02d}-{run[0].group}.log"
        for name, rec in run_group(run, ctx, work, log, deadline, args.timeout_scale).items():
            records[name] = rec
            _print_phase(name, rec)
            if name == "ceilings" and rec["status"] == "ok":
                ctx.measured["copy_bandwidth"] = rec["result"]["copy"]["bandwidth"]
                ctx.measured["matmul_rate"] = rec["result"]["matmul"]["rate"]
        _write(out, payload)  # partial results survive a kill of the whole command
    derived = derive(ctx, records)
    lines = table(ctx, records, derived)
    env = (records.get("ceilings", {}).get("result") or {}).get("environment", {})
    print()
    print(f"== gpu_suite {started} · {env.get('gpu') or env.get('cpu') or ctx.device} · "
          f"torch {env.get('torch', '?')} · transformers {env.get('transformers', '?')} · "
          f"{ctx.model_name} {ctx.dtype} · mode {ctx.mode} · {time.time() - t_start:.0f} s")
    print("\n".join(lines))
    payload.update(derived=derived, table=lines, total_s=time.time() - t_start)
    _write(out, payload)
    if out:
        print(f"wrote {out}")
    bad = [n for n, r in records.items() if r["status"] in ("error", "timeout", "not_run")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""From the phases' raw numbers to rooflines, targets and the printed table (no torch)."""

from __future__ import annotations

from typing import Any

from gpu_suite_plan import Context
from gpu_suite_roofline import TB, ModelShape, decode_roofline, max_batch, offline_ceiling
from gpu_suite_workloads import offline_lengths

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# Issue 21 (H200): batch-1 decode, offline against transformers generate and against the ceiling.
TARGETS = {"decode_pct_roofline": 0.88, "offline_x_hf": 20.0, "offline_pct_ceiling": 0.72}
# Kept out of the KV pool by our runtime on CUDA (builder.CUDA_ACTIVATION_RESERVE); only used to
# estimate the pool when the offline phase could not report its size.
ACTIVATION_RESERVE = 2 << 30
DEFAULT_MAX_RUNNING = 1024


def _ok(phases: dict[str, Any], name: str) -> dict[str, Any] | None:
    p = phases.get(name)
    return p["result"] if p and p.get("status") == "ok" else None


def _kv_slots(ctx: Context, shape: ModelShape, off: dict[str, Any],
              env: dict[str, Any], tp: int) -> tuple[int | None, str]:
    slots = (off.get("scheduler") or {}).get("kv_total_tokens")
    if slots:
        return int(slots), "engine's KV pool"
    if ctx.engine_args.get("max_total_tokens"):
        return int(ctx.engine_args["max_total_tokens"]), "--engine-arg max_total_tokens"
    mem = env.get("gpu_memory_bytes")
    if not mem:
        return None, "unknown"
    db = DTYPE_BYTES[ctx.dtype]
    budget = mem * ctx.mem_fraction_static - shape.total_params * db / tp - ACTIVATION_RESERVE
    return max(int(budget // shape.kv_bytes_per_token(db, tp)), 1), "estimated from GPU memory"


def derive(ctx: Context, phases: dict[str, Any]) -> dict[str, Any]:
    """Rooflines and target verdicts from whatever phases succeeded."""
    shape = ModelShape.from_config(ctx.model_config)
    db = DTYPE_BYTES[ctx.dtype]
    out: dict[str, Any] = {"targets": {}}
    hf, off = _ok(phases, "hf_offline"), _ok(phases, "offline")
    if off and hf:
        out["targets"]["offline_x_hf"] = off["tok_per_s"] / hf["tok_per_s"]
    ceil = _ok(phases, "ceilings")
    if ceil is None:
        return out
    bw, rate = ceil["copy"]["bandwidth"], ceil["matmul"]["rate"]
    env = ceil.get("environment", {})
    ar = _ok(phases, "allreduce")
    for name, tp in (("decode", 1), ("tp_decode", ctx.tp)):
        dec = _ok(phases, name)
        if dec is None:
            continue
        roof = decode_roofline(shape, db, bw, dec["prompt_len"], dec["new_tokens"], tp=tp,
                               collective_s=ar["latency_s"] if ar and tp > 1 else 0.0)
        roof["pct"] = dec["decode_tok_per_s"] / roof["tok_per_s"]
        if tp > 1 and not ar:
            roof["formula"] += " (all-reduce not measured: run phase 'allreduce')"
        out[f"{name}_roofline"] = roof
    if dec_roof := out.get("decode_roofline"):
        out["targets"]["decode_pct_roofline"] = dec_roof["pct"]
    for name, tp in (("offline", 1), ("tp_offline", ctx.tp)):
        off = _ok(phases, name)
        if off is None:
            continue
        lens = offline_lengths(ctx.sizes, ctx.seed)
        slots, source = _kv_slots(ctx, shape, off, env, tp)
        running = (off.get("max_running") or ctx.engine_args.get("max_running_requests")
                   or DEFAULT_MAX_RUNNING)
        mean_req = sum(lens) / len(lens) + ctx.sizes.offline_out
        batch = max_batch(slots, running, mean_req) if slots else running
        c = offline_ceiling(shape, db, bw, rate, lens, ctx.sizes.offline_out, batch, tp=tp)
        c.update(kv_slots=slots, kv_slots_source=source, max_running=running,
                 pct=off["tok_per_s"] / c["tok_per_s"])
        out[f"{name}_ceiling"] = c
    if "offline_ceiling" in out:
        out["targets"]["offline_pct_ceiling"] = out["offline_ceiling"]["pct"]
    return out


# ---- printing ------------------------------------------------------------------------------
def _f(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def _verdict(name: str, value: float | None) -> str:
    goal = TARGETS[name]
    if value is None:
        return "n/a"
    return "PASS" if value >= goal else "FAIL"


def _status_cell(phases: dict[str, Any], name: str) -> str:
    p = phases.get(name)
    if p is None:
        return "not selected"
    if p["status"] == "ok":
        return ""
    return f"{p['status'].upper()}: {p.get('error', '')}".strip()[:160]


def table(ctx: Context, phases: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str, str]] = []

    def add(what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))

    def missing(name: str, what: str) -> bool:
        cell = _status_cell(phases, name)
        if cell:
            if cell != "not selected":
                add(what, "-", cell)
            return True
        return False

    if not missing("ceilings", "ceilings"):
        c = phases["ceilings"]["result"]
        add("copy bandwidth (read+write)", f"{c['copy']['bandwidth'] / TB:.3f} TB/s",
            f"{c['copy']['tensor_bytes'] / 2**20:.0f} MiB copy, median of "
            f"{len(c['copy']['samples_s'])}")
        add("read-only bandwidth (info)", f"{c['read']['bandwidth'] / TB:.3f} TB/s",
            "torch.sum over the same tensor")
        add("bf16 matmul", f"{c['matmul']['rate'] / TB:.1f} TFLOP/s",
            f"{c['matmul']['n']}^3, median of {len(c['matmul']['samples_s'])}")
    for name, label in (("decode", "tp=1"), ("tp_decode", f"tp={ctx.tp}")):
        if missing(name, f"ours batch-1 decode ({label})"):
            continue
        d, roof = phases[name]["result"], derived.get(f"{name}_roofline")
        add(f"batch-1 decode roofline ({label})", f"{_f(roof and roof['tok_per_s'])} tok/s",
            "see formula below")
        note = (f"TTFT {d['ttft_s'] * 1e3:.1f} ms, e2e {d['e2e_tok_per_s']:.1f} tok/s, "
                f"median of {len(d['runs'])}; engine load {d['load_s']:.0f} s (excluded)")
        if roof:
            note = f"{roof['pct']:.1%} of roofline; " + note
        if name == "decode":
            goal = TARGETS["decode_pct_roofline"]
            note += f" [target >={goal:.0%}: {_verdict('decode_pct_roofline', roof and roof['pct'])}]"
        add(f"ours batch-1 decode ({label})", f"{d['decode_tok_per_s']:.1f} tok/s", note)
    for name in ("hf_decode", "hf_compile"):
        label = "eager" if name == "hf_decode" else "static cache + compile"
        if missing(name, f"transformers batch-1 decode ({label})"):
            continue
        h, roof = phases[name]["result"], derived.get("decode_roofline")
        note = h["config"] + (f"; {h['decode_tok_per_s'] / roof['tok_per_s']:.1%} of roofline"
                              if roof else "")
        if "compiled" in h:
            note += f"; compiled={h['compiled']}, first call {h['warmup_call_s'][0]:.0f} s"
        add(f"transformers batch-1 decode ({label})", f"{h['decode_tok_per_s']:.1f} tok/s",
            note)
    targets = derived.get("targets", {})
    for name, label in (("offline", "tp=1"), ("tp_offline", f"tp={ctx.tp}")):
        if missing(name, f"ours offline throughput ({label})"):
            continue
        o, ceil = phases[name]["result"], derived.get(f"{name}_ceiling")
        sch = o.get("scheduler") or {}
        note = (f"{o['requests']} req, {o['output_tokens']} out tokens in {o['seconds']:.2f} s; "
                f"mean decode batch {_f(sch.get('mean_decode_batch'))}, "
                f"retractions {sch.get('num_retractions', 'n/a')}")
        add(f"ours offline throughput ({label})", f"{o['tok_per_s']:.0f} tok/s", note)
        if ceil:
            note = (f"ours at {ceil['pct']:.1%}; batch {ceil['batch']} = whole requests in "
                    f"{ceil['kv_slots']} KV tokens ({ceil['kv_slots_source']}), "
                    f"max running {ceil['max_running']}")
            if name == "offline":
                note += (f" [target >={TARGETS['offline_pct_ceiling']:.0%}: "
                         f"{_verdict('offline_pct_ceiling', targets.get('offline_pct_ceiling'))}]")
            add(f"offline workload ceiling ({label})", f"{ceil['tok_per_s']:.0f} tok/s", note)
    if not missing("hf_offline", "transformers generate (offline)"):
        h = phases["hf_offline"]["result"]
        x = targets.get("offline_x_hf")
        add("transformers generate (offline)", f"{h['tok_per_s']:.0f} tok/s",
            f"rate over {len(h['batches'])} static batch(es) of {h['batch_size']} = "
            f"{h['requests']} of the requests; ours is {_f(x, '.2f')}x "
            f"[target >={TARGETS['offline_x_hf']:g}x: {_verdict('offline_x_hf', x)}]")
    prefix = {n: phases[n]["result"] for n in ("prefix_radix", "prefix_noradix")
              if _ok(phases, n)}
    for n, label in (("prefix_radix", "radix cache on"), ("prefix_noradix", "radix cache off")):
        if missing(n, f"shared prefix, {label}"):
            continue
        p = prefix[n]
        add(f"shared prefix, {label}", f"{p['tok_per_s']:.0f} tok/s",
            f"{p['requests']} req, {p['seconds']:.2f} s, cached {p['cached_tokens']}"
            f"/{p['prompt_tokens']} prompt tokens")
    if len(prefix) == 2:
        add("shared prefix speed-up (radix on/off)",
            f"{prefix['prefix_radix']['tok_per_s'] / prefix['prefix_noradix']['tok_per_s']:.2f}x")
    if not missing("allreduce", "all-reduce latency"):
        a = phases["allreduce"]["result"]
        cells = ", ".join(f"[{b},{a['hidden']}] {t * 1e6:.1f} us"
                          for b, t in a["seconds_per_allreduce"].items())
        add(f"all-reduce latency ({a['backend']}, tp={a['tp']})", f"{a['latency_s'] * 1e6:.1f} us",
            cells)
    if not missing("grammar", "structured output"):
        g = phases["grammar"]["result"]["results"]
        jf, nojf = g["json+jf"], g["json-nojf"]
        add("JSON schema, jump-forward on / off", f"{jf['tok_per_s']:.0f} / {nojf['tok_per_s']:.0f}"
            " tok/s", f"model steps {jf['model_steps']} / {nojf['model_steps']}, "
            f"{jf['jumped_tokens']} tokens jumped")
        extra = g["masked"]["ms_per_step"] - g["free"]["ms_per_step"]
        add("grammar masks, cost per decode step", f"{extra:+.2f} ms",
            f"free {g['free']['ms_per_step']:.2f} ms/step; mask fill+apply alone: "
            + ", ".join(f"{b} {ms:.2f} ms" if ms is not None else f"{b} not installed"
                        for b, ms in phases["grammar"]["result"]["mask_only_ms"].items()))
    if not missing("kernels", "kernel micro-benchmarks"):
        for bench, row in phases["kernels"]["result"].items():
            add(f"kernel: {bench}", "", _kernel_cell(row))

    w = max(len(r[0]) for r in rows) if rows else 10
    lines = [f"| {'measurement'.ljust(w)} | value | notes |", f"| {'-' * w} | --- | --- |"]
    lines += [f"| {a.ljust(w)} | {b} | {c} |" for a, b, c in rows]
    formulas = [f"{k.replace('_', ' ')}: {v['formula']}" for k, v in derived.items()
                if isinstance(v, dict) and "formula" in v]
    if formulas:
        lines += ["", "formulas:"] + [f"  {f}" for f in formulas]
    if targets:
        lines += ["", "targets: " + "; ".join(
            f"{k} = {v:.3g} (>= {TARGETS[k]:g}: {_verdict(k, v)})" for k, v in targets.items())]
    return lines


def _kernel_cell(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return str(row["skipped"])
    if "error" in row:
        return f"ERROR: {row['error']}"[:200]
    parts = []
    for k, v in row.items():
        if k == "traceback" or isinstance(v, dict | list):
            continue
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)[:700]  # the JSON keeps every field

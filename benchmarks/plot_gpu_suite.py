"""Turn gpu_suite.py's JSON into one PNG for docs/: decode, offline and shared-prefix bars
against their ceilings, plus the measured ceilings and target verdicts.

    python benchmarks/plot_gpu_suite.py gpu_suite.json [more.json ...] --out docs/gpu_suite.png

Several files (runs of the same suite split over calls) are merged: a phase missing from the
first file is taken from the next one that has it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_suite_report import TARGETS  # noqa: E402

CEILING_COLOR, OURS_COLOR, OURS_ALT_COLOR, HF_COLOR = "#bbbbbb", "#1f77b4", "#9ecae1", "#ff7f0e"


def _result(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    rec = data.get("phases", {}).get(name)
    return rec["result"] if rec and rec.get("status") == "ok" else None


def _get(d: dict[str, Any] | None, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, int | float) else None


def bars(data: dict[str, Any]) -> dict[str, list[tuple[str, float | None, str]]]:
    """Panel title -> [(label, tokens/s or None, color)]."""
    der, tp = data.get("derived", {}), data.get("context", {}).get("tp", 1)
    decode = [
        ("roofline", _get(der, "decode_roofline", "tok_per_s"), CEILING_COLOR),
        ("ours", _get(_result(data, "decode"), "decode_tok_per_s"), OURS_COLOR),
        ("HF\neager", _get(_result(data, "hf_decode"), "decode_tok_per_s"), HF_COLOR),
        ("HF\ncompile", _get(_result(data, "hf_compile"), "decode_tok_per_s"), HF_COLOR),
    ]
    offline = [
        ("ceiling", _get(der, "offline_ceiling", "tok_per_s"), CEILING_COLOR),
        ("ours", _get(_result(data, "offline"), "tok_per_s"), OURS_COLOR),
        ("HF generate\n(rate, subset)", _get(_result(data, "hf_offline"), "tok_per_s"),
         HF_COLOR),
    ]
    if tp > 1:
        decode += [(f"roofline\ntp{tp}", _get(der, "tp_decode_roofline", "tok_per_s"),
                    CEILING_COLOR),
                   (f"ours\ntp{tp}", _get(_result(data, "tp_decode"), "decode_tok_per_s"),
                    OURS_COLOR)]
        offline += [(f"ceiling\ntp{tp}", _get(der, "tp_offline_ceiling", "tok_per_s"),
                     CEILING_COLOR),
                    (f"ours\ntp{tp}", _get(_result(data, "tp_offline"), "tok_per_s"), OURS_COLOR)]
    prefix = [
        ("radix on", _get(_result(data, "prefix_radix"), "tok_per_s"), OURS_COLOR),
        ("radix off", _get(_result(data, "prefix_noradix"), "tok_per_s"), OURS_ALT_COLOR),
    ]
    return {"batch-1 decode (tok/s)": decode, "offline throughput (output tok/s)": offline,
            "shared prefix (output tok/s)": prefix}


def summary(data: dict[str, Any]) -> str:
    ceil = _result(data, "ceilings") or {}
    env = ceil.get("environment", {})
    lines = [f"{env.get('gpu') or env.get('cpu') or '?'}",
             f"torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}"]
    bw, rate = _get(ceil, "copy", "bandwidth"), _get(ceil, "matmul", "rate")
    if bw:
        lines.append(f"copy bandwidth {bw / 1e12:.2f} TB/s")
    if rate:
        lines.append(f"bf16 matmul {rate / 1e12:.0f} TFLOP/s")
    lines.append("")
    for name, goal in TARGETS.items():
        value = data.get("derived", {}).get("targets", {}).get(name)
        verdict = "n/a" if value is None else ("PASS" if value >= goal else "FAIL")
        shown = "n/a" if value is None else f"{value:.3g}"
        lines.append(f"{name}: {shown} (>= {goal:g}) {verdict}")
    return "\n".join(lines)


def plot(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = bars(data)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.5 * len(panels) + 3.5, 4.6),
                             gridspec_kw={"width_ratios": [1.0] * len(panels) + [0.75]})
    for ax, (title, rows) in zip(axes, panels.items()):
        labels = [r[0] for r in rows]
        values = [r[1] or 0.0 for r in rows]
        ax.bar(range(len(rows)), values, color=[r[2] for r in rows])
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        top = max(values) if any(values) else 1.0
        for i, (_, v, _) in enumerate(rows):
            ax.text(i, (v or 0.0) + 0.01 * top, "n/a" if v is None else f"{v:,.0f}",
                    ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, top * 1.15)
    axes[-1].axis("off")
    axes[-1].text(0.0, 1.0, summary(data), va="top", family="monospace", fontsize=8)
    ctx = data.get("context", {})
    fig.suptitle(f"gpu_suite {data.get('suite', {}).get('started', '')}: "
                 f"{ctx.get('model_name', '?')} {ctx.get('dtype', '')} dummy weights, "
                 f"mode {ctx.get('mode', '?')}", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="+", help="gpu_suite.py --out file(s)")
    p.add_argument("--out", default="docs/gpu_suite.png")
    args = p.parse_args()
    data = json.loads(Path(args.json[0]).read_text())
    for extra in args.json[1:]:
        for name, rec in json.loads(Path(extra).read_text()).get("phases", {}).items():
            data.setdefault("phases", {}).setdefault(name, rec)
    plot(data, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

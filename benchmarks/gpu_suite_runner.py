"""The suite's parent side: one child process per phase group, watched against each phase's
timeout and the suite's budget, killed with everything it started when either runs out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpu_suite_plan import Context, PhaseSpec

LOG_TAIL_LINES = 4
SHUTDOWN_GRACE_S = 30.0  # after its last result, a child may take this long to exit
SUITE = Path(__file__).resolve().parent / "gpu_suite.py"


def _kill_group(proc: subprocess.Popen) -> None:
    """The child and everything it started (spawned workers, compile pools): its own session."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln[:160] for ln in lines if ln.strip()][-n:]


def _phase_start(results: Path, run: list[PhaseSpec], idx: int, group_start: float) -> float:
    """When run[idx] started: its marker, else the end of the phase before it (the gap between
    the two files), else the start of the child (the first phase pays the start-up)."""
    marker = results / f"{run[idx].name}.start"
    try:
        return float(marker.read_text())
    except (OSError, ValueError):
        pass
    if idx > 0:
        try:
            return (results / f"{run[idx - 1].name}.json").stat().st_mtime
        except OSError:
            pass
    return group_start


def run_group(run: list[PhaseSpec], ctx: Context, work: Path, log: Path, deadline: float,
              scale: float) -> dict[str, dict[str, Any]]:
    results = Path(ctx.results_dir)
    ctx_file = work / f"ctx-{log.stem}.json"
    ctx_file.write_text(json.dumps(ctx.to_json()))
    env = dict(os.environ)
    if ctx.device == "cpu" and any(p.name == "kernels" for p in run):
        env.setdefault("TRITON_INTERPRET", "1")  # Triton kernels on the CPU: the interpreter
    cmd = [sys.executable, str(SUITE), "--child",
           ",".join(p.name for p in run), "--ctx", str(ctx_file)]
    group_start = time.time()
    with open(log, "w") as log_f:
        proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=os.getcwd())
        killed: tuple[str, str] | None = None
        try:
            while proc.poll() is None:
                time.sleep(0.25)
                idx = next((i for i, p in enumerate(run)
                            if not (results / f"{p.name}.json").exists()), None)
                if idx is None:
                    # Every result is in; a child stuck in shutdown gets a short grace.
                    last = (results / f"{run[-1].name}.json").stat().st_mtime
                    if time.time() - last > SHUTDOWN_GRACE_S or time.time() > deadline:
                        _kill_group(proc)
                        break
                    continue
                current = run[idx]
                started = _phase_start(results, run, idx, group_start)
                limit = current.timeout_s[ctx.mode] * scale
                if time.time() - started > limit:
                    killed = (current.name, f"timed out after {limit:.0f} s")
                elif time.time() > deadline:
                    killed = (current.name, "stopped: the suite's --budget-s ran out")
                if killed:
                    _kill_group(proc)
                    break
        except BaseException:
            _kill_group(proc)
            raise
    out: dict[str, dict[str, Any]] = {}
    for p in run:
        f = results / f"{p.name}.json"
        if f.exists():
            out[p.name] = json.loads(f.read_text())
        elif killed and killed[0] == p.name:
            out[p.name] = {"status": "timeout", "error": killed[1]}
        elif killed:
            out[p.name] = {"status": "not_run", "error": f"its process was stopped ({killed[0]})"}
        else:
            out[p.name] = {"status": "error",
                           "error": f"child exited with code {proc.returncode} before it ran"}
        out[p.name]["log"] = str(log)
    return out

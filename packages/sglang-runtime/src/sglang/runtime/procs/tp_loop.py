"""The scheduler loop of one tensor-parallel rank (the protocol is in `scheduler_proc.py`'s
docstring).

Each iteration starts with one broadcast from rank 0 (`RankBroadcast`: stop?, the raw messages
it received).
Integrity checks gather every rank's result and a fingerprint of its scheduler state, so rank 0
reports both each rank's KV accounting and whether the ranks still agree. Failures end the rank
with a distinct exit code, so the launcher can tell the culprit from the ranks that merely lost
it: PEER_LOST_EXIT for a collective that failed because another rank went away.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from typing import Any

import msgspec

from sglang.runtime.distributed import all_gather_object, broadcast_bytes, destroy_distributed
from sglang.runtime.messages import IntegrityResult, RankBroadcast
from sglang.runtime.procs.scheduler_proc import SchedulerProcessLoop
from sglang.runtime.procs.supervisor import PEER_LOST_EXIT, STEP_FAILED_EXIT

logger = logging.getLogger("sglang.runtime")

# Fragments of the errors torch.distributed raises when a peer rank died or stopped answering.
_PEER_LOSS_SIGNS = (
    "connection closed by peer", "connection reset", "broken pipe", "timed out", "timeout",
    "nccl", "socket", "remote worker",
)


class RankStop(Exception):
    """Ends this rank's loop with an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_peer_loss(e: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(e, dist.DistError):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e).lower() for s in _PEER_LOSS_SIGNS)


class TPSchedulerLoop(SchedulerProcessLoop):
    def __init__(self, runtime: Any, pull: Any, push: Any, parent_pid: int) -> None:
        super().__init__(runtime, pull, push, parent_pid)
        self.tp_rank = runtime.tp_rank
        self.tp_size = runtime.tp_size
        self.broadcast_decoder = msgspec.msgpack.Decoder(RankBroadcast)
        # SIGTERM stops the loop between iterations (rank 0 tells the others), never inside a
        # collective, which would leave the other ranks waiting in it.
        self.stop_requested = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    # ---- inputs: rank 0's messages for everyone -------------------------------------------
    def drain(self, timeout_ms: int) -> bool:
        payload = None
        if self.tp_rank == 0:
            frames = self.receive(timeout_ms)
            # Read the flag after receiving (a SIGTERM may arrive meanwhile): rank 0 stops
            # exactly when it tells the others to.
            payload = self.encoder.encode(RankBroadcast(stop=self.stop_requested, frames=frames))
        word = self.broadcast_decoder.decode(broadcast_bytes(payload))
        self.handle_frames(word.frames)
        # Another rank told to stop by its own launcher leaves alone (rank 0 then loses it).
        return word.stop or (self.tp_rank != 0 and self.stop_requested)

    # ---- a failed step ends the rank --------------------------------------------------------
    def step(self) -> None:
        try:
            self.pending.extend(self.sched.step())
        except AssertionError as e:
            if self.sched.has_work:
                self._fail(traceback.format_exc())
            else:  # the idle check: the same on every rank, so all keep serving
                self.record_failure(str(e))
        except Exception as e:
            if is_peer_loss(e):
                raise
            self._fail(traceback.format_exc())

    def _fail(self, tb: str) -> None:
        # Other ranks may be waiting inside a collective of this step: this rank cannot carry
        # on alone. Rank 0 answers the requests in flight before it goes.
        self.fail_all(tb)
        self.flush_outputs()
        raise RankStop(STEP_FAILED_EXIT, f"step failed: {tb.strip().splitlines()[-1]}")

    # ---- integrity on every rank ------------------------------------------------------------
    def fingerprint(self) -> tuple:
        """What every rank must agree on, given identical inputs and tokens."""
        s, kv = self.sched, self.sched.kv
        return (
            kv.num_slots, kv.allocator.available, kv.cache.evictable_size, kv.cache.locked_size,
            [r.rid for r in s.waiting], sorted(r.rid for r in s.active_requests()),
            s.forward_steps, s.generated_tokens,
        )

    def integrity(self) -> IntegrityResult:
        mine = super().integrity()
        everyone = all_gather_object((msgspec.to_builtins(mine), self.fingerprint()))
        if self.tp_rank != 0:
            return mine
        results = [msgspec.convert(r, IntegrityResult) for r, _ in everyone]
        problems = [f"tp rank {i}: {r.message}" for i, r in enumerate(results) if not r.ok]
        prints = [fp for _, fp in everyone]
        if any(fp != prints[0] for fp in prints):
            detail = "; ".join(f"rank {i}: {fp}" for i, fp in enumerate(prints))
            problems.append(f"tp ranks disagree on the scheduler state ({detail})")
        failures = [f"tp rank {i}: {r.last_failure}" for i, r in enumerate(results)
                    if r.last_failure]
        return msgspec.structs.replace(
            mine, ok=not problems, message="; ".join(problems),
            idle_check_failures=sum(r.idle_check_failures for r in results),
            last_failure=failures[0] if failures else "", tp_ranks_checked=self.tp_size,
        )


def run_tp_loop(loop: TPSchedulerLoop, zmq_ctx: Any) -> None:
    """Serve until told to stop, then leave; never returns. A failure exits non-zero at once
    (os._exit): tearing down a process group whose peers are gone can hang."""
    rank = loop.tp_rank
    try:
        loop.run_forever()
    except RankStop as e:
        logger.error("tp rank %d: %s; exiting", rank, e)
        _leave(e.code)
    except Exception as e:
        if is_peer_loss(e):
            logger.error("tp rank %d lost contact with another rank (%s); exiting", rank,
                         str(e).splitlines()[0] if str(e) else type(e).__name__)
            logger.debug("where:\n%s", traceback.format_exc())
            _leave(PEER_LOST_EXIT)
        logger.error("tp rank %d failed:\n%s", rank, traceback.format_exc())
        _leave(STEP_FAILED_EXIT)
    if zmq_ctx is not None:
        zmq_ctx.destroy(linger=0)
    destroy_distributed()
    raise SystemExit(0)


def _leave(code: int) -> None:
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)

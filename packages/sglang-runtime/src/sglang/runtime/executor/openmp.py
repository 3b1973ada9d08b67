"""The OpenMP runtime behind torch's CPU ops (and the CPU C kernels, which share it).

libgomp gives every thread that opens a parallel region a pool of worker threads of its own. The
offline Engine builds its runtime on the caller's thread (loading runs parallel ops there, so
that thread gets workers) and then runs every step on a scheduler thread, which gets a second
pool. Once the workers of all pools outnumber the CPUs, libgomp stops spinning between parallel
regions (its "throttled" spin count) and each region waits for its workers to wake from a futex
instead: on a 2-core machine a [64, 576] RMSNorm's handful of ops then took ~350 us instead of
~35 us, and a decode step spent a fifth of its time in such waits. Freeing the building thread's
pool before the scheduler thread starts keeps one pool in the process.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger("sglang.runtime")

_OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: free threads, keep the runtime usable
_RUNTIME_NAMES = ("libgomp", "libiomp", "libomp")


def _loaded_runtimes() -> list[ctypes.CDLL]:
    """The OpenMP runtimes mapped into this process (Linux; none elsewhere): torch's, and the
    private copies some wheels bundle (sentencepiece ships its own libgomp)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    found = []
    for path in sorted(paths):
        if os.path.basename(path).startswith(_RUNTIME_NAMES):
            try:
                found.append(ctypes.CDLL(path))  # already loaded: the same handle, no new copy
            except OSError:
                continue
    return found


def release_thread_pool() -> int:
    """Free the calling thread's OpenMP worker threads in every loaded runtime (OpenMP 5.0
    `omp_pause_resource_all`, soft); a later parallel region on this thread makes new ones.
    Returns how many runtimes did it."""
    done = 0
    for lib in _loaded_runtimes():
        pause = getattr(lib, "omp_pause_resource_all", None)
        if pause is None:
            continue
        pause.argtypes = [ctypes.c_int]
        pause.restype = ctypes.c_int
        if pause(_OMP_PAUSE_SOFT) == 0:
            done += 1
        else:
            logger.debug("omp_pause_resource_all refused in %s", lib._name)
    return done

"""Build the CPU kernels' C sources (one library) on first use and load it with ctypes.

The shared library is compiled with the system C compiler (``$CC``, else sysconfig's ``CC``,
else ``cc``) into a per-user cache directory (``$SGLANG_KERNEL_CACHE``, else
``$XDG_CACHE_HOME/sglang/kernels`` or ``~/.cache/sglang/kernels``), named by a hash of the
sources, the compiler command, the flags and the CPU (``-march=native`` code is only valid on the
CPU it was built for). A build writes a temporary file in that directory and renames it into
place (atomic), so processes building at once never see a partial library. If no compiler works,
`load_library` returns None after one warning and the callers use the torch reference.

The library links libgomp by its soname; torch's own ``libgomp.so.1`` is already loaded when
torch is imported, so both share one OpenMP thread pool rather than competing for the cores.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path

HERE = Path(__file__).parent
# One library.
SOURCES = (HERE / "quant_gemm.c", HERE / "quant_gemm_int8.c", HERE / "paged_attention.c",
           HERE / "paged_attention_shared.c", HERE / "norm_act.c")
HEADERS = (HERE / "quant_common.h", HERE / "attention_common.h")
CACHE_ENV = "SGLANG_KERNEL_CACHE"
# Tried in order; the second builds a single-threaded library where OpenMP is missing.
FLAG_SETS = (
    ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"),
    ("-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11"),
)

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}  # by $SGLANG_KERNEL_CACHE
_warned = False
_MISSING = object()


def compiler() -> list[str]:
    """The C compiler command: $CC, else the one Python was built with, else ``cc``."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sglang" / "kernels"


def _cpu_identity() -> str:
    """What -march=native depends on: the model and feature flags of the first CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    first = text.split("\n\n", 1)[0]
    keep = ("model name", "flags", "Features", "CPU part", "CPU implementer")
    return "\n".join(line for line in first.splitlines() if line.split(":")[0].strip() in keep)


def library_path(cc: list[str], flags: tuple[str, ...]) -> Path:
    digest = hashlib.sha256()
    sources = [path.read_bytes() for path in (*SOURCES, *HEADERS)]
    for part in (*sources, " ".join(cc).encode(), " ".join(flags).encode(),
                 _cpu_identity().encode(), platform.machine().encode()):
        digest.update(part)
        digest.update(b"\0")
    return cache_dir() / f"quant_gemm_{digest.hexdigest()[:20]}.so"


def compile_library(cc: list[str], flags: tuple[str, ...], target: Path) -> None:
    """Compile SOURCES into `target` through a temporary file renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem + ".", suffix=".tmp")
    os.close(fd)
    try:
        subprocess.run([*cc, *flags, "-o", tmp, *map(str, SOURCES)], check=True,
                       capture_output=True, text=True, timeout=300)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.sgl_quant_gemm.argtypes = [ptr, i64, i64, ptr, ptr, ptr, cint, i64, cint, i64, ptr, cint]
    lib.sgl_quant_gemm.restype = cint
    lib.sgl_dequantize.argtypes = [ptr, ptr, ptr, cint, i64, i64, cint, i64, i64, i64, ptr, cint]
    lib.sgl_dequantize.restype = cint
    lib.sgl_quant_gemm_mm.argtypes = [ptr, i64, i64, ptr, ptr, ptr, cint, i64, cint, i64, i64,
                                      ptr, ptr, ptr, cint]
    lib.sgl_quant_gemm_mm.restype = cint
    lib.sgl_int8_gemm_available.argtypes = []
    lib.sgl_int8_gemm_available.restype = cint
    lib.sgl_quantize_rows.argtypes = [ptr, i64, i64, i64, i64, cint, ptr, ptr, ptr, cint]
    lib.sgl_quantize_rows.restype = cint
    lib.sgl_quant_gemm_i8.argtypes = [ptr, i64, i64, ptr, ptr, ptr, cint, i64, cint, i64, i64,
                                      ptr, cint, cint, i64, cint]
    lib.sgl_quant_gemm_i8.restype = cint
    f32 = ctypes.c_float
    lib.sgl_paged_attention.argtypes = [ptr, i64, ptr, ptr, ptr, i64, ptr, ptr, i64, cint, cint,
                                        cint, i64, f32, f32, ptr, cint]
    lib.sgl_paged_attention.restype = cint
    lib.sgl_rope_store_kv.argtypes = [ptr, i64, ptr, i64, ptr, i64, ptr, ptr, ptr, cint, cint,
                                      i64, cint, cint, cint, ptr, ptr, ptr, cint]
    lib.sgl_rope_store_kv.restype = cint
    lib.sgl_rmsnorm.argtypes = [ptr, i64, ptr, i64, ptr, i64, i64, f32, ptr, ptr, cint]
    lib.sgl_rmsnorm.restype = cint
    lib.sgl_silu_and_mul.argtypes = [ptr, i64, i64, i64, ptr, cint]
    lib.sgl_silu_and_mul.restype = cint
    return lib


def _build_and_load() -> tuple[ctypes.CDLL | None, str]:
    cc = compiler()
    if shutil.which(cc[0]) is None:
        return None, f"C compiler {cc[0]!r} not found"
    errors = []
    for flags in FLAG_SETS:
        path = library_path(cc, flags)
        try:
            if not path.exists():
                compile_library(cc, flags, path)
            return _declare(ctypes.CDLL(str(path))), ""
        except subprocess.CalledProcessError as exc:
            errors.append(f"{' '.join(flags)}: {exc.stderr.strip()[-500:]}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{' '.join(flags)}: {exc}")
    return None, "; ".join(errors)


def load_library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None (after one warning) if that fails."""
    global _warned
    key = os.environ.get(CACHE_ENV, "")  # a test may point the cache elsewhere
    lib = _loaded.get(key, _MISSING)
    if lib is not _MISSING:  # the per-call path: no lock, no file system
        return lib
    with _lock:
        if key not in _loaded:
            lib, why = _build_and_load()
            _loaded[key] = lib
            if lib is None and not _warned:
                _warned = True
                warnings.warn(f"sglang.kernels.cpu: could not build the C kernels ({why}); "
                              "quant_gemm_cpu falls back to the torch reference (slow)",
                              RuntimeWarning, stacklevel=3)
        return _loaded[key]


def reset() -> None:
    """Forget loaded libraries and the warning (tests)."""
    global _warned
    with _lock:
        _loaded.clear()
        _warned = False

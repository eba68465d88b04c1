"""One intra-op thread per data worker process.

Data generation runs one sample per worker process; a library that also spreads its work over all
cores in every worker oversubscribes them (numpy's OpenBLAS threads even spin while they wait for
work), which cost the 2-worker cache writer about a third of its throughput on 2 cores. Call
:func:`limit_threads` first thing in a worker *initializer*, never in a user's main process: it
changes process-wide settings.

Libraries read ``OMP_NUM_THREADS`` and friends when they are loaded, and a spawned worker has
loaded numpy before its initializer runs (unpickling the initializer imports its module), so the
variables alone come too late for them: the OpenBLAS builds already loaded are set at run time
through their ``openblas_set_num_threads`` (as threadpoolctl does), torch and open3d through their
own calls. The variables still cover whatever the worker loads later.
"""

from __future__ import annotations

import ctypes
import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS")

_OPENBLAS_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "scipy_openblas_set_num_threads64_")


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (Linux; elsewhere none are found)."""
    try:
        with open("/proc/self/maps") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    paths = {ln.split(None, 5)[-1] for ln in lines if "openblas" in ln.lower() and ln.count(" ") >= 5}
    return sorted(p for p in paths if p.startswith("/"))


def _set_openblas_threads(n: int) -> int:
    """Set the thread count of every loaded OpenBLAS; returns how many were set."""
    count = 0
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle, nothing is loaded anew
        except OSError:
            continue
        for name in _OPENBLAS_SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                count += 1
                break
    return count


def limit_threads(n: int = 1) -> dict[str, int]:
    """Limit this process's numeric libraries to ``n`` threads (for worker initializers only).

    Returns what was set: ``{"openblas": libraries set, "torch": n, "open3d": n}`` (absent keys:
    not loaded; torch and open3d are not imported here).
    """
    for k in THREAD_ENV_VARS:
        os.environ[k] = str(int(n))
    done = {"openblas": _set_openblas_threads(int(n))}
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(n))
        done["torch"] = int(n)
    o3d = sys.modules.get("open3d")
    if o3d is not None and hasattr(getattr(o3d, "utility", None), "set_max_threads"):
        o3d.utility.set_max_threads(int(n))
        done["open3d"] = int(n)
    return done


def die_with_parent() -> bool:
    """Have the kernel kill this worker process when the process that started it dies (Linux
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: workers ignore SIGINT and SIGTERM, whose stops their
    parent coordinates), for worker *initializers*: a parent killed outright (``kill -9``, out of
    memory) then leaves no orphaned workers holding a model and writing on. Their files are
    written atomically, so what they leave is at most a hidden temporary. Returns whether it was
    set (False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    import multiprocessing
    import signal

    starter = multiprocessing.parent_process()  # the pid that started this worker, known from its start
    parent = starter.pid if starter is not None else os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG = 1
            return False
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return False
    if os.getppid() != parent:  # the parent died before the call: nothing will signal this process
        os.kill(os.getpid(), signal.SIGKILL)
    return True

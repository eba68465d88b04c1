"""Device selection: ``"auto"`` means CUDA when available, else CPU."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_device(device: "str | torch.device | int | None" = "auto") -> "torch.device":
    """Return a :class:`torch.device` for ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
    (or a :class:`torch.device`; an ``int``, a NumPy integer too, is torch's: that CUDA device).

    ``"auto"`` (or ``None``) picks ``cuda`` when a CUDA device is available, else ``cpu``.

    Raises:
        InputError: a device string torch does not know, another kind of device, or one this
            machine does not have (one line, naming what it has); a :class:`ValueError`.
        InputTypeError: neither a string, a :class:`torch.device`, an ``int`` nor ``None``.
    """
    import torch

    from .errors import InputError, InputTypeError

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, numbers.Integral)):
        raise InputTypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', a torch.device or a CUDA "
                             f"index, not {type(device).__name__}")
    if isinstance(device, numbers.Integral):  # torch.device(0) is the current accelerator: voxface's is CUDA
        device = int(device)  # a NumPy integer (an index from np.arange) as well
        if device < 0:
            raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
        device = f"cuda:{device}"
    device = str(device)  # a torch.device is named as its string in the messages below
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            # a CPU-only build (what `make` installs by default) on a machine with a GPU says so: the
            # fix is another torch, not another machine
            # a ROCm build has no torch.version.cuda either, and is no CPU-only build
            cpu_only = torch.version.cuda is None and getattr(torch.version, "hip", None) is None
            build = (f" (this torch, {torch.__version__}, is a CPU-only build: install a CUDA one, see the "
                     "README's install section)") if cpu_only else ""
            raise InputError(f"device {device!r} was asked for but CUDA is not available{build}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} was asked for but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {device!r} was asked for but MPS (Apple GPU) is not available")
        if dev.index not in (None, 0):  # torch.device takes 'mps:1', a device no Mac has (MPS is mps:0)
            raise InputError(f"device {device!r}: MPS has one device, 'mps' (or 'mps:0')")
    elif dev.type != "cpu":
        raise InputError(f"device {device!r}: voxface runs on cpu, cuda or mps")
    return dev


def synchronize(device: "torch.device") -> None:
    """Wait for the kernels queued on ``device`` (CUDA or MPS run them asynchronously; nothing to
    wait for on the CPU): what a timer reads after GPU work, so that it times the work, not its
    launch."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform reports it, which a
    container's CPU set narrows; else ``os.cpu_count()``)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int, name: str = "threads") -> int:
    """``threads`` (torch intra-op threads; 0: torch's default) when it lies from 0 to
    :func:`usable_cores`; else a one-line :class:`~voxface.errors.ConfigError` naming ``name`` (the
    option or config key). torch dies of a segmentation fault, without a message, on a count it
    cannot start, and more threads than cores only slow a run."""
    import operator

    from .errors import ConfigError

    cores = usable_cores()
    try:  # 1.5 was taken as 1, None was int()'s TypeError
        count = operator.index(threads) if not isinstance(threads, bool) else None
    except TypeError:
        count = None
    if count is None or not 0 <= count <= cores:
        raise ConfigError(f"{name} {threads!r} must be from 0 (torch's default) to the {cores} cores this "
                          "process may use, a whole number")
    return count


#: glibc ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: Whether :func:`keep_freed_memory` has been applied in this process (forked children inherit it).
freed_memory_kept = False


def _glibc():
    """The running process's C library through ctypes when it is glibc (Linux), else ``None``."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or not hasattr(os, "confstr"):
        return None
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None
        return ctypes.CDLL(None)
    except (OSError, ValueError):  # musl, a static interpreter
        return None


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Have glibc's ``malloc`` keep freed memory for reuse instead of handing it back to the kernel.

    A network forward on a CPU allocates and frees the same tens of megabytes of activations every
    batch. By default glibc returns large blocks to the kernel when they are freed (``mmap``'d
    blocks, and the top of the heap past its trim threshold), so the next batch faults the same
    pages in again, zero-filled: ~1,000 page faults and 1-2 ms of kernel time per 64^3 face, 8-10%
    of the network's time. With blocks up to ``mmap_threshold`` bytes served from the heap and the
    heap trimmed only past ``trim_threshold`` bytes of free memory, the pages stay mapped: no page
    fault in steady state. The process's resident memory then stays near its peak instead of
    falling between batches (the peak itself does not change).

    A process-wide setting, so it is made by the ``voxface`` command (and inherited by the
    processes it forks), not on import; call it yourself in a long-running process of your own.
    Returns whether it was applied: glibc only (Linux); a no-op elsewhere.
    """
    import ctypes

    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    global freed_memory_kept
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    freed_memory_kept = freed_memory_kept or ok
    return ok


def release_freed_memory() -> bool:
    """Hand the memory ``malloc`` holds free back to the kernel now (glibc ``malloc_trim(0)``).

    For a process about to fork workers after :func:`keep_freed_memory`: a child that reuses its
    parent's free heap pages copies each one on its first write (copy-on-write), where a page the
    kernel maps afresh is only zero-filled. Trimming before the fork cut the batch pipeline's
    kernel time by a quarter (~0.5 ms a face). Returns whether it ran: glibc only.
    """
    import ctypes

    libc = _glibc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.malloc_trim(0)
    return True

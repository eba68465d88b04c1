"""A synthetic dataset written to disk once, read at full speed for many epochs.

Generating a sample costs tens of milliseconds of CPU; a small model trains about ten times faster
than that on the same cores, so training from on-the-fly generation would leave it starved.
``write_cache`` renders ``N`` samples with worker processes into chunk folders; each chunk is
written to a temporary folder and renamed into place, so an interrupted run resumes by skipping
the chunks already there. Occupancy is bit-packed (``R^3 / 8`` bytes per grid).

Layout of ``DIR/<split>/``::

    meta.json               n, seed, resolution, image size, frame, sampler config, chunk size,
                            ict (digest of the ICT-FaceKit files rendered from)
    .lock                   held (flock) by the process writing the split: one writer at a time
    chunk_000000/           arrays for samples [0, chunk)
        image.npy           (n, S, S, 3) uint8 sRGB
        mask.npy            (n, S, S) uint8
        occ.npy             (n, R^3/8) uint8, bit-packed (D, H, W) occupancy
        occ_swap.npy        (n, R^3/8) uint8, bit-packed
        id_coeffs.npy ...   coefficients, pose, landmarks (float32)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import DataError
from ..occupancy import pack_occupancy, unpack_occupancy
from . import BLOCK, check_resolution

_FLOAT_KEYS = ("id_coeffs", "exp_coeffs", "rotation", "scale", "translation", "euler", "landmarks_2d", "landmarks_3d")

#: the arrays of every chunk (``<key>.npy``)
_KEYS = ("image", "mask", "occ", "occ_swap", "identity", "index", *_FLOAT_KEYS)

_worker: dict[str, Any] = {}

#: meta.json's ``format``: 2, rasterized renders with edge-adaptive anti-aliasing; 3, occupancy by the
#: nonzero rule (closed lips solid where the head surface passes through itself); 4, anti-aliased edge
#: pixels averaged and composited over the background in linear light (format 3 averaged sRGB values)
FORMAT = 4


def old_format_hint(meta: dict) -> str:
    """What to do with a cache of a format before :data:`FORMAT` (its ``meta.json`` as read): read as
    it is, never grown or completed, which would mix two renderers or occupancy rules."""
    f = meta.get("format", 0)
    what = ("the closed-lips occupancy fix (its grids by the even-odd rule)" if not isinstance(f, int) or f < 3 else
            "the linear-light anti-aliasing fix (its edge pixels averaged in sRGB)")
    return (f"it was written before {what}, so it cannot be completed or grown (its samples would mix two "
            "renderers): render a new cache into another folder")


def _old_format(meta: dict) -> bool:
    """Whether a cache's meta.json is of a format before :data:`FORMAT` (read as it is, never grown)."""
    f = meta.get("format", 0)
    return isinstance(f, int) and f < FORMAT


#: what to do with a chunk file found broken
_RENDER_ANEW = "remove its chunk folder and run 'voxface data cache' again to render it anew"


def _unreadable(path: Path, e: Exception) -> DataError:
    """The one-line error of a chunk file that changed or broke since the dataset was opened."""
    return DataError(f"cannot read this cache file ({type(e).__name__}: {e}); {_RENDER_ANEW}", path)


def _npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header of the ``.npy`` file ``fh`` (left at its data)."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(fh)


def _check_npy(path: Path, shape: tuple[int, ...], exact: bool) -> None:
    """A one-line :class:`DataError` naming ``path`` unless it is a whole ``.npy`` file of
    ``shape`` (only its first axis when not ``exact``). Reads the header only."""
    fix = _RENDER_ANEW
    try:
        with open(path, "rb") as fh:
            got, _, dtype = _npy_header(fh)
            need = fh.tell() + int(np.prod(got)) * dtype.itemsize
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise DataError(f"missing from the data cache; {fix}", path) from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read this cache file ({type(e).__name__}: {e}); {fix}", path) from None
    if size < need:
        raise DataError(f"truncated: {size} bytes where its header needs {need}; {fix}", path)
    if (got if exact else got[:1]) != (shape if exact else shape[:1]):
        want = list(shape) if exact else f"{shape[0]} rows"
        raise DataError(f"holds an array of shape {list(got)}, expected {want} (from meta.json); {fix}", path)


def _read_at(path: Path, offset: int, size: int) -> bytes:
    """``size`` bytes of ``path`` from ``offset`` (fewer at its end); the file is closed again."""
    if not hasattr(os, "pread"):  # pragma: no cover - not POSIX
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _make_sampler(ict_root: str | None, sampler_cfg: dict, seed: int):
    from .ict import load_ict
    from .synthetic import FaceSampler, SamplerConfig

    return FaceSampler(load_ict(ict_root), SamplerConfig(**sampler_cfg), seed)


def _init_worker(ict_root: str | None, sampler_cfg: dict, seed: int) -> None:
    """Pool initializer: Ctrl-C left to the parent, death with the parent, one thread per worker,
    then the worker's sampler.

    An exception here would make ``multiprocessing.Pool`` replace the worker, fail again and
    respawn forever; it is kept and raised by the first task instead, which ends the pool. (The
    parent builds a sampler before it starts the pool, so user errors are reported before that.)
    """
    import signal

    from .workers import die_with_parent, limit_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the pool (no worker tracebacks)
    # a parent killed outright (kill -9, out of memory, a plain SIGTERM) left its workers rendering on
    # for the rest of their chunks, out of the released .lock: beside the writer of a rerun
    die_with_parent()
    limit_threads(1)
    try:
        _worker["sampler"] = _make_sampler(ict_root, sampler_cfg, seed)
    except Exception as e:  # noqa: BLE001 - re-raised by _write_chunk
        _worker["error"] = e


def _write_chunk(args: tuple) -> int:
    """Render samples ``start..stop-1`` into ``out_dir/chunk_<c>`` (a temporary folder, each file
    fsynced, renamed into place). Each sample's rows go into the chunk's arrays as it is rendered:
    a list of rows stacked at the end held every row twice while ``np.stack`` copied them (the
    bit-packed grids at 256^3: 1 GB of rows a chunk of 256, and 0.5 GB more for the copy)."""
    out_dir, c, start, stop, resolution, frame = args
    from ..config import FrameConfig

    if "error" in _worker:
        raise _worker["error"]
    sampler = _worker["sampler"]
    frame = FrameConfig(side_mm=frame["side_mm"], center_mm=tuple(frame["center_mm"]))
    rows: dict[str, np.ndarray] = {}
    for i in range(start, stop):
        s = sampler.sample(i, resolution, frame, swap=True)
        s["image"] = (s["image"].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        s["occ"] = pack_occupancy(s["occ"])
        s["occ_swap"] = pack_occupancy(s["occ_swap"])
        for k in _KEYS:
            row = np.asarray(s[k])
            if k not in rows:  # (rows, *row shape) of the first row's dtype: what np.stack of the rows made
                rows[k] = np.empty((stop - start, *row.shape), row.dtype)
            rows[k][i - start] = row
    from ..mesh import _fsync_folder

    final = Path(out_dir) / f"chunk_{c:06d}"
    tmp = Path(out_dir) / f".tmp_chunk_{c:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    k = ""
    try:
        for k, v in rows.items():
            with open(tmp / f"{k}.npy", "wb") as f:
                np.save(f, v)
                f.flush()
                os.fsync(f.fileno())  # on disk before the rename makes the chunk count: no empty file after a power loss
    except OSError as e:  # a full disk: numpy's '131072 requested and 94080 written', naming no file
        shutil.rmtree(tmp, ignore_errors=True)  # not left taking the space a rerun needs
        reason = " ".join((e.strerror or str(e)).split()) + ("" if e.errno else "; is the disk full?")
        raise DataError(f"cannot write this cache file ({reason}); its chunk is not kept: run the same command "
                        "again to go on once there is room", final / f"{k}.npy") from None
    _fsync_folder(tmp)
    os.replace(tmp, final)
    _fsync_folder(Path(out_dir))
    return stop - start


def write_cache(out_dir: str | os.PathLike, n: int, *, seed: int = 0, resolution: int = 64,
                image_size: int = 128, frame: Any = None, sampler: dict | None = None,
                workers: int = 2, chunk: int = 256, ict_root: str | None = None, progress: bool = True) -> Path:
    """Render ``n`` samples (seeds ``(seed, 0..n-1)``) into ``out_dir``; resumable, and grows.

    A folder already written with the same settings keeps its samples: an interrupted run renders
    only the chunks that are missing, and a larger ``n`` adds samples ``old_n..n-1`` (the first
    ones are the same whatever ``n``, so a grown cache equals one written at that size at once).

    Args:
        out_dir: the split folder to write (created).
        n: number of samples, rounded down to a multiple of 4 (the block layout); at least 4.
        seed: dataset seed; ``(seed, index)`` determines every sample.
        resolution: occupancy grid resolution ``R`` (32 to 256: :data:`voxface.data.RESOLUTIONS`).
        image_size: crop size ``S`` in pixels.
        frame: :class:`voxface.config.FrameConfig` (default: the canonical cube).
        sampler: overrides of :class:`voxface.data.synthetic.SamplerConfig`.
        workers: worker processes (0: render in this process).
        chunk: samples per chunk folder (a multiple of 4).

    Raises :class:`~voxface.errors.DataError` naming ``out_dir``, before anything is written, for
    a count, seed or size that is not a whole number (``int`` or numpy integer), ``n`` below 4 (no
    sample), a ``resolution`` outside 32..256 (as ``voxface data export``), an ``image_size``
    below 1 and an ``out_dir`` that cannot be a folder to write into (a file there or among its
    parents); and, leaving the folder as it is, for a folder written with other
    settings or from other ICT-FaceKit files (``meta.json``'s ``ict``: a cache written before that
    key existed is trusted), or one another process is writing now.
    """
    from tqdm.auto import tqdm

    from ..config import FrameConfig, to_dict
    from .synthetic import SamplerConfig

    out = Path(out_dir)
    for name, value in (("n", n), ("seed", seed), ("resolution", resolution), ("image_size", image_size),
                        ("chunk", chunk), ("workers", workers)):  # as export_samples: 32.5 wrote meta.json's
        # resolution 32, then failed in the sampler's Grid naming no folder; seed 2.5 rendered seed 2
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{name} must be a whole number, not {value!r}", out)
    if int(n) < BLOCK:  # rounded down to none: an empty cache that training would refuse only later
        raise DataError(f"n must be at least {BLOCK} (samples are written in blocks of {BLOCK}), not {n}", out)
    check_resolution(int(resolution), "resolution", out)
    if int(image_size) < 1:
        raise DataError(f"image_size must be at least 1 (pixels), not {image_size}", out)
    n = int(n) - int(n) % BLOCK
    chunk = max(BLOCK, int(chunk) - int(chunk) % BLOCK)
    frame = frame or FrameConfig()
    unknown = sorted(set(sampler or {}) - set(asdict(SamplerConfig())), key=str)
    if unknown:
        raise DataError(f"unknown sampler setting(s) {unknown}")
    scfg = {**asdict(SamplerConfig()), **(sampler or {}), "image_size": int(image_size)}
    _check_output_folder(out)
    # Everything that can fail in a worker's initializer fails here first, with the usual one-line
    # error (a missing or malformed ICT-FaceKit folder above all), before a folder or a pool exists.
    local = _make_sampler(ict_root, scfg, int(seed))
    meta = {"n": n, "seed": int(seed), "resolution": int(resolution), "image_size": int(image_size),
            "frame": to_dict(frame), "sampler": to_dict(scfg), "chunk": chunk, "voxface_version": __version__,
            "format": FORMAT,  # a grown cache of another format would mix two renderers or occupancy rules
            "ict": local.ict.key}
    out.mkdir(parents=True, exist_ok=True)
    with _writer_lock(out):  # one writer at a time
        from ..mesh import atomic_open, remove_stale_temporaries

        mpath = out / "meta.json"
        for tmp in out.glob(".tmp_chunk_*"):  # left by a killed writer (no other writer runs now)
            shutil.rmtree(tmp, ignore_errors=True)
        remove_stale_temporaries(mpath, 0)  # a killed writer's meta.json temporary
        (out / ".meta.json.tmp").unlink(missing_ok=True)  # the same, as earlier versions named it
        write_meta = True
        if mpath.exists():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, ValueError) as e:
                raise DataError(f"cannot read this cache's meta.json ({type(e).__name__}); remove the folder or use "
                                "another one", mpath) from None
            if not isinstance(old, dict) or not isinstance(old.get("n"), int):
                raise DataError("is not a voxface cache's meta.json (no sample count); remove the folder or use "
                                "another one", mpath)
            if _old_format(old):
                raise DataError(f"a cache of format {old.get('format', 1)} is already there: {old_format_hint(old)}", out)
            settings = [k for k in meta if k not in ("n", "voxface_version", "ict")]  # n only says how many
            differ = _differences({k: old.get(k) for k in settings}, {k: meta[k] for k in settings})
            if differ:  # named, as data export names its own (which option to give to continue it)
                was = ", ".join(f"{k} {json.dumps(a)}" for k, a, _ in differ)
                now = ", ".join(f"{k} {json.dumps(b)}" for k, _, b in differ)
                raise DataError(f"a cache with other settings is already there ({was}; this run asks for {now}); "
                                "use another folder", out)
            if old.get("ict", meta["ict"]) != meta["ict"]:  # absent: written before voxface recorded it
                raise DataError(f"this cache was rendered from other ICT-FaceKit files (digest {old['ict']}, these are "
                                f"{meta['ict']}); its samples and new ones would differ: use another folder", out)
            old_n = int(old["n"])
            if n > old_n:  # grow: samples 0..old_n - 1 stay as they are (a sample is a function of (seed, index))
                if old_n % chunk:  # its last chunk is short: rendered again, in full
                    shutil.rmtree(out / f"chunk_{old_n // chunk:06d}", ignore_errors=True)
            meta["n"] = max(n, old_n)  # asking for fewer reads (and keeps) the first n
            write_meta = meta["n"] != old_n
        if write_meta:  # on disk before a chunk that needs it (not renamed in unwritten: empty after a power loss)
            try:
                with atomic_open(mpath) as fh:
                    fh.write(json.dumps(meta, indent=1).encode())
            except OSError as e:  # a full disk: the earlier meta.json stays as it was
                raise DataError(f"cannot write this cache file ({' '.join((e.strerror or str(e)).split())}); run the "
                                "same command again once there is room", mpath) from None
        # the chunks holding samples 0..n-1, each rendered in full for the folder's n (a chunk is
        # never shorter than meta.json says: asking for fewer than it holds completes that chunk)
        end = min(meta["n"], -(-n // chunk) * chunk)
        tasks = []
        for c, start in enumerate(range(0, end, chunk)):
            if not (out / f"chunk_{c:06d}").is_dir():
                tasks.append((str(out), c, start, min(start + chunk, end), resolution, meta["frame"]))
        done = end - sum(t[3] - t[2] for t in tasks)
        bar = tqdm(total=end, initial=done, desc=f"cache {out.name}", unit="sample", disable=not progress,
                   smoothing=0.05)
        try:
            if workers and workers > 0:
                import multiprocessing as mp

                del local  # the workers build their own
                ctx = mp.get_context("spawn")
                others = set(mp.active_children())
                with ctx.Pool(workers, _init_worker, (ict_root, scfg, meta["seed"])) as pool:
                    started = [p for p in mp.active_children() if p not in others]  # the pool's workers
                    for k in _pool_results(pool.imap_unordered(_write_chunk, tasks), len(tasks), started, out):
                        bar.update(k)
            else:
                _worker.pop("error", None)
                _worker["sampler"] = local
                for t in tasks:
                    bar.update(_write_chunk(t))
        finally:
            # closed (its line ended) however the run ends: a full disk's or Ctrl-C's message was printed
            # on the end of the bar's line ('... 256/512 [00:02<00:02]error: ...'), the bar drawn again after it
            bar.close()
            _worker.pop("sampler", None)  # the in-process sampler (the ICT model) is not kept after the call
        return out


def _check_output_folder(out: Path) -> None:
    """A one-line :class:`DataError` naming ``out`` unless it can be a folder to write into
    (:func:`voxface.mesh.output_problem`: a file there or among its parents, a folder that refuses
    files); checked before the ICT model is read, where pathlib's bare ``FileExistsError`` or
    ``NotADirectoryError`` came after it. Creates nothing."""
    from ..mesh import output_problem

    problem = output_problem(out, folder=True)
    if problem is not None:
        raise DataError(problem, out)


def _pool_results(results: Any, count: int, workers: list, out: Path) -> Any:
    """The ``count`` results of a pool's ``imap_unordered`` iterator ``results``, as they come; a
    one-line :class:`DataError` naming ``out`` once a process of ``workers`` (the pool's, as
    started) has died. ``multiprocessing.Pool`` replaces a worker that dies (the out-of-memory
    killer, a crash, ``kill -9``) but never hands its task to another nor says so: the run waited
    for that chunk forever, without a word. The workers are looked at after every result and every
    second without one, so the run stops at once, not after the other chunks."""
    import multiprocessing as mp
    import signal

    waiting = object()
    for _ in range(count):
        result = waiting
        while result is waiting:
            try:
                result = results.next(timeout=1.0)
            except mp.TimeoutError:
                pass
            # looked at after every result too: the other workers (and the one the pool starts in the dead
            # one's place) go on rendering, so the lost chunk was noticed only once every other chunk was
            # written, hours later at 256^3
            dead = next((p for p in workers if p.exitcode is not None), None)
            if dead is not None:
                code = dead.exitcode
                how = (f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
                       else f"exit code {code}")
                raise DataError(f"a worker process died ({how}: out of memory, or killed?) before its chunk was "
                                "written; the complete chunks are kept: run the same command again to go on (with "
                                "fewer workers if memory ran out)", out) from None
        yield result


def _same_frame(a: Any, b: dict) -> bool:
    """Whether ``a`` (a meta.json's ``frame``) is the cube ``b`` (:func:`voxface.config.to_dict` of a
    :class:`~voxface.config.FrameConfig`), to float precision; something unreadable is not."""
    try:
        return bool(np.isclose(float(a["side_mm"]), float(b["side_mm"]), rtol=0, atol=1e-6)
                    and np.allclose(np.asarray(a["center_mm"], float), np.asarray(b["center_mm"], float),
                                    rtol=0, atol=1e-6))
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def _differences(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` of the settings that differ; dicts compared key by key
    (``sampler.yaw``), a key absent on one side as ``None``."""
    out = []
    for k in list(new) + [k for k in old if k not in new]:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


#: the locks this process holds (:func:`_writer_lock`), by lock file and thread
_held: set[tuple[str, int]] = set()

#: what a second writer of a cache split is told
_CACHE_BUSY = ("another process is writing this cache now; wait for it to finish (then run again to grow it), or "
               "write into another folder")


@contextlib.contextmanager
def _writer_lock(out: Path, name: str | None = ".lock", busy: str = _CACHE_BUSY):
    """Hold ``out/<name>`` exclusively while writing into ``out`` (two writers would remove and
    rename each other's files); another writer gets a one-line :class:`DataError` naming ``out``
    and saying ``busy``, at once. ``name`` None locks the folder itself, leaving no file in it
    (best effort: where the file system cannot lock a folder, as NFS, there is no lock). Taken
    again by the thread holding it, it is held already (the command line holds an export's lock
    around :func:`voxface.data.export.export_samples`, which takes it too)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    import errno
    import threading

    target = out if name is None else out / name
    key = (os.path.realpath(target), threading.get_ident())
    if key in _held:
        yield
        return
    try:
        fd = os.open(target, os.O_RDONLY) if name is None else os.open(target, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise DataError(f"cannot create this lock file ({e.strerror})", target) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if name is not None or e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataError(busy, out) from None
            yield  # the folder cannot be locked here: written unlocked, as before
            return
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class CachedDataset:
    """Reads a folder written by :func:`write_cache`; items follow :mod:`voxface.data`'s layout."""

    def __init__(self, path: str | os.PathLike, limit: int | None = None):
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError):
            if (self.path / "train" / "meta.json").is_file():  # the folder 'voxface data cache -o' names
                raise DataError("holds a data cache's splits: open its train/ or val/ folder (a config's data.path "
                                "is this folder)", self.path) from None
            raise DataError("not a voxface data cache (no readable meta.json); write one with "
                            "'voxface data cache'", self.path) from None
        try:
            self.chunk, self.resolution, n_meta, size = (int(self.meta[k]) for k in ("chunk", "resolution", "n",
                                                                                     "image_size"))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"is not a voxface cache's meta.json ({type(e).__name__}: {e})",
                            self.path / "meta.json") from None
        if self.chunk < 1:
            raise DataError(f"is not a voxface cache's meta.json (chunk {self.chunk})", self.path / "meta.json")
        n_ready, c = 0, 0
        # contiguous complete chunks only, found by name: a sorted listing of chunk_* stopped at any other
        # entry so named (a backup copy 'chunk_000000.bak' sorts before chunk_000001): the cache read one chunk
        while n_ready < n_meta and (self.path / f"chunk_{c:06d}").is_dir():
            c += 1
            n_ready = min(n_meta, c * self.chunk)
        self.n = n_ready - n_ready % BLOCK
        if limit is not None:  # 0 or less: none (a run without validation items)
            self.n = max(0, min(self.n, int(limit) - int(limit) % BLOCK))
        if n_ready < BLOCK:
            raise DataError("the data cache holds no complete chunk yet", self.path)
        asked = n_meta if limit is None else min(n_meta, max(0, int(limit) - int(limit) % BLOCK))
        if self.n < asked:  # its writer was stopped (or runs now): a training run read the few there were silently
            import warnings

            fix = (old_format_hint(self.meta) if _old_format(self.meta) else "run that command again to complete it")
            warnings.warn(f"{self.path}: holds {n_ready} complete samples of the {n_meta} its meta.json names (the "
                          f"'voxface data cache' run writing them has not finished); reading {self.n}: {fix}",
                          UserWarning, stacklevel=2)
        # every file of the chunks in use is whole (a truncated or missing file is found now, in
        # one line naming it, not as a traceback from a loader worker hours into training)
        packed = (self.resolution ** 3 + 7) // 8  # np.packbits of R^3 bits: the last byte padded (odd R)
        rows_of = {"image": (size, size, 3), "mask": (size, size), "occ": (packed,), "occ_swap": (packed,)}
        for c in range(-(-self.n // self.chunk)):
            rows = min(self.chunk, n_meta - c * self.chunk)
            for k in _KEYS:
                _check_npy(self.path / f"chunk_{c:06d}" / f"{k}.npy", (rows, *rows_of.get(k, ())),
                           exact=k in rows_of)
        self._arrays: dict[int, dict[str, tuple]] = {}  # each chunk file's header (_chunk), read once
        #: the fields items hold (``None``: all); a training step that reads only some of them (an
        #: encoder stage reads no occupancy) sets it, and items skip decoding the rest
        self.fields: frozenset[str] | None = None

    @classmethod
    def from_config(cls, data_cfg: dict, split: str, model_cfg: Any) -> "CachedDataset":
        """The ``split`` of the cache at ``data_cfg["path"]``. Keys: ``kind``, ``path``, ``num_train``,
        ``num_val``; those of ``kind: synthetic`` are accepted and unused (the cache was rendered
        with its own settings, in its meta.json), so a config inheriting a synthetic one can switch
        by ``kind`` and ``path``. Any other key is a :class:`ConfigError` (a typo such as
        ``num_trian`` trained on the whole cache without a word)."""
        from dataclasses import fields

        from ..config import to_dict
        from ..errors import ConfigError
        from .synthetic import SyntheticDataConfig

        if split not in ("train", "val"):  # 'Train' or 'test' read the validation split without a word
            raise ConfigError(f"unknown split {split!r}; use 'train' or 'val'")
        own = {"kind", "path", "num_train", "num_val"}
        unknown = sorted(set(data_cfg) - own - {f.name for f in fields(SyntheticDataConfig)}, key=str)
        if unknown:
            raise ConfigError(f"data: unknown key(s) {unknown} for kind: cache; known: {sorted(own)}")
        if not data_cfg.get("path"):  # a KeyError traceback from the trainer
            raise ConfigError("data.path: the cache folder ('voxface data cache -o DIR') is required for kind: cache")
        root = Path(data_cfg["path"]).expanduser()
        # a split's folder: '<root>/train: not a voxface data cache ...; write one with voxface data cache'
        if (root / "meta.json").is_file() and not (root / "train").is_dir():
            raise DataError(f"is one split of a data cache (its meta.json is here): data.path is the folder holding "
                            f"train/ and val/ ({root.parent})", root)
        key = "num_train" if split == "train" else "num_val"
        limit = data_cfg.get(key)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))):
            # YAML reads 1e4 as text: a ValueError traceback; 10.7 was truncated without a word
            raise ConfigError(f"data.{key} {limit!r} must be a whole number of items, or null for all")
        if limit is not None and int(limit) < BLOCK and (split == "train" or int(limit) > 0):
            # it was blamed on the cache ('holds no complete chunk yet')
            raise ConfigError(f"data.{key} {limit}: items come in blocks of {BLOCK}, so it keeps none of the "
                              f"{split} split; give at least {BLOCK}, or null for all"
                              + (" (0: no validation)" if split != "train" else ""))
        ds = cls(root / ("train" if split == "train" else "val"), limit)
        held = int(ds.meta["n"])
        if limit is not None and int(limit) - int(limit) % BLOCK > held:  # synthetic data makes as many as asked
            import warnings

            option = "-n" if split == "train" else "--num-val"
            fix = (old_format_hint(ds.meta) if _old_format(ds.meta) else
                   f"grow it with 'voxface data cache -o {root} {option} {limit}' and the options that wrote it")
            warnings.warn(f"{ds.path}: data.{key} {limit} asks for more items than this cache holds ({held}); reading "
                          f"{len(ds)}: {fix}", UserWarning, stacklevel=2)
        if ds.resolution != model_cfg.decoder.resolution:
            raise DataError(f"cache resolution {ds.resolution} differs from the model's "
                            f"{model_cfg.decoder.resolution}", ds.path)
        if int(ds.meta["image_size"]) != model_cfg.encoder.image_size:
            raise DataError(f"cache image size {ds.meta['image_size']} differs from the model's "
                            f"{model_cfg.encoder.image_size}", ds.path)
        # the grids' cube: a model of another model.frame (a toy config's 300 mm cube) trained on the cache's
        # 400 mm grids read as its own, every mesh it then made scaled and shifted, without a word
        have, want = ds.meta.get("frame"), to_dict(model_cfg.frame)
        if have is not None and not _same_frame(have, want):
            raise DataError(f"cache frame {json.dumps(have)} (the cube of its occupancy grids) differs from the model's "
                            f"model.frame {json.dumps(want)}: its grids would be read on the wrong cube; give the "
                            "config the cache's frame, or use data.kind: synthetic (voxface data cache writes the "
                            "default frame)", ds.path)
        return ds

    def __len__(self) -> int:
        return self.n

    def _chunk(self, c: int) -> dict[str, tuple]:
        """Where each array of chunk ``c`` keeps its rows: ``(path, offset of row 0, row shape,
        dtype, rows)``, from the files' headers. No file is held open: a row is read when an item
        needs it (a memory map per file held a descriptor each, 14 a chunk: a cache of more than
        73 chunks, 18,688 samples at 256 a chunk, failed mid-epoch under the usual limit of 1024
        open files with 'Too many open files', blamed on a sound chunk)."""
        if c not in self._arrays:
            d = self.path / f"chunk_{c:06d}"
            layout = {}
            for k in _KEYS:
                path = d / f"{k}.npy"
                try:
                    with open(path, "rb") as fh:
                        shape, fortran, dtype = _npy_header(fh)
                        offset = fh.tell()
                    if dtype.hasobject or not shape or (fortran and len(shape) > 1):
                        raise ValueError(f"an array of {dtype} {list(shape)}, not rows written by voxface")
                except (OSError, ValueError) as e:  # changed since the dataset was opened
                    raise _unreadable(path, e) from None
                layout[k] = (path, offset, tuple(shape[1:]), dtype, int(shape[0]))
            self._arrays[c] = layout
        return self._arrays[c]

    def _row(self, layout: tuple, j: int) -> np.ndarray:
        """Row ``j`` of one chunk file (``layout``: :meth:`_chunk`'s), read from disk (writable)."""
        path, offset, shape, dtype, rows = layout
        size = int(np.prod(shape)) * dtype.itemsize
        try:
            if j >= rows:
                raise ValueError(f"{rows} rows, no row {j}")
            buf = _read_at(path, offset + j * size, size)
            if len(buf) != size:
                raise ValueError(f"truncated: row {j} ends past the end of the file")
        except (OSError, ValueError) as e:  # changed since the dataset was opened
            raise _unreadable(path, e) from None
        return np.frombuffer(bytearray(buf), dtype).reshape(shape)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        a = self._chunk(i // self.chunk)
        j = i % self.chunk
        R = self.resolution
        row = self._row
        read = {
            "image": lambda: np.ascontiguousarray(row(a["image"], j).transpose(2, 0, 1), dtype=np.float32) / 255.0,
            "mask": lambda: row(a["mask"], j),
            "occ": lambda: unpack_occupancy(row(a["occ"], j), R),
            "occ_swap": lambda: unpack_occupancy(row(a["occ_swap"], j), R),
            "identity": lambda: np.int64(row(a["identity"], j)[()]),
            "index": lambda: np.int64(row(a["index"], j)[()]),
            **{k: (lambda k=k: np.asarray(row(a[k], j), dtype=np.float32)) for k in _FLOAT_KEYS},
        }
        keep = self.fields
        return {k: f() for k, f in read.items() if keep is None or k in keep}

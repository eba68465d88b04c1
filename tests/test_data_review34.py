"""Review 34: the synthetic data engine (cache writer, export)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from voxface.data.cache import CachedDataset, write_cache
from voxface.errors import DataError


def test_a_cache_worker_killed_mid_chunk_stops_the_run_in_one_line(tmp_path, toy_root, cache_env):
    """A cache worker that died (the out-of-memory killer, kill -9) was replaced by
    multiprocessing.Pool, which never gave its chunk to another: 'voxface data cache' waited for it
    forever without a word. The run now stops with a DataError naming the split folder; the
    chunks written are kept and a rerun completes the cache."""
    out = tmp_path / "c"
    kw = dict(seed=2, resolution=32, image_size=32, chunk=4, ict_root=str(toy_root), progress=False)
    others = set(multiprocessing.active_children())
    caught: list[BaseException] = []

    def run() -> None:
        try:
            write_cache(out, 400, workers=1, **kw)
        except BaseException as e:  # noqa: BLE001 - looked at below
            caught.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (out / "chunk_000000").is_dir():  # the worker is past its start, into its next chunks
        assert time.monotonic() < deadline and thread.is_alive(), caught
        time.sleep(0.05)
    worker = next(p for p in multiprocessing.active_children() if p not in others)
    os.kill(worker.pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive(), "write_cache waits forever for the chunk of a worker that died"
    assert len(caught) == 1 and isinstance(caught[0], DataError), caught
    msg = str(caught[0])
    assert msg.startswith(f"{out}: a worker process died (killed by SIGKILL") and "run the same command again" in msg
    assert "\n" not in msg
    # at once, not once the pool's new worker had rendered every other chunk (99 of them: the test's 60 s
    # ran out on a loaded machine, and a 256^3 cache went on for hours before it said so)
    assert len(list(out.glob("chunk_*"))) < 50
    write_cache(out, 8, workers=0, **kw)  # the folder is sound: a rerun (here of fewer) goes on
    assert len(CachedDataset(out, limit=8)) == 8 and not list(out.glob(".tmp_chunk_*"))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_second_export_into_a_folder_being_exported_is_refused_and_touches_nothing(tmp_path, toy_root, cache_env,
                                                                                    monkeypatch, capsys):
    """Two exports into one folder (a job started again while the first runs) rendered the same
    samples side by side, and the failure or Ctrl-C of one removed the other's half-written sample
    (its PNG and PLY, no JSON yet), which the other then completed with its JSON: a sample without
    crop or mesh that every resume skipped; it could also record its own settings in .export.json
    over the other's samples. One export writes into a folder at a time (a lock on the folder); the
    second is one line and removes and records nothing, through the API and the command line."""
    import fcntl

    from voxface.data.export import export_samples

    from .conftest import run_cli

    out = tmp_path / "x"
    args = ("--resolution", 32, "--points", 16, "--ict-root", toy_root)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, *args)
    assert code == 0, err
    (out / ".export.json").unlink()  # as while the first export runs: its settings are recorded at its end
    (out / "000002.png").write_bytes(b"the running export's crop")  # its sample being written
    (out / "000002.ply").write_bytes(b"the running export's mesh")
    before = _files(out)
    held = os.open(out, os.O_RDONLY)  # the lock the running export holds: the folder's (no file in it)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError) as ei:
            export_samples(out, 4, resolution=32, points=16, ict_root=str(toy_root), progress=False)
        assert str(ei.value) == (f"{out}: another export is writing into this folder now; wait for it to finish (then "
                                 "run the same command again to grow it), or export into another folder")
        assert _files(out) == before
        code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 4, "-o", out, *args)
        assert code == 1 and err.strip().splitlines() == [f"error: {ei.value}"], err
        assert _files(out) == before  # the other's half sample kept, no settings recorded for it
    finally:
        os.close(held)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 4, "-o", out, *args)  # once it is free
    assert code == 0, err
    assert (out / ".export.json").is_file() and (out / "000003.json").is_file()
    assert (out / "000002.png").read_bytes() != b"the running export's crop"


def test_a_failed_export_samples_leaves_no_half_written_sample(tmp_path, toy_root, monkeypatch):
    """export_samples (the library's export) stopped by a full disk after a sample's PNG and PLY
    left them without their JSON: a crop the folder dataset refuses ('no pose ... for this crop')
    until an export resumes (only the command line removed them). They are removed."""
    import errno

    from voxface.data.export import export_samples

    out = tmp_path / "x"
    kw = dict(resolution=32, points=16, ict_root=str(toy_root), progress=False)
    assert export_samples(out, 2, **kw) == 2
    before = _files(out)

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(DataError, match="000002.npz: cannot write this file"):
        export_samples(out, 4, **kw)
    assert _files(out) == before


def test_sigterm_stops_data_cache_as_ctrl_c_does(tmp_path, toy_root, cache_env, monkeypatch, capsys):
    """SIGTERM (a job's time limit) killed 'voxface data cache' without a word (exit by signal, its
    progress bar's line left open), where Ctrl-C said 'interrupted'. It is stopped as Ctrl-C is:
    one line saying that the complete chunks are kept and how to go on, exit 143; the rerun
    completes the cache."""
    from voxface.data import cache

    from .conftest import run_cli

    real = cache._write_chunk
    calls: list[tuple] = []

    def write_chunk(args):  # the signal lands as the train split's chunk starts
        calls.append(args)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(args)

    def unhandled(signum, frame):  # a SIGTERM the command leaves alone: a failure, not the end of pytest
        raise AssertionError("SIGTERM reached the process's own handler")

    out = tmp_path / "c"
    args = ("data", "cache", "-o", out, "-n", 8, "--num-val", 4, "--resolution", 32, "--image-size", 16,
            "--workers", 0, "--ict-root", toy_root)
    monkeypatch.setattr(cache, "_write_chunk", write_chunk)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 143, err
    assert err.rstrip().splitlines()[-1] == (f"error: terminated; the complete chunks in {out} are kept: run the same "
                                             "command again to go on"), err
    assert (out / "val" / "chunk_000000").is_dir() and not (out / "train" / "chunk_000000").exists()
    code, outp, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and f"cache ready in {out}" in outp, err
    assert len(CachedDataset(out / "train")) == 8

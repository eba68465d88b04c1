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
    write_cache(out, 8, workers=0, **kw)  # the folder is sound: a rerun (here of fewer) goes on
    assert len(CachedDataset(out, limit=8)) == 8 and not list(out.glob(".tmp_chunk_*"))

"""Training review 35: regressions for the defects found in voxface/train.py and its neighbours."""

from __future__ import annotations

import tracemalloc
import types

import numpy as np

from voxface.train import _Run


class _OccItems:
    """Training items holding only a uint8 ``occ (R, R, R)`` (made up front, so reading one allocates nothing)."""

    def __init__(self, resolution: int, n: int) -> None:
        rng = np.random.default_rng(0)
        self.items = [{"occ": (rng.random((resolution,) * 3) < 0.3).astype(np.uint8)} for _ in range(n)]

    def __getitem__(self, j: int) -> dict[str, np.ndarray]:
        return self.items[j]


def test_the_mean_occupancy_is_counted_an_item_at_a_time_not_stacked() -> None:
    """The template's start and the mean-shape baseline stacked every prior item's grid and made a float32
    copy of the stack: 5 * n * R^3 bytes (320 MB for the default 256 items of 64^3, 20 GB at 256^3) before
    the first step. Counted into one float32 grid, the peak is a few grids, and the mean is the same bits."""
    r, n = 32, 64
    ds = _OccItems(r, n)
    run = types.SimpleNamespace(train_ds=ds, prior_idx=list(range(n)), _mean_occ=None)
    tracemalloc.start()
    try:
        mean = _Run.mean_occupancy(run)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grid = r**3
    assert peak < 12 * grid, f"{peak / grid:.1f} grids of bytes at peak (the stack took {5 * n})"
    expected = np.stack([ds[j]["occ"] for j in range(n)]).astype(np.float32).mean(0)
    assert mean.dtype == np.float32 and mean.shape == (r, r, r)
    assert np.array_equal(mean, expected)
    assert _Run.mean_occupancy(run) is mean  # read once
    assert ds[0]["occ"].dtype == np.uint8  # (the items are left as they are)

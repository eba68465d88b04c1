"""Single-photo reconstruction through the Python API reviewed (session 38) as a researcher in a
notebook uses it: ``model.reconstruct`` and what the :class:`~voxface.Reconstruction` holds."""

from __future__ import annotations

import time

import numpy as np

from voxface.reconstruct import reconstruct_image

from .test_reconstruct_review33 import tiny_model  # noqa: F401 - the same module fixture


def _two_faces() -> np.ndarray:
    """The astronaut beside her mirror image: a photo of two faces, ``(512, 1024, 3)`` uint8."""
    from skimage import data

    img = data.astronaut()
    return np.ascontiguousarray(np.concatenate([img, img[:, ::-1]], axis=1))


def test_the_faces_of_one_photo_share_its_network_time(tiny_model) -> None:
    """``all_faces=True`` loads the photo, detects, encodes and decodes once for all its faces; each
    face recorded that whole time as its own (``load_detect_crop``, ``encode``, ``decode``), so the
    faces' ``total`` added up to more than the call took. Each face holds its share, as
    :func:`voxface.reconstruct.decode_latents` gives a batch of codes."""
    t0 = time.perf_counter()
    recs = reconstruct_image(tiny_model, _two_faces(), all_faces=True)
    wall = time.perf_counter() - t0
    assert len(recs) == 2
    for stage in ("load_detect_crop", "encode", "decode"):
        assert recs[0].seconds[stage] == recs[1].seconds[stage] > 0
    assert sum(r.seconds["total"] for r in recs) <= wall
    for r in recs:  # the total is still the sum of its stages
        s = r.seconds
        assert np.isclose(s["total"], s["load_detect_crop"] + s["encode"] + s["decode"] + s["mesh"])

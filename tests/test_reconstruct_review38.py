"""Single-photo reconstruction through the Python API reviewed (session 38) as a researcher in a
notebook uses it: ``model.reconstruct`` and what the :class:`~voxface.Reconstruction` holds."""

from __future__ import annotations

import time

import numpy as np

from voxface.reconstruct import reconstruct_image

from .test_data import REAL_ICT, needs_ict

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


@needs_ict
def test_mesh_in_camera_puts_a_rendered_faces_landmarks_on_their_pixels() -> None:
    """``mesh_in_camera``'s weak-perspective formula against the renderer's ground truth: a
    synthetic face's 68 canonical landmarks, posed by the pose the training targets hold and a crop
    box of the whole crop, land on the landmarks' pixels in the rendered crop (exact perspective:
    within a few pixels of 128, the depth the weak perspective leaves out), and not mirrored (x or y
    flipped is tens of pixels off)."""
    import torch
    import trimesh

    from voxface.data.synthetic import FaceSampler
    from voxface.frame import Grid
    from voxface.models import Latents, Pose
    from voxface.reconstruct import Reconstruction

    fs = FaceSampler(REAL_ICT, seed=0)
    for i in range(3):
        s = fs.sample(i, resolution=None, swap=False)
        size = s["image"].shape[-1]
        pose = Pose(torch.from_numpy(s["rotation"])[None], torch.tensor([float(s["scale"])]),
                    torch.from_numpy(s["translation"])[None])
        rec = Reconstruction(trimesh.Trimesh(s["landmarks_3d"], np.zeros((0, 3), int), process=False),
                             np.zeros((2, 2, 2), np.float32), Latents(torch.zeros(1, 100), torch.zeros(1, 53), pose),
                             pose, Grid(2, 400.0, (0.0, 0.0, 0.0)), crop_box=np.array([0.0, 0.0, float(size)]))
        xy = rec.mesh_in_camera().vertices[:, :2]
        err = np.linalg.norm(xy - s["landmarks_2d"], axis=1)
        assert err.mean() < 0.03 * size and err.max() < 0.06 * size
        for axis in (0, 1):  # the same landmarks mirrored about the crop's centre
            flipped = xy.copy()
            flipped[:, axis] = size - flipped[:, axis]
            assert np.linalg.norm(flipped - s["landmarks_2d"], axis=1).mean() > 3 * err.mean()


def test_a_list_of_photos_is_refused_saying_how_to_do_several(tiny_model) -> None:
    """``model.reconstruct([a, b])``, a natural first try for several photos, was load_image's
    'unsupported input type list; expected a path, a PIL image, ...', which named neither the
    function called nor how to reconstruct several: one line says both (still a TypeError)."""
    import pytest

    from voxface.errors import InputTypeError

    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputTypeError, match=r"^reconstruct takes one photo, got a list of 2: .*reconstruct_files"):
        tiny_model.reconstruct([img, img])
    with pytest.raises(TypeError, match="got a tuple of 1"):
        reconstruct_image(tiny_model, ("a.jpg",))


def test_a_bfloat16_model_reconstructs_and_records_its_digest(tiny_model) -> None:
    """``model.to(torch.bfloat16)`` (usual on a GPU) encoded and decoded the photo, then failed in
    the provenance, hashing the weights through numpy, which has no bfloat16: 'TypeError: Got
    unsupported ScalarType BFloat16' from every ``model.reconstruct``. The digest hashes a bfloat16
    weight's bytes; other dtypes' digests are unchanged."""
    import copy

    import torch

    from voxface.reconstruct import model_digest

    before = model_digest(tiny_model)
    bf = copy.deepcopy(tiny_model).to(torch.bfloat16)
    digest = model_digest(bf)
    assert len(digest) == 16 and digest != before
    assert model_digest(tiny_model) == before
    from skimage import data

    rec = reconstruct_image(bf, data.astronaut()[60:190, 160:290], detect=False)
    assert str(rec.provenance["model_sha256"]) == digest
    assert rec.logits.dtype == np.float32 and rec.mesh_in_camera().vertices.shape == rec.mesh.vertices.shape

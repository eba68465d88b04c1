"""Mirror augmentation: the flipped crop and grid, and labels that describe the mirrored face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxface.augment import (MirrorMaps, block_flips, expression_mirror_map, mirror_batch, mirror_maps,
                             vertex_mirror)
from voxface.config import FrameConfig
from voxface.data.ict import expression_mirror
from voxface.errors import ConfigError
from voxface.frame import HEAD_RMS_RADIUS_MM, Grid

from .test_data import REAL_ICT, needs_ict


def _maps(n_id: int = 4, n_exp: int = 3) -> MirrorMaps:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(n_id, n_id)))
    return MirrorMaps(identity=q.astype(np.float32), identity_residual=np.zeros(n_id, np.float32),
                      expression=np.array([1, 0, 2][:n_exp]), landmarks=np.arange(68)[::-1].copy())


def _batch(b: int = 8, s: int = 6, r: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(b, 3, s, s, generator=g),
        "mask": (torch.rand(b, s, s, generator=g) > 0.5).to(torch.uint8),
        "occ": (torch.rand(b, r, r, r, generator=g) > 0.5).to(torch.uint8),
        "id_coeffs": torch.randn(b, 4, generator=g),
        "exp_coeffs": torch.rand(b, 3, generator=g),
        "rotation": torch.linalg.qr(torch.randn(b, 3, 3, generator=g))[0],
        "scale": torch.rand(b, generator=g),
        "translation": torch.randn(b, 2, generator=g),
        "euler": torch.randn(b, 3, generator=g),
        "landmarks_2d": torch.rand(b, 68, 2, generator=g) * s,
        "index": torch.arange(b),
    }


def test_expression_mirror_swaps_left_and_right() -> None:
    names = ["eyeBlink_L", "jawOpen", "eyeBlink_R", "mouthLeft", "cheekPuff_L"]
    perm = expression_mirror(names)
    assert perm.tolist() == [2, 1, 0, 3, 4]  # an unpaired _L keeps its place
    assert (perm[perm] == np.arange(len(names))).all()


def test_mirrored_expressions_exchange_left_and_right_sided_shapes_too() -> None:
    """jawLeft/jawRight and mouthLeft/mouthRight are each other's mirror images: a mirrored crop
    of a jaw moved left was labelled jawLeft (the augmentation used the _L/_R pairs alone)."""
    names = ["eyeBlink_L", "jawLeft", "jawOpen", "eyeBlink_R", "mouthRight", "jawRight", "mouthLeft", "cheekPuff_L"]
    perm = expression_mirror_map(names)
    assert perm.tolist() == [3, 5, 2, 0, 6, 1, 4, 7]
    assert (perm[perm] == np.arange(len(names))).all()


@needs_ict
def test_each_mirrored_blendshape_is_its_partners_shape() -> None:
    """On ICT-FaceKit: blendshape j mirrored (x negated, vertices renumbered) is blendshape
    ``maps.expression[j]``, for all 53, up to ICT's own asymmetry (under 1% of the squared
    displacement; jawLeft mirrored against jawLeft itself is 400%)."""
    from voxface.data.ict import CLOSED_HEAD_VERTICES, load_ict

    ict = load_ict(REAL_ICT)
    maps = mirror_maps(ict)
    n = CLOSED_HEAD_VERTICES
    vm = vertex_mirror(ict.neutral[:n])
    e = ict.expression[:, :n].astype(np.float64)
    mirrored = e[:, vm] * np.array([-1.0, 1.0, 1.0])
    err = ((mirrored - e[maps.expression]) ** 2).sum((1, 2)) / (e ** 2).sum((1, 2))
    assert err.max() < 0.02, [ict.expression_names[j] for j in np.flatnonzero(err >= 0.02)]


def test_vertex_mirror_finds_mirror_vertices_and_refuses_asymmetric_meshes() -> None:
    v = np.array([[1.0, 2.0, 3.0], [-1.0, 2.0, 3.0], [0.0, 5.0, 1.0]])
    assert vertex_mirror(v).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="not left-right symmetric"):
        vertex_mirror(np.array([[1.0, 0, 0], [-2.0, 0, 0]]))


def test_mirror_batch_flips_only_the_chosen_samples() -> None:
    b, maps = _batch(), _maps()
    flip = torch.tensor([True] * 4 + [False] * 4)
    m = mirror_batch(b, flip, maps)
    for k in b:  # untouched samples keep every field, bit for bit
        assert torch.equal(m[k][4:], b[k][4:]), k
    assert torch.equal(m["image"][:4], b["image"][:4].flip(-1))
    assert torch.equal(m["mask"][:4], b["mask"][:4].flip(-1))
    assert torch.equal(m["occ"][:4], b["occ"][:4].flip(-1))  # W = canonical x
    torch.testing.assert_close(m["id_coeffs"][:4], b["id_coeffs"][:4] @ torch.from_numpy(maps.identity).T)
    assert torch.equal(m["exp_coeffs"][:4], b["exp_coeffs"][:4][:, [1, 0, 2]])
    F = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    torch.testing.assert_close(m["rotation"][:4], F @ b["rotation"][:4] @ F)
    assert torch.equal(m["translation"][:4, 0], -b["translation"][:4, 0])
    assert torch.equal(m["translation"][:4, 1], b["translation"][:4, 1])
    assert torch.equal(m["euler"][:4], b["euler"][:4] * torch.tensor([-1.0, 1.0, -1.0]))
    assert torch.equal(m["scale"], b["scale"])
    lm = b["landmarks_2d"][:4].flip(1)  # the test permutation reverses the 68 points
    torch.testing.assert_close(m["landmarks_2d"][:4, :, 0], 6 - lm[..., 0])
    torch.testing.assert_close(m["landmarks_2d"][:4, :, 1], lm[..., 1])
    # a mirrored rotation is still a rotation
    R = m["rotation"]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(8, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(8), atol=1e-5, rtol=0)


def test_mirroring_twice_is_the_identity_for_an_involutive_map() -> None:
    b = _batch()
    maps = _maps()
    refl = np.eye(4, dtype=np.float32)
    refl[0, 0] = -1.0  # a reflection is its own inverse
    maps = MirrorMaps(refl, maps.identity_residual, maps.expression, maps.landmarks)
    flip = torch.ones(8, dtype=torch.bool)
    twice = mirror_batch(mirror_batch(b, flip, maps), flip, maps)
    for k in b:
        torch.testing.assert_close(twice[k], b[k], msg=k)


def test_mirror_batch_refuses_unknown_fields_and_off_centre_grids() -> None:
    b = _batch()
    with pytest.raises(ValueError, match="do not know how to mirror"):
        mirror_batch({**b, "depth": torch.zeros(8, 5, 3)}, torch.ones(8, dtype=torch.bool), _maps())  # points mirror now
    with pytest.raises(ConfigError, match="centred on x = 0"):
        mirror_batch(b, torch.ones(8, dtype=torch.bool), _maps(), grid_center_x=5.0)


def test_block_flips_are_whole_blocks_and_deterministic() -> None:
    f = block_flips(64, 0.5, torch.Generator().manual_seed(3))
    assert f.shape == (64,) and f.dtype == torch.bool
    assert (f.view(16, 4) == f.view(16, 4)[:, :1]).all()  # one decision per block of 4
    assert 0 < int(f.sum()) < 64
    assert torch.equal(f, block_flips(64, 0.5, torch.Generator().manual_seed(3)))
    assert not block_flips(64, 0.0, torch.Generator().manual_seed(3)).any()
    assert block_flips(64, 1.0, torch.Generator().manual_seed(3)).all()


@needs_ict
def test_mirrored_labels_describe_the_mirrored_face() -> None:
    """On ICT-FaceKit: the flipped occupancy grid is the occupancy of the mirrored labels' face,
    the mirrored landmarks are that face's, and the mirrored pose projects them as the original
    pose projects the original's."""
    from voxface.data.ict import load_ict
    from voxface.data.synthetic import FaceSampler

    ict = load_ict(REAL_ICT)
    maps = mirror_maps(ict)
    # the identity modes span their own mirror images almost exactly
    assert np.median(maps.identity_residual) < 0.01 and (maps.identity_residual > 0.05).sum() <= 2
    assert (maps.expression[maps.expression] == np.arange(53)).all()
    assert (maps.landmarks[maps.landmarks] == np.arange(68)).all()
    fs = FaceSampler(ict, seed=5)
    grid = Grid.from_config(FrameConfig(), 64)
    keys = ("image", "occ", "id_coeffs", "exp_coeffs", "rotation", "scale", "translation", "euler",
            "landmarks_2d", "landmarks_3d")
    for index in (0, 5, 9):
        s = fs.sample(index, 64, swap=False)
        b = {k: torch.as_tensor(np.asarray(s[k]))[None] for k in keys}
        m = mirror_batch(b, torch.tensor([True]), maps)
        a2, e2 = m["id_coeffs"][0].numpy(), m["exp_coeffs"][0].numpy()
        person = fs.head.person(a2)
        occ = fs.occupancy(person.closed_head(e2), grid).astype(bool)
        flipped = m["occ"][0].numpy().astype(bool)
        assert (occ & flipped).sum() / (occ | flipped).sum() > 0.995
        lm3 = person.full_vertices(e2)[ict.landmarks]
        assert np.abs(lm3 - m["landmarks_3d"][0].numpy()).max() < 0.5  # mm
        errs = []
        for d in (b, m):  # weak-perspective projection of the landmarks (its own error ~1-2 px)
            R, sc, t = d["rotation"][0].numpy(), float(d["scale"][0]), d["translation"][0].numpy()
            px = (sc * (d["landmarks_3d"][0].numpy() @ R.T)[:, :2] / HEAD_RMS_RADIUS_MM + t + 1) / 2 * 128
            errs.append(np.abs(px - d["landmarks_2d"][0].numpy()).mean())
        assert errs[1] == pytest.approx(errs[0], abs=0.05)


def test_mirror_batch_takes_any_boolean_mask_and_refuses_one_of_another_length() -> None:
    """A NumPy or list mask was an AttributeError ('no attribute to' / 'any'), an integer mask a
    RuntimeError from torch.where, and a mask of 4 for a batch of 8 torch's broadcast error."""
    from voxface.errors import InputError

    b, maps = _batch(), _maps()
    want = mirror_batch(b, torch.tensor([True, False] * 4), maps)
    for flip in (np.array([True, False] * 4), [True, False] * 4, torch.tensor([1, 0] * 4), torch.tensor([[1, 0] * 4])):
        got = mirror_batch(b, flip, maps)
        for k in b:
            assert torch.equal(got[k], want[k]), (type(flip), k)
    for flip in (torch.ones(4, dtype=torch.bool), torch.rand(8)):
        with pytest.raises(InputError, match=r"^mirror_batch: flip must be \(8,\) booleans, one per sample"):
            mirror_batch(b, flip, maps)


def test_mirror_batch_mirrors_a_folders_surface_samples() -> None:
    """A folder with ``data.points`` gives items ``points``/``normals`` (canonical mm surface
    samples); train.mirror on it was 'ValueError: mirror_batch: do not know how to mirror
    ['normals', 'points']' at the first step, a traceback. They are mirrored: x negated."""
    b, maps = _batch(), _maps()
    g = torch.Generator().manual_seed(1)
    b["points"] = torch.randn(8, 5, 3, generator=g) * 80
    b["normals"] = torch.nn.functional.normalize(torch.randn(8, 5, 3, generator=g), dim=-1)
    flip = torch.tensor([True] * 4 + [False] * 4)
    m = mirror_batch(b, flip, maps)
    for k in ("points", "normals"):
        assert torch.equal(m[k][:4, :, 0], -b[k][:4, :, 0]) and torch.equal(m[k][:4, :, 1:], b[k][:4, :, 1:])
        assert torch.equal(m[k][4:], b[k][4:])
        assert torch.equal(mirror_batch(m, flip, maps)[k], b[k])  # a reflection: twice is none


@needs_ict
def test_mirrored_surface_samples_lie_on_the_mirrored_face() -> None:
    """On ICT-FaceKit: the mirrored points lie on the surface of the mirrored labels' face, and
    the mirrored normals are that surface's (outward) normals there."""
    import trimesh

    from voxface.data.ict import load_ict
    from voxface.data.synthetic import FaceSampler
    from voxface.metrics import closest_points

    ict = load_ict(REAL_ICT)
    maps = mirror_maps(ict)
    fs = FaceSampler(ict, seed=2)
    s = fs.sample(3, None, n_points=256)
    b = {k: torch.as_tensor(np.asarray(s[k]))[None] for k in ("id_coeffs", "exp_coeffs", "points", "normals")}
    m = mirror_batch(b, torch.tensor([True]), maps)
    person = fs.head.person(m["id_coeffs"][0].numpy())
    mesh = trimesh.Trimesh(person.closed_head(m["exp_coeffs"][0].numpy()), fs.head.faces, process=False)
    d, face = closest_points(mesh, m["points"][0].numpy())
    assert np.median(d) < 0.1 and d.max() < 1.0  # mm (the identity mirror is a least-squares fit)
    cos = (mesh.face_normals[face] * m["normals"][0].numpy()).sum(1)
    assert np.median(cos) > 0.99

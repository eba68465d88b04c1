"""Toy dataset: item layout, purity in (seed, index), block rule, analytic occupancy, pose."""

from __future__ import annotations


import numpy as np
import pytest

from voxface.config import model_config
from voxface.data import BlockSampler, build_dataset
from voxface.data.toy import (
    N_EXP,
    N_ID,
    ToyDataset,
    sample_expression,
    sample_identity,
    toy_field,
    toy_occupancy,
)
from voxface.errors import ConfigError
from voxface.frame import HEAD_RMS_RADIUS_MM, Grid

MODEL = {
    "encoder": {"image_size": 64},
    "decoder": {"resolution": 32, "widths": [64, 32, 16]},
    "frame": {"side_mm": 300.0, "center_mm": [0.0, -10.0, 20.0]},
}
DATA = {"kind": "toy", "num_train": 64, "num_val": 16, "seed": 3}


@pytest.fixture(scope="module")
def ds() -> ToyDataset:
    return ToyDataset.from_config(DATA, "train", MODEL)


@pytest.fixture(scope="module")
def grid() -> Grid:
    m = model_config(MODEL)
    return Grid.from_config(m.frame, m.decoder.resolution)


def test_item_layout(ds: ToyDataset) -> None:
    it = ds[5]
    expect = {
        "image": ((3, 64, 64), np.float32), "mask": ((64, 64), np.uint8),
        "occ": ((32, 32, 32), np.uint8), "occ_swap": ((32, 32, 32), np.uint8),
        "id_coeffs": ((N_ID,), np.float32), "exp_coeffs": ((N_EXP,), np.float32),
        "rotation": ((3, 3), np.float32), "scale": ((), np.float32),
        "translation": ((2,), np.float32), "identity": ((), np.int64), "index": ((), np.int64),
    }
    assert set(it) == set(expect)
    for k, (shape, dtype) in expect.items():
        a = np.asarray(it[k])
        assert a.shape == shape and a.dtype == dtype, k
    assert 0.0 <= it["image"].min() and it["image"].max() <= 1.0
    assert set(np.unique(it["occ"])) <= {0, 1} and 0 < it["occ"].mean() < 0.5
    r = it["rotation"].astype(np.float64)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)
    assert int(it["index"]) == 5 and int(it["identity"]) == 2
    assert 0.05 < it["mask"].mean() < 0.9


def test_pure_function_of_seed_and_index(ds: ToyDataset) -> None:
    other = ToyDataset.from_config({**DATA, "cache": True}, "train", MODEL)
    for i in (0, 7, 63):
        a, b, c = ds[i], other[i], other[i]  # c: from the cache
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            np.testing.assert_array_equal(a[k], c[k], err_msg=k)
    reseeded = ToyDataset.from_config({**DATA, "seed": 4}, "train", MODEL)
    assert not np.array_equal(ds[0]["image"], reseeded[0]["image"])
    val = ToyDataset.from_config(DATA, "val", MODEL)
    assert len(val) == 16 and not np.array_equal(val[0]["id_coeffs"], ds[0]["id_coeffs"])


def test_block_rule(ds: ToyDataset, grid: Grid) -> None:
    for i in range(8):
        a, p = ds[i], ds[i ^ 1]
        assert int(a["identity"]) == int(p["identity"])
        np.testing.assert_array_equal(a["id_coeffs"], p["id_coeffs"])
        assert not np.array_equal(a["exp_coeffs"], p["exp_coeffs"])
        assert int(a["identity"]) != int(ds[i ^ 2]["identity"])
        swap = toy_occupancy(grid, a["id_coeffs"], ds[i ^ 2]["exp_coeffs"])
        np.testing.assert_array_equal(a["occ_swap"], swap)
        np.testing.assert_array_equal(a["occ"], toy_occupancy(grid, a["id_coeffs"], a["exp_coeffs"]))
    # a BlockSampler batch of whole blocks keeps the pairing inside the batch
    idx = list(BlockSampler(len(ds), seed=0))[:8]
    for j in range(8):
        assert idx[j] ^ 1 == idx[j ^ 1] and idx[j] ^ 2 == idx[j ^ 2]


def test_occupancy_matches_the_field_exactly(grid: Grid) -> None:
    centers = grid.cell_centers()
    for person in range(6):
        idc = sample_identity(0, person)
        for e in (sample_expression(0, person), np.array([1.0, 1.0, 1.0]), np.array([1.0, -1.0, -1.0])):
            occ = toy_occupancy(grid, idc, e)
            ref = (toy_field(centers, idc, e) < 0).astype(np.uint8)
            np.testing.assert_array_equal(occ, ref)
            # heads stay clear of the cube's faces (the toy frame holds them)
            assert not occ[[0, -1]].any() and not occ[:, [0, -1]].any() and not occ[:, :, [0, -1]].any()


def test_identity_and_expression_change_the_shape(grid: Grid) -> None:
    idc = np.zeros(N_ID, np.float32)
    neutral = toy_occupancy(grid, idc, np.zeros(N_EXP))
    jaw = toy_occupancy(grid, idc, np.array([1.0, 0, 0]))
    assert jaw.sum() > neutral.sum() * 1.05
    assert (jaw.astype(bool) | neutral.astype(bool)).sum() > neutral.sum()
    wide = toy_occupancy(grid, np.array([2.0, 0, 0, 0], np.float32), np.zeros(N_EXP))
    xs = lambda o: np.flatnonzero(o.any((0, 1)))  # noqa: E731  (W = x extent)
    assert len(xs(wide)) > len(xs(neutral))


def test_pose_fields_match_the_image(ds: ToyDataset) -> None:
    """Points inside the head, projected with (rotation, scale, translation), cover the mask."""
    rng = np.random.default_rng(0)
    for i in range(6):
        it = ds[i]
        pts = rng.uniform([-130, -160, -110], [130, 140, 160], size=(200_000, 3))
        pts = pts[toy_field(pts, it["id_coeffs"], it["exp_coeffs"]) < 0]
        cam = pts @ it["rotation"].T.astype(np.float64)
        uv = float(it["scale"]) * cam[:, :2] / HEAD_RMS_RADIUS_MM + it["translation"]
        px = np.clip(np.floor((uv + 1) / 2 * 64).astype(int), 0, 63)
        hit = it["mask"][px[:, 1], px[:, 0]]
        assert hit.mean() > 0.98, (i, hit.mean())  # points land on the silhouette...
        covered = np.zeros((64, 64), bool)
        covered[px[:, 1], px[:, 0]] = True
        mask = it["mask"] > 0
        assert (covered & mask).sum() > 0.98 * mask.sum()  # ...and cover it
        assert (covered & ~mask).sum() < 0.1 * mask.sum()


def test_euler_convention() -> None:
    """Yaw 90 turns +z (out of the face) to +x, pitch 90 turns +y (up) to +z, roll 90 turns +x to +y,
    and roll applies first; rotations are proper; the torch twin is the same matrix."""
    from voxface.frame import euler_matrix
    from voxface.rotation import euler_to_matrix

    np.testing.assert_allclose(euler_matrix(90, 0, 0) @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(euler_matrix(0, 90, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(euler_matrix(0, 0, 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(euler_matrix(90, 0, 90) @ [1, 0, 0], euler_matrix(90, 0, 0) @ [0, 1, 0], atol=1e-12)
    for angles in [(30, -10, 5), (-45, 20, -10), (0, 0, 90)]:
        r = euler_matrix(*angles)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) > 0
        np.testing.assert_allclose(euler_to_matrix(*angles).numpy(), r, atol=1e-7)


def test_euler_angles_invert_euler_matrix_in_both_frames() -> None:
    """euler_angles undoes euler_matrix over the training range and beyond, for the canonical
    rotation and for the camera-frame pose (FRONTAL_ROTATION @ R) the encoder predicts; the
    demo's yaw (it read R[0,2] over R[0,0], off by up to 6 degrees with pitch and roll) comes from it."""
    from voxface.frame import FRONTAL_ROTATION, euler_angles, euler_matrix

    rng = np.random.default_rng(0)
    for yaw, pitch, roll in [(40, 20, 15), (-60, -25, 15), (0, 0, 0), (170, 80, -60)] + [
            tuple(rng.uniform([-60, -25, -15], [60, 25, 15])) for _ in range(50)]:
        r = euler_matrix(yaw, pitch, roll)
        for m in (r, FRONTAL_ROTATION @ r):
            np.testing.assert_allclose(euler_angles(m), (yaw, pitch, roll), atol=1e-9)


def test_build_dataset_dispatch_and_errors() -> None:
    assert isinstance(build_dataset(DATA, "train", MODEL), ToyDataset)
    with pytest.raises(ConfigError):
        ToyDataset.from_config({**DATA, "num_train": 10}, "train", MODEL)
    with pytest.raises(ConfigError):
        ToyDataset.from_config({**DATA, "bogus": 1}, "train", MODEL)
    with pytest.raises(ConfigError):
        ToyDataset.from_config(DATA, "test", MODEL)
    with pytest.raises(IndexError):
        ToyDataset.from_config(DATA, "train", MODEL)[64]


@pytest.mark.parametrize("seed", [-1, 2**32, 2**32 + 3])
def test_a_seed_outside_32_bits_is_refused_not_aliased(seed) -> None:
    """Samples are keyed by the seed modulo 2**32: seed 2**32 + 3 silently drew seed 3's data, -1
    seed 2**32 - 1's. Refused in one line naming the value, for toy and ICT data alike."""
    from voxface.data import check_seed
    from voxface.data.synthetic import FaceSampler, SyntheticDataset
    from voxface.errors import ConfigError

    for make in (lambda: ToyDataset.from_config({**DATA, "seed": seed}, "train", MODEL),
                 lambda: SyntheticDataset(8, seed, 32), lambda: FaceSampler(None, None, seed)):
        with pytest.raises(ConfigError, match=f"seed {seed!r} must be a whole number from 0 to 4294967295"):
            make()
    assert check_seed(2**32 - 1) == 2**32 - 1 and check_seed(np.int64(7)) == 7
    for not_whole in (1.5, True, "3"):
        with pytest.raises(ConfigError, match="must be a whole number"):
            check_seed(not_whole)


def test_toy_section_names_its_keys_and_refuses_a_scale_of_no_head() -> None:
    """A toy validation seed past 2**32 - 1 was called 'data seed 4295967296', a number nobody
    typed (synthetic data names the sum's parts); data.scale 0 rendered empty masks with a
    divide-by-zero warning, a negative scale heads turned over, without a word."""
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.seed 4294967293 \+ data.val_seed_offset 1000003 \(the validation "
                                          r"seed\) = 4295967296 must be a whole number"):
        ToyDataset.from_config({**DATA, "seed": 2**32 - 3}, "val", MODEL)
    with pytest.raises(ConfigError, match=r"^data.seed -1 must be a whole number"):
        ToyDataset.from_config({**DATA, "seed": -1}, "train", MODEL)
    for scale in (0.0, -0.5):
        with pytest.raises(ConfigError, match=rf"^data.scale {scale} must be above 0"):
            ToyDataset.from_config({**DATA, "scale": scale}, "train", MODEL)
    val = ToyDataset.from_config({**DATA, "val_seed_offset": 10}, "val", MODEL)
    assert val.seed == 13 and val[0]["mask"].any()


@pytest.mark.parametrize("key, value, words", [
    ("max_yaw", -10.0, "must be an angle in degrees from 0 to 180"),  # was numpy's 'high - low < 0' at item 0
    ("max_pitch", float("nan"), "must be an angle in degrees from 0 to 180"),  # was an OverflowError
    ("max_roll", 200.0, "must be an angle in degrees from 0 to 180"),
    ("shift_jitter", -0.1, "must be from 0 to 1"),  # was numpy's 'high - low < 0'
    ("shift_jitter", 2.0, "must be from 0 to 1"),  # was crops with no head in them
    ("scale_jitter", float("nan"), "must be a finite number, 0 or more"),  # was empty masks
    ("noise", -0.01, "must be a finite number, 0 or more"),  # was no noise at all
    ("noise", float("nan"), "must be a finite number, 0 or more"),
    ("scale", float("inf"), "must be above 0 and finite"),  # was a crop all face
])
def test_toy_ranges_that_draw_no_head_are_config_errors(key, value, words) -> None:
    """A negative angle or shift failed in numpy's 'high - low < 0' at the first item (in a loader
    worker), a NaN angle in an OverflowError; a NaN scale jitter or a shift of two half-widths gave
    crops without the head, a negative or NaN noise no noise, each without a word."""
    with pytest.raises(ConfigError, match=rf"^data\.{key} {value} {words}"):
        ToyDataset.from_config({**DATA, key: value}, "train", MODEL)
    limits = {"max_yaw": 0.0, "max_pitch": 180.0, "max_roll": 0.0, "shift_jitter": 1.0, "scale_jitter": 0.0,
              "noise": 0.0}
    ds = ToyDataset.from_config({**DATA, **limits}, "train", MODEL)  # the limits are settings that work
    assert ds[0]["mask"].any() and np.isfinite(ds[0]["image"]).all()


def test_a_validation_seed_offset_of_zero_is_refused() -> None:
    """data.val_seed_offset 0 made the validation split the training split's first items (toy and
    synthetic data alike), validated as unseen faces without a word: a ConfigError."""
    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.val_seed_offset 0 makes the validation split the training"):
        ToyDataset.from_config({**DATA, "val_seed_offset": 0}, "val", MODEL)
    with pytest.raises(ConfigError, match=r"^data.val_seed_offset 0 makes the validation split the training"):
        build_dataset({"kind": "synthetic", "val_seed_offset": 0}, "val", model_config("configs/tiny.yaml"))
    assert len(ToyDataset.from_config({**DATA, "val_seed_offset": 0}, "train", MODEL)) == 64  # train: unused


def test_an_odd_resolution_grid_reads_back_whole() -> None:
    """A grid of odd R (a conv3d decoder of resolution 33: base 11, shuffle 3) has R^3 cells, no
    multiple of 8: its packed occupancy ends in a padded byte, and every item was a 'cannot reshape
    array of size 35944 into shape (33,33,33)' ValueError. Items now hold the exact grid."""
    from voxface.config import FrameConfig
    from voxface.data.toy import ToyDataConfig

    odd = Grid.from_config(FrameConfig(), 33)
    ds = ToyDataset(4, 0, odd, 32, ToyDataConfig(cache=True))
    for _ in range(2):  # made, then read from the memo
        item = ds[1]
        id_c, exp_c = ds.coeffs(1)
        np.testing.assert_array_equal(item["occ"], toy_occupancy(odd, id_c, exp_c))
        assert item["occ"].shape == (33, 33, 33) and item["occ"].any()

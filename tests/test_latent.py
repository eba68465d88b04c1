"""voxface.latent (interpolate, transfer, sample, directions, walk), its CLI and viz helpers.

The behavioural tests use a toy model trained here (configs/toy.yaml, shortened: see
:func:`trained_toy_checkpoint`), so codes mean something: two toy heads of different people
interpolate, expression directions move the jaw and so on. The checkpoint is trained once per
session (about a minute on two free cores) and shared with tests/test_notebooks.py and
tests/test_browser.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Training steps of the shared toy model (batch 16; about 50 s on one free core). Measured on
#: this config: at 80-100 steps the decoder still draws the mean head whatever the code (two
#: faces' meshes differ by 1 - IoU < 0.005), by 150 steps the codes carry the shape (pairs of
#: toy faces differ by 0.01-0.15, a 3-sigma walk along the top identity direction by 0.15).
TOY_STEPS = 150


def toy_config() -> dict:
    """configs/toy.yaml shortened for tests and for the notebooks' fast mode (same settings as
    the notebooks use with VOXFACE_NOTEBOOK_FAST=1)."""
    from voxface import load_yaml

    cfg = load_yaml(REPO_ROOT / "configs" / "toy.yaml")
    cfg["data"].update(num_train=512, num_val=32)
    cfg["train"].update(batch_size=16, warmup_steps=20, num_val=32, val_every=0, ckpt_every=0, prior_samples=128)
    return cfg


def trained_toy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best.pth.tar`` of a toy model trained for :data:`TOY_STEPS` steps, once per session."""
    from voxface.train import train

    run = tmp_path_factory.getbasetemp() / "voxface-toy-model"
    ckpt = run / "best.pth.tar"
    if not ckpt.exists():
        train(toy_config(), run, steps=TOY_STEPS, progress=False)
    return ckpt


@pytest.fixture(scope="session")
def toy_ckpt(tmp_path_factory) -> Path:
    return trained_toy_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def model(toy_ckpt):
    from voxface import load_model

    return load_model(toy_ckpt, device="cpu")


@pytest.fixture(scope="module")
def val_items(model):
    """Toy validation items (unseen during training): 0/1 one person, 2/3 another, ..."""
    from voxface.data import build_dataset

    ds = build_dataset(toy_config()["data"], "val", model.config)
    return [ds[i] for i in range(16)]


def encode(model, items):
    from voxface.models import Latents

    with torch.inference_mode():
        lat = model.encode(torch.from_numpy(np.stack([it["image"] for it in items])))
    return Latents(lat.z_id.clone(), lat.z_exp.clone())


def two_people(model, items) -> tuple[int, int]:
    """Item 0 and the item of another person whose expression code differs most from its own
    (distance in prior standard deviations): a pair whose morph visibly changes the shape."""
    lat = encode(model, items)
    dist = ((lat.z_exp - lat.z_exp[0]) / model.prior["z_exp_std"]).norm(dim=1)
    others = [j for j in range(len(items)) if items[j]["identity"] != items[0]["identity"]]
    return 0, max(others, key=lambda j: float(dist[j]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


# ------------------------------------------------------------------------------ interpolation

#: Smoothness constant: no hop of an interpolation may exceed C times the even share of the
#: total change. The Jaccard distance d = 1 - IoU is a metric, so the hops' distances add up to
#: at least d(first, last); a morph spreading the change evenly makes each hop about
#: d(first, last) / (steps - 1). Slerp moves the code at a nearly constant speed, but a 32^3
#: grid changes in whole voxels and the decoder is not linear, so hops vary: C = 3 allows a hop
#: three times the even share, while a jump (one hop carrying most of the change, as with a
#: broken interpolation that switches codes halfway) gives (steps - 1) = 7 times it.
SMOOTH_C = 3.0


@pytest.mark.parametrize("space", ["both", "identity", "expression"])
def test_interpolation_is_watertight_single_component_and_smooth(model, val_items, space):
    from voxface import extract_mesh
    from voxface.latent import decode, interpolate

    i, j = two_people(model, val_items)
    faces = encode(model, [val_items[i], val_items[j]])
    steps = 8
    recs = decode(model, interpolate(model, faces[0], faces[1], steps, space=space))
    assert len(recs) == steps
    for r in recs:
        assert r.mesh.is_watertight and r.mesh.is_winding_consistent and r.mesh.volume > 0
        # one component as marching cubes made it (nothing dropped by keep_largest)
        assert extract_mesh(r.logits, model.grid).n_components == 1
    total = 1 - iou(recs[0].logits, recs[-1].logits)
    assert total > 0.005, f"the two ends are almost the same shape ({space}): 1 - IoU = {total:.4f}"
    bound = 1 - total * SMOOTH_C / (steps - 1)
    hops = [iou(recs[k].logits, recs[k + 1].logits) for k in range(steps - 1)]
    assert min(hops) >= bound, f"{space}: hop IoUs {np.round(hops, 3)} below {bound:.3f}"
    # the ends are the two faces themselves (up to float noise between batch sizes)
    ends = decode(model, faces)
    np.testing.assert_allclose(recs[0].logits, ends[0].logits, atol=1e-3)
    if space == "both":
        np.testing.assert_allclose(recs[-1].logits, ends[1].logits, atol=1e-3)


def test_interpolate_codes_modes_and_spaces(model):
    from voxface.latent import interpolate, sample

    ab = sample(model, 2, seed=5)
    a, b = ab[0], ab[1]
    lerp = interpolate(model, a, b, 5, mode="lerp")
    slerp = interpolate(model, a, b, 5)
    for path in (lerp, slerp):
        assert path.z_id.shape == (5, 16) and path.z_exp.shape == (5, 8) and path.pose is None
        assert torch.equal(path.z_id[0], a.z_id[0]) and torch.equal(path.z_exp[-1], b.z_exp[0])
    assert torch.allclose(lerp.z_id[2], (a.z_id[0] + b.z_id[0]) / 2, atol=1e-6)
    # slerp: the distance from the prior mean changes linearly (lerp's dips in between)
    mean = model.prior["z_id_mean"]
    na, nb = (a.z_id[0] - mean).norm(), (b.z_id[0] - mean).norm()
    assert torch.allclose((slerp.z_id - mean).norm(dim=1), torch.linspace(0, 1, 5) * (nb - na) + na, atol=1e-4)
    assert (lerp.z_id[2] - mean).norm() < (slerp.z_id[2] - mean).norm()
    # one space moves, the other stays a's
    ident = interpolate(model, a, b, 4, space="identity")
    assert torch.equal(ident.z_exp, a.z_exp.expand(4, -1)) and not torch.equal(ident.z_id[-1], a.z_id[0])
    expr = interpolate(model, a, b, 4, space="expression")
    assert torch.equal(expr.z_id, a.z_id.expand(4, -1)) and torch.equal(expr.z_exp[-1], b.z_exp[0])
    with pytest.raises(ValueError):
        interpolate(model, a, b, 1)
    with pytest.raises(ValueError):
        interpolate(model, a, b, 4, mode="cubic")
    with pytest.raises(ValueError):
        interpolate(model, a, b, 4, space="pose")


def test_slerp_between_opposite_codes_keeps_its_distance_from_the_mean(model):
    """a - mean = -(b - mean): no great circle is singled out and a lerp passes through the mean;
    the path turns through a perpendicular direction instead, at a constant distance, in equal
    angles, ending exactly on b."""
    from voxface.latent import _slerp, interpolate

    mean_id, mean_exp = model.prior["z_id_mean"], model.prior["z_exp_mean"]
    d_id, d_exp = torch.linspace(-1, 2, 16), torch.linspace(3, -1, 8)
    a = {"z_id": (mean_id + d_id)[None], "z_exp": (mean_exp + d_exp)[None]}
    b = {"z_id": (mean_id - d_id)[None], "z_exp": (mean_exp - d_exp)[None]}
    path = interpolate(model, a, b, 5)
    # the expression (blendshape weights) moves on the straight line in both modes, through the mean here
    assert torch.allclose(path.z_exp - mean_exp, (1 - 2 * torch.linspace(0, 1, 5))[:, None] * d_exp, atol=1e-5)
    for z, mean, d in ((path.z_id, mean_id, d_id),):
        off = z - mean
        assert torch.allclose(off.norm(dim=1), d.norm().expand(5), rtol=1e-5)
        assert torch.allclose(off[0], d, atol=1e-5) and torch.allclose(off[-1], -d, atol=1e-5)
        u = off / off.norm(dim=1, keepdim=True)
        hops = torch.rad2deg(torch.acos((u[1:] * u[:-1]).sum(1).clamp(-1, 1)))
        assert torch.allclose(hops, torch.full((4,), 45.0), atol=0.05)
    # nearly opposite (within the fall-back's tolerance): the same turn, and still b at the end
    x = torch.tensor([[1.0, 2.0, -1.0]]).expand(3, -1)
    y = -x + torch.tensor([[0.0, 0.0, 1e-5]])
    z = _slerp(x, y, torch.linspace(0, 1, 3))
    assert torch.allclose(z.norm(dim=1), x.norm(dim=1), rtol=1e-5)
    assert torch.allclose(z[-1], y[0], atol=1e-6) and torch.allclose(z[0], x[0])


def test_expression_moves_linearly_in_both_modes(model):
    """z_exp holds blendshape weights: a turn around the prior mean would move weights that are 0 at
    both ends (and below 0); the straight line keeps each weight between its two ends, and t is the
    share of the way."""
    from voxface.latent import interpolate

    z_id = model.prior["z_id_mean"][None]
    a = {"z_id": z_id, "z_exp": torch.zeros(1, 8)}
    one = torch.zeros(1, 8)
    one[0, 3] = 1.0
    b = {"z_id": z_id, "z_exp": one}
    for mode in ("slerp", "lerp"):
        path = interpolate(model, a, b, 5, mode=mode, space="expression")
        assert torch.allclose(path.z_exp, torch.linspace(0, 1, 5)[:, None] * one, atol=1e-6), mode


def test_slerp_blends_into_the_line_when_one_end_is_near_the_centre():
    """An end a hair from the centre has no meaningful direction: the path is (nearly) the straight
    line, not a detour of the far end's length; the blend is continuous in the ends and leaves
    ends at comparable distances on the sphere path."""
    from voxface.latent import SLERP_NEAR_RATIO, _slerp

    g = torch.Generator().manual_seed(0)
    b = torch.randn(1, 100, generator=g) * 0.37
    u = torch.randn(1, 100, generator=g)
    u = u / u.norm()
    t = torch.linspace(0, 1, 5)
    off = []
    for eps in (0.0, 1e-6, 1e-3, 1e-1, SLERP_NEAR_RATIO * b.norm().item()):
        a = u * eps
        z = _slerp(a.expand(5, -1), b.expand(5, -1), t)
        assert torch.allclose(z[0], a[0], atol=1e-5) and torch.allclose(z[-1], b[0], atol=1e-5)
        off.append((z[2] - (a[0] + b[0]) / 2).norm().item())
    assert off[0] < 1e-6 and off[1] < 1e-5 and off[2] < 1e-2 * b.norm().item(), off  # the line (it was 1.4 sd off)
    assert off == sorted(off)  # growing with the near end's distance: continuous, no jump
    # from the ratio up: the sphere path (norm linear in t)
    a = u * SLERP_NEAR_RATIO * b.norm()
    z = _slerp(a.expand(5, -1), b.expand(5, -1), t)
    assert torch.allclose(z.norm(dim=1), a.norm() + t * (b.norm() - a.norm()), rtol=1e-4)


def test_latents_index_like_a_sequence():
    """Face i as a batch of one: negative indices from the end, numpy and torch integers too; out of
    range an IndexError (so iteration stops); slices and index arrays keep the batch dimension."""
    from voxface.models import Latents

    lat = Latents(torch.arange(12.0).reshape(4, 3), torch.arange(8.0).reshape(4, 2))
    assert torch.equal(lat[-1].z_id, lat.z_id[3:4]) and torch.equal(lat[-4].z_exp, lat.z_exp[0:1])
    assert torch.equal(lat[np.int64(1)].z_id, lat.z_id[1:2]) and torch.equal(lat[torch.tensor(2)].z_id, lat.z_id[2:3])
    assert lat[np.array([3, 0])].z_id.shape == (2, 3) and lat[1:3].z_id.shape == (2, 3)
    for bad in (4, -5):
        with pytest.raises(IndexError):
            lat[bad]
    for flag in (True, np.bool_(True), torch.tensor(False)):  # a lone bool is no face number
        with pytest.raises(TypeError, match="not a single bool"):
            lat[flag]
    assert lat[np.array([True, False, True, False])].z_id.shape == (2, 3)  # a mask is fine
    assert [float(x.z_id[0, 0]) for x in lat] == [0.0, 3.0, 6.0, 9.0]


def test_faces_as_photos_npz_dicts_and_raw_codes(model, val_items, tmp_path):
    from voxface import VoxfaceError
    from voxface.latent import as_latents, interpolate, save_latents
    from voxface.reconstruct import decode_latents
    from voxface.viz import save_png

    lat = encode(model, val_items[:2])
    # a .npz written by `reconstruct` (Reconstruction.save: codes and pose by default, + logits with --save-volume)
    rec = decode_latents(model, lat[0])[0]
    for name, options, logits in (("a", {"latents": True}, False), ("v", {"save_volume": True}, True)):
        files = rec.save(tmp_path / f"{name}.ply", **options)
        assert [f.name for f in files] == [f"{name}.ply", f"{name}.npz"]
        with np.load(files[1]) as z:
            assert ("logits" in z.files) == logits and {"z_id", "z_exp", "grid_side_mm"} <= set(z.files)
        assert torch.allclose(as_latents(model, files[1]).z_id, lat.z_id[:1])
    assert rec.save(tmp_path / "m.ply") == [tmp_path / "m.ply"] and not (tmp_path / "m.npz").exists()
    # one written by save_latents, a dict, raw codes (whole, or one part + the prior mean)
    p = save_latents(lat, tmp_path / "b.npz")
    assert torch.allclose(as_latents(model, p).z_exp, lat.z_exp)
    assert torch.allclose(as_latents(model, dict(np.load(p))).z_id, lat.z_id)
    raw = torch.cat([lat.z_id, lat.z_exp], 1)
    assert torch.equal(as_latents(model, raw).z_exp, lat.z_exp)
    assert torch.equal(as_latents(model, raw[1].numpy()).z_id, lat.z_id[1:])
    only_exp = as_latents(model, lat.z_exp[0])
    assert torch.equal(only_exp.z_exp, lat.z_exp[:1]) and torch.equal(only_exp.z_id[0], model.prior["z_id_mean"])
    # a photo (here an already framed crop): encoded, not decoded
    img = (val_items[0]["image"].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    photo = save_png(img, tmp_path / "face.png")
    from_photo = as_latents(model, photo, detect=False)
    assert torch.allclose(from_photo.z_id, lat.z_id[:1], atol=1e-3) and from_photo.pose is not None
    # the codes of a photo are ordinary tensors: set by hand, or the start of a latent optimisation
    from_photo.z_exp[0, 0] = 0.5
    assert torch.nn.Parameter(from_photo.z_id).requires_grad
    rec = model.reconstruct(photo, detect=False)
    rec.latents.z_id[0, 0] += 1
    path = interpolate(model, photo, tmp_path / "a.npz", 3, detect=False)
    assert torch.allclose(path.z_exp[-1], lat.z_exp[0])
    with pytest.raises(VoxfaceError, match="does not fit"):
        as_latents(model, torch.zeros(5))
    with pytest.raises(VoxfaceError, match="no such latent file"):
        as_latents(model, tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(VoxfaceError, match="not a voxface latent file") as err:
        as_latents(model, tmp_path / "bad.npz")
    # numpy's guess ("pickled data ... load it unsafely") is not passed on
    assert "neither a .npz archive nor a .npy array" in str(err.value) and "pickle" not in str(err.value)
    with open(tmp_path / "obj.npz", "wb") as f:  # a real .npy of Python objects
        np.save(f, np.array([{"z_id": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(VoxfaceError, match=r"a \.npy array of Python objects \(pickled\), which voxface never loads"):
        as_latents(model, tmp_path / "obj.npz")


def test_raw_codes_are_told_from_photos_by_shape_and_dtype_not_batch_size(model):
    from voxface import ImageError
    from voxface.latent import _is_raw_code, as_latents

    d_id, d_exp = 16, 8
    codes = np.random.default_rng(0).standard_normal((200, d_id + d_exp)).astype(np.float32)
    # a batch of codes larger than the code length is codes (it was taken for a 200x24 photo)
    lat = as_latents(model, codes)
    assert lat.z_id.shape == (200, d_id) and np.array_equal(lat.z_exp.numpy(), codes[:, d_id:])
    assert not np.shares_memory(lat.z_id.numpy(), codes)  # a copy: the caller's array is not aliased
    # int arrays and nested lists of numbers are codes too
    ints = np.arange(2 * 24).reshape(2, 24)
    assert torch.equal(as_latents(model, ints).z_id, torch.from_numpy(ints[:, :16]).float())
    assert torch.equal(as_latents(model, ints.tolist()).z_exp, torch.from_numpy(ints[:, 16:]).float())
    assert as_latents(model, [0.5] * 24).z_id.shape == (1, 16)
    assert as_latents(model, np.zeros((300, d_id))).z_exp.shape == (300, d_exp)  # one part, the prior mean
    # the rule itself: shape and dtype, never B < D
    assert _is_raw_code(np.zeros((200, 153), np.float32), 100, 53)  # the shipped model's lengths
    assert _is_raw_code(np.zeros((200, 153), np.int64), 100, 53)
    assert _is_raw_code([[0.0] * 153] * 3, 100, 53) and _is_raw_code(torch.zeros(5, 153), 100, 53)
    assert not _is_raw_code(np.zeros((200, 153), np.uint8), 100, 53)  # an image dtype: a grayscale photo
    assert not _is_raw_code(np.zeros((200, 150), np.float32), 100, 53)  # no code has 150 values
    assert not _is_raw_code(np.zeros((64, 64, 3), np.float32), 100, 53)  # H x W x C
    assert not _is_raw_code("face.png", 100, 53)
    # a 2-D uint8 array is encoded as a (grayscale) photo, not read as codes
    with pytest.raises(ImageError, match="<array>"):
        as_latents(model, np.zeros((0, 24), np.uint8), detect=False)


@pytest.mark.parametrize(
    "code, words",
    [
        ([[0.0] * 24, [0.0] * 23], "not a rectangular array of numbers"),
        (np.array(["a"] * 24), "must hold real numbers, not strings"),  # (a list of str: paths, of faces)
        ([None] * 24, "must hold real numbers, not Python objects"),
        (np.zeros(24, bool), "must hold real numbers, not booleans"),
        (torch.zeros(24, dtype=torch.bool), "must hold real numbers, not bool"),
        (np.zeros(24, complex), "not complex numbers"),
        (np.zeros((0, 24)), "at least one code"),
        (np.zeros((1, 1, 24), np.float32).tolist(), "must be (D,) or (B, D)"),
        (np.full(24, np.nan), "24 NaN or infinite value(s) of 24"),
        (torch.full((24,), float("inf")), "NaN or infinite"),
        (np.full(24, 1e39), "beyond +-1e+06 (largest magnitude 1e+39"),  # finite: beyond the bound, not infinite
        (np.full(24, 1e30, np.float32), "beyond +-1e+06"),
        (np.zeros(5), "does not fit"),
    ],
    ids=["ragged", "strings", "objects", "bool", "torch-bool", "complex", "no-rows", "3-d", "nan", "inf",
         "float32-overflow", "huge", "length"],
)
def test_bad_raw_codes_raise_one_line_voxface_errors(model, code, words):
    from voxface import VoxfaceError
    from voxface.latent import as_latents

    with pytest.raises(VoxfaceError) as info:
        as_latents(model, code)
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_latent_dicts_and_latents_are_checked_like_files(model):
    from voxface import VoxfaceError
    from voxface.latent import as_latents
    from voxface.models import Latents

    with pytest.raises(VoxfaceError, match=r"<dict>: 'z_id' holds 1 code\(s\) but 'z_exp' 2"):
        as_latents(model, {"z_id": np.zeros(16), "z_exp": np.zeros((2, 8))})
    with pytest.raises(VoxfaceError, match="<latents>: 'z_exp' holds 8 NaN"):
        as_latents(model, Latents(torch.zeros(1, 16), torch.full((1, 8), float("nan"))))
    with pytest.raises(VoxfaceError, match="<latents>: 'z_id' has codes of length 3"):
        as_latents(model, Latents(torch.zeros(1, 3), torch.zeros(1, 8)))


# ---------------------------------------------------------------------------------- transfer


def test_transfer_takes_identity_from_target_and_expression_from_source(model, val_items, monkeypatch):
    from voxface.latent import decode, transfer_expression

    lat = encode(model, val_items[:8])
    source, target = lat[2], lat[0]

    def no_encoding(*a, **k):  # codes in, codes out: nothing is re-encoded
        raise AssertionError("transfer_expression must not encode")

    monkeypatch.setattr(model, "encode", no_encoding)
    out = transfer_expression(model, source, target)
    assert (out.z_id - target.z_id).abs().max() == 0 and (out.z_exp - source.z_exp).abs().max() == 0
    # batches: pairwise, or one broadcast against many
    many = transfer_expression(model, lat[4:8], lat[0])
    assert torch.equal(many.z_id, lat.z_id[:1].expand(4, -1)) and torch.equal(many.z_exp, lat.z_exp[4:8])
    pair = transfer_expression(model, lat[:2], lat[2:4])
    assert torch.equal(pair.z_id, lat.z_id[2:4]) and torch.equal(pair.z_exp, lat.z_exp[:2])
    with pytest.raises(Exception, match="2 sources for 3 targets"):
        transfer_expression(model, lat[:2], lat[2:5])
    monkeypatch.undo()
    # the decoded transfer is the target's head with another expression: it differs from both
    r_src, r_tgt, r_out = decode(model, lat[2]), decode(model, target), decode(model, out)
    assert iou(r_out[0].logits, r_tgt[0].logits) < 1.0 and iou(r_out[0].logits, r_src[0].logits) < 1.0


# ---------------------------------------------------------------------------------- sampling


def test_sample_is_deterministic_and_respects_temperature(model):
    from voxface.latent import sample

    a, b = sample(model, 6, seed=3), sample(model, 6, seed=3)
    assert torch.equal(a.z_id, b.z_id) and torch.equal(a.z_exp, b.z_exp)
    assert not torch.equal(a.z_id, sample(model, 6, seed=4).z_id)
    # sample i depends on (seed, i) only; a latent's draws do not depend on the other being drawn
    assert torch.equal(sample(model, 2, seed=3).z_id, a.z_id[:2])
    assert torch.equal(sample(model, 6, seed=3, space="expression").z_exp, a.z_exp)
    for kind in ("pca", "gaussian"):
        z = sample(model, 3, temperature=0.0, seed=9, kind=kind)
        assert torch.equal(z.z_id, model.prior["z_id_mean"].expand(3, -1))
        assert torch.equal(z.z_exp, model.prior["z_exp_mean"].expand(3, -1))
        half, full = sample(model, 3, temperature=0.5, seed=9, kind=kind), sample(model, 3, seed=9, kind=kind)
        mean = model.prior["z_id_mean"]
        assert torch.allclose(half.z_id - mean, 0.5 * (full.z_id - mean), atol=1e-5)
    # the spread matches the prior's
    many = sample(model, 4000, seed=1, kind="gaussian")
    ratio = many.z_exp.std(0) / model.prior["z_exp_std"]
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio
    pca = sample(model, 4000, seed=1)
    total = pca.z_id.var(0).sum() / (model.prior["z_id_std"] ** 2).sum()
    assert 0.85 < float(total) < 1.15
    # one space at a time: the other latent is the mean, or base's
    ids = sample(model, 3, space="identity", seed=2)
    assert torch.equal(ids.z_exp, model.prior["z_exp_mean"].expand(3, -1))
    base = sample(model, 1, seed=77)
    exps = sample(model, 3, space="expression", seed=2, base=base)
    assert torch.equal(exps.z_id, base.z_id.expand(3, -1)) and not torch.equal(exps.z_exp[0], exps.z_exp[1])
    for bad in ({"temperature": -1.0}, {"seed": -1}, {"space": "pose"}, {"kind": "flow"}, {"base": base}):
        with pytest.raises(ValueError):  # a base with space="both" (nothing kept) too: never silently dropped
            sample(model, 2, **bad)


def test_sample_without_a_prior_warns_and_draws_standard_normals(tiny_model):
    from voxface.latent import sample

    with pytest.warns(UserWarning, match="no latent prior"):
        z = sample(tiny_model, 2000, seed=0, temperature=2.0)
    assert abs(float(z.z_id.std()) - 2.0) < 0.1 and abs(float(z.z_exp.mean())) < 0.1


def test_counts_must_be_integers_and_numbers_finite(model):
    from voxface.latent import interpolate, principal_directions, sample, walk

    ab = sample(model, 2, seed=5)
    assert len(sample(model, np.int64(2))) == 2 and len(interpolate(model, ab[0], ab[1], torch.tensor(3))) == 3
    # never truncated: 2.9 faces is an error, not 2; bools are not counts
    for bad in (2.9, 2.0, True, "2", None):
        with pytest.raises(TypeError, match="n must be an integer"):
            sample(model, bad)
    for bad in (2.7, 3.0, False):
        with pytest.raises(TypeError, match="steps must be an integer"):
            interpolate(model, ab[0], ab[1], bad)
    with pytest.raises(TypeError, match="seed must be an integer"):
        sample(model, 2, seed=1.5)
    with pytest.raises(TypeError, match="k must be an integer"):
        principal_directions(model, "expression", k=2.5)
    # temperatures and walk values that would make non-finite (or absurd) codes
    for bad in (float("inf"), float("nan"), -float("inf")):
        with pytest.raises(ValueError, match="temperature must be finite"):
            sample(model, 2, temperature=bad)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample(model, 2, temperature=-0.5)
    with pytest.raises(ValueError, match=r"temperature 1e\+30: the codes would exceed"):
        sample(model, 2, temperature=1e30)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        sample(model, 2, temperature="1")
    d = principal_directions(model, "expression", k=1)[0]
    for bad in ([0.0, float("nan")], [float("inf")]):
        with pytest.raises(ValueError, match=r"values\[\d\] must be finite"):
            walk(model, ab[0], d, bad)
    with pytest.raises(ValueError, match="the codes would exceed"):
        walk(model, ab[0], d, [1e30])
    with pytest.raises(ValueError, match="direction holds NaN"):
        walk(model, ab[0], torch.full((8,), float("nan")), [1.0], space="expression")
    with pytest.raises(TypeError, match="values must be a sequence"):
        walk(model, ab[0], d, 1.0)
    for raw in ("abc", [[1.0, 2.0], [3.0]], object()):  # was torch's TypeError/ValueError traceback
        with pytest.raises(TypeError, match="direction must be a Direction or a vector of numbers"):
            walk(model, ab[0], raw, [1.0], space="expression")
    assert len(walk(model, ab[0], d, np.linspace(-1, 1, 3))) == 3  # any iterable of numbers


# ------------------------------------------------------------------------- directions and walks


def test_principal_directions_and_their_matches(toy_ckpt, tmp_path):
    from voxface import VoxfaceError, load_model, save_checkpoint
    from voxface.data import build_dataset
    from voxface.latent import annotate_directions, principal_directions

    model = load_model(toy_ckpt, device="cpu")  # annotated below: a copy of its own
    dirs = principal_directions(model, "expression", k=4)
    assert [d.index for d in dirs] == [0, 1, 2, 3]
    vecs = torch.stack([d.vector for d in dirs])
    assert torch.allclose(vecs @ vecs.T, torch.eye(4), atol=1e-4)  # orthonormal
    assert all(a.std >= b.std for a, b in zip(dirs, dirs[1:])) and sum(d.explained_variance_ratio for d in dirs) <= 1
    # the trainer correlated its prior's directions with the toy training heads' coefficients
    assert all(d.correlation != 0 for d in dirs) and model.prior["exp_names"][0] == "toy_jaw_open"
    trained_top = principal_directions(model, "identity", k=1)[0]
    assert trained_top.match == "toy_width", trained_top
    assert len(principal_directions(model, "identity", k=100)) == 16  # at most D_id
    # correlate with the toy data's known coefficients (256 unseen heads): now directions have names
    ds = build_dataset({**toy_config()["data"], "num_val": 256}, "val", model.config)
    prior = annotate_directions(model, ds)
    assert prior["z_exp_pca"]["coeff_correlation"].shape == (8, 3)
    assert prior["z_id_pca"]["coeff_correlation"].shape == (16, 4)
    assert prior["id_names"][0] == "toy_width" and prior["exp_names"][0] == "toy_jaw_open"
    # the main identity direction of the toy model is the head's width against its height
    top = principal_directions(model, "identity", k=1)[0]
    assert top.match == "toy_width" and abs(top.correlation) > 0.5, top
    exp = principal_directions(model, "expression", k=8)
    assert all(d.match is None or d.match.startswith("toy_") for d in exp)
    assert all(abs(d.correlation) > 0 for d in exp)  # known now, matched or not
    # the annotation travels with the checkpoint
    path = save_checkpoint(tmp_path / "annotated.pth.tar", model)
    again = principal_directions(load_model(path, device="cpu"), "identity", k=1)
    assert again[0].match == "toy_width" and again[0].correlation == pytest.approx(top.correlation)
    with pytest.raises(ValueError):
        principal_directions(model, "both")
    no_prior = load_model(path, device="cpu")
    no_prior.prior = None
    with pytest.raises(VoxfaceError, match="no latent prior"):
        principal_directions(no_prior)
    # a prior without PCA: the axes, by spread
    diag = load_model(path, device="cpu")
    diag.prior = {k: v for k, v in diag.prior.items() if not k.endswith("_pca")}
    axes = principal_directions(diag, "expression", k=3)
    assert all(float(d.vector.abs().max()) == 1.0 for d in axes) and axes[0].std >= axes[1].std


@pytest.mark.parametrize("space", ["expression", "identity"])
def test_walk_moves_the_shape_monotonically_away_from_the_start(model, space):
    from voxface.latent import decode, principal_directions, sample, walk

    start = sample(model, 1, temperature=0.0)  # the mean face
    d = principal_directions(model, space, k=1)[0]
    values = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    codes = walk(model, start, d, values)
    moved = codes.z_exp if space == "expression" else codes.z_id
    kept = codes.z_id if space == "expression" else codes.z_exp
    assert torch.allclose(moved - moved[0], torch.tensor(values)[:, None] * d.std * d.vector, atol=1e-5)
    assert torch.equal(kept, kept[:1].expand(len(values), -1))
    recs = decode(model, codes, batch_size=3)
    dist = [1 - iou(recs[0].logits, r.logits) for r in recs]
    assert dist[-1] > 0.02, f"a 3-sigma walk barely changes the shape: {dist}"
    # monotonic up to 0.002 (a dozen voxels of the ~6,000 a toy head fills at 32^3)
    assert all(b >= a - 0.002 for a, b in zip(dist, dist[1:])), f"not monotonic: {np.round(dist, 4)}"
    assert dist[-1] > dist[len(dist) // 2] > 0
    # a raw vector needs its space; shapes are checked
    raw = walk(model, start, d.vector.numpy(), [1.0], space=space)
    assert torch.allclose((raw.z_exp if space == "expression" else raw.z_id)[0] - moved[0], d.vector, atol=1e-6)
    with pytest.raises(ValueError):
        walk(model, start, d.vector, [1.0])
    with pytest.raises(Exception, match="must have shape"):
        walk(model, start, torch.ones(3), [1.0], space=space)


def test_decode_in_batches_matches_one_batch(model):
    from voxface.latent import decode, sample

    codes = sample(model, 5, seed=12)
    small, big = decode(model, codes, batch_size=2), decode(model, codes, batch_size=8)
    assert len(small) == 5
    for a, b in zip(small, big):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
        assert a.logits.shape == (32, 32, 32)
    for bad, err in ((0, ValueError), (-1, ValueError), (2.0, TypeError)):  # -1 returned [] silently
        with pytest.raises(err, match="batch_size"):
            decode(model, codes, batch_size=bad)


# --------------------------------------------------------------------------- visualisation


def test_render_sequence_shares_one_framing(model):
    from voxface.latent import decode, sample
    from voxface.viz import render_mesh, render_sequence, shared_framing

    recs = decode(model, sample(model, 2, seed=1, temperature=1.5))
    imgs = render_sequence(recs, [(0, 0), (30, 10)], size=64)
    assert len(imgs) == 2 and all(len(v) == 2 and v[0].shape == (64, 64, 3) for v in imgs)
    # alone, a mesh fills the frame; framed with a bigger one it may not, but never exceeds it
    center, radius = shared_framing(recs)
    assert radius >= max(np.linalg.norm(r.mesh.vertices - center, axis=1).max() for r in recs) - 1e-9
    assert np.array_equal(render_sequence([recs[0]], size=64)[0][0], render_mesh(recs[0].mesh, size=64))


def test_plot_meshes_plotly_has_a_frame_and_slider_step_per_mesh(model):
    from voxface.latent import decode, sample
    from voxface.viz import plot_meshes_plotly

    recs = decode(model, sample(model, 3, seed=2))
    fig = plot_meshes_plotly(recs, ["a", "b", "c"], title="t")
    assert [f.name for f in fig.frames] == ["a", "b", "c"]
    assert [s["label"] for s in fig.layout.sliders[0].steps] == ["a", "b", "c"]
    assert fig.data[0].type == "mesh3d" and len(fig.data[0].i) == len(recs[0].mesh.faces)


def test_latent_explorer_callbacks_redraw_the_mesh(model):
    import ipywidgets

    from voxface.viz import latent_explorer

    from voxface.latent import sample

    start = sample(model, 1, temperature=0.0)
    ex = latent_explorer(model, start, k=2, space="both", size=64)
    assert isinstance(ex, ipywidgets.VBox)
    assert len(ex.sliders) == 4 and [d.space for d in ex.directions] == ["identity"] * 2 + ["expression"] * 2
    assert ex.redraws == 1 and ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    first_png, first_logits = ex.image.value, ex.reconstruction.logits
    # moving a slider (as a browser would, by setting its value) decodes and redraws
    ex.sliders[2].value = 2.5
    assert ex.redraws == 2
    d = ex.directions[2]
    assert torch.allclose(ex.latents().z_exp - start.z_exp, 2.5 * d.std * d.vector, atol=1e-5)
    assert torch.equal(ex.latents().z_id, start.z_id)
    assert not np.array_equal(ex.reconstruction.logits, first_logits) and ex.image.value != first_png
    assert "vertices" in ex.status.value
    ex.reset()
    assert ex.redraws == 3 and all(s.value == 0 for s in ex.sliders)
    assert np.allclose(ex.reconstruction.logits, first_logits, atol=1e-5)
    with pytest.raises(ValueError):
        latent_explorer(model, start, space="pose")
    # the status counts the cells inside the surface it draws: at the explorer's threshold
    high = latent_explorer(model, start, k=1, size=32, threshold=0.9)
    share = float((high.reconstruction.logits > np.log(9.0)).mean())
    assert f"occupied {share:.1%} of the grid" in high.status.value



def test_latent_explorer_without_a_code_starts_from_the_mean_face(model):
    """``latent_explorer(model)``, as the README writes it: no code means the prior's mean face."""
    import ipywidgets

    from voxface.latent import mean_latents
    from voxface.viz import latent_explorer

    ex = latent_explorer(model, k=1, space="identity", size=48)
    assert isinstance(ex, ipywidgets.VBox) and len(ex.sliders) == 1
    mean = mean_latents(model)
    assert torch.equal(ex.base.z_id, mean.z_id) and torch.equal(ex.base.z_exp, mean.z_exp)
    assert ex.redraws == 1 and ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(ex.reconstruction.mesh.faces) > 0 and "vertices" in ex.status.value
    # the same picture as passing the mean face explicitly
    assert ex.image.value == latent_explorer(model, mean, k=1, space="identity", size=48).image.value
    ex.sliders[0].value = 1.0
    assert ex.redraws == 2 and torch.equal(ex.latents().z_exp, mean.z_exp)


# ---------------------------------------------------------------------------------------- CLI


def frames_of(gif: Path) -> int:
    from PIL import Image

    with Image.open(gif) as im:
        return im.n_frames


def check_page(path: Path, steps: int) -> None:
    from voxface.html import offline_problems

    html = path.read_text(encoding="utf-8")
    assert offline_problems(html) == [] and "http://" not in html and "https://" not in html
    assert f'max="{steps - 1}"' in html


def test_a_long_morph_strip_wraps_into_rows(model, toy_ckpt, val_items, tmp_path, monkeypatch, capsys):
    """12 steps: strip.png holds 10 steps a row (front views above their 3/4 views), then the last
    2, instead of one row 12 renders wide (a 40-step morph was 7,800 pixels wide)."""
    from PIL import Image

    from voxface.cli._latent import STRIP_COLUMNS
    from voxface.latent import save_latents

    lat = encode(model, [val_items[i] for i in two_people(model, val_items)])
    a, b = save_latents(lat[0], tmp_path / "a.npz"), save_latents(lat[1], tmp_path / "b.npz")
    out = tmp_path / "long"
    code, _, err = run_cli(monkeypatch, capsys, "interpolate", a, b, "-o", out, "--steps", 12,
                           "--checkpoint", toy_ckpt, "--size", 32)
    assert code == 0, err
    with Image.open(out / "strip.png") as im:
        w, h = im.size
    assert STRIP_COLUMNS == 10 and w == 10 * 32 + 11 * 4  # ten 32-px cells and their padding
    assert h > 4 * 32 + 5 * 4  # two blocks of two rows (front and 3/4), captioned


def test_cli_interpolate_writes_every_file(model, toy_ckpt, val_items, tmp_path, monkeypatch, capsys):
    from voxface.latent import save_latents
    from voxface.viz import save_png

    lat = encode(model, [val_items[i] for i in two_people(model, val_items)])
    a, b = save_latents(lat[0], tmp_path / "a.npz"), save_latents(lat[1], tmp_path / "b.npz")
    out = tmp_path / "morph"
    code, stdout, err = run_cli(monkeypatch, capsys, "interpolate", a, b, "-o", out, "--steps", 5,
                                "--space", "expression", "--checkpoint", toy_ckpt, "--size", 64)
    assert code == 0, err
    assert "index.html" in stdout
    for name in [f"step_{i:02d}.ply" for i in range(5)] + ["strip.png", "interpolation.gif", "index.html",
                                                          "latents.npz", "manifest.json"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert frames_of(out / "interpolation.gif") == 8  # there and back
    check_page(out / "index.html", 5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"]["space"] == "expression" and all(m["watertight"] for m in manifest["meshes"])
    # what made the meshes is on record: the model, the threshold, the format, the render size
    assert {k: manifest["command"][k] for k in ("checkpoint", "threshold", "format", "size", "detect")} == {
        "checkpoint": str(Path(toy_ckpt).resolve()), "threshold": 0.5, "format": "ply", "size": 64, "detect": True}
    assert [m["file"] for m in manifest["meshes"]] == [f"step_{i:02d}.ply" for i in range(5)]
    # every GIF frame carries its step's label: a caption strip above the 64-pixel render
    from PIL import Image

    with Image.open(out / "interpolation.gif") as gif:
        assert gif.size[1] > 64 + 10 and gif.size[0] == 64 + 4
    from voxface.cli._latent import _output_names

    assert sorted(manifest["files"] + ["manifest.json"]) == sorted(_output_names("step", 5, "ply", "interpolation.gif"))
    z = np.load(out / "latents.npz")
    assert z["z_id"].shape == (5, 16) and np.allclose(z["z_id"], lat.z_id[0].numpy())
    # photos (framed crops) work too
    imgs = [save_png((it["image"].transpose(1, 2, 0) * 255).round().astype(np.uint8), tmp_path / f"{i}.png")
            for i, it in enumerate([val_items[k] for k in two_people(model, val_items)])]
    code, _, err = run_cli(monkeypatch, capsys, "interpolate", *imgs, "-o", tmp_path / "photos", "--steps", 3,
                           "--no-detect", "--checkpoint", toy_ckpt, "--size", 48, "--format", "obj")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "photos").glob("step_*")) == ["step_00.obj", "step_01.obj", "step_02.obj"]


def _run_transfer(model, toy_ckpt, val_items, tmp_path, monkeypatch, capsys, out: Path, size: int) -> None:
    """``voxface transfer`` of item 2's expression onto item 0 (codes with poses, as read from photos)."""
    from voxface.latent import save_latents

    with torch.inference_mode():
        lat = model.encode(torch.from_numpy(np.stack([it["image"] for it in val_items[:3]])))
    src, dst = save_latents(lat[2], tmp_path / "src.npz"), save_latents(lat[0], tmp_path / "dst.npz")
    code, _, err = run_cli(monkeypatch, capsys, "transfer", src, dst, "-o", out, "--steps", 4,
                           "--checkpoint", toy_ckpt, "--size", size)
    assert code == 0, err


def test_cli_transfer_and_sample_write_every_file(model, toy_ckpt, val_items, tmp_path, monkeypatch, capsys):
    out = tmp_path / "transfer"
    _run_transfer(model, toy_ckpt, val_items, tmp_path, monkeypatch, capsys, out, 48)
    for name in ["source.ply", "target.ply", "transfer.ply", "triptych.png", "strip.png", "transfer.gif",
                 "index.html", "latents.npz", "manifest.json"] + [f"step_{i:02d}.ply" for i in range(4)]:
        assert (out / name).is_file(), name
    check_page(out / "index.html", 4)
    z = np.load(out / "latents.npz")
    assert np.array_equal(z["z_id"][2], z["z_id"][1]) and np.array_equal(z["z_exp"][2], z["z_exp"][0])
    # the three faces keep their poses (read from photos: the target's for the transfer); the morph's
    # codes (step_00..step_03) are stored beside them, its expression moving linearly, as the strip's
    # "% of the way" labels say, its identity the target's
    assert list(z["role"]) == ["source", "target", "transfer"]
    assert z["pose_rotation"].shape == (3, 3, 3) and np.array_equal(z["pose_rotation"][2], z["pose_rotation"][1])
    share = np.linspace(0, 1, 4)[:, None]
    np.testing.assert_allclose(z["step_z_exp"], z["z_exp"][1] + share * (z["z_exp"][0] - z["z_exp"][1]), atol=1e-6)
    assert np.array_equal(z["step_z_id"], np.repeat(z["z_id"][1:2], 4, axis=0))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["file"] for m in manifest["meshes"]] == ["source.ply", "target.ply", "transfer.ply"] + [
        f"step_{i:02d}.ply" for i in range(4)]

    out = tmp_path / "samples"
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 4, "-o", out, "--temperature", 0.8, "--seed", 3,
                           "--checkpoint", toy_ckpt, "--size", 48)
    assert code == 0, err
    for name in [f"sample_{i:02d}.ply" for i in range(4)] + ["grid.png", "samples.gif", "index.html",
                                                             "latents.npz", "manifest.json"]:
        assert (out / name).is_file(), name
    assert frames_of(out / "samples.gif") == 12  # the grid turning around
    from voxface.cli._latent import _output_names

    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert sorted(listed + ["manifest.json"]) == sorted(_output_names("sample", 4, "ply", "samples.gif"))
    check_page(out / "index.html", 4)
    assert "4 samples of the identity and expression prior" in (out / "index.html").read_text()  # not "the both prior"
    from voxface.latent import sample

    assert np.allclose(np.load(out / "latents.npz")["z_id"], sample(model, 4, temperature=0.8, seed=3).z_id.numpy())


def test_step_labels_tell_every_step_apart():
    """interpolate's ``t = ...`` and transfer's ``...% of the way`` labels: two decimals (whole
    percents) as long as they tell the steps apart, more past 101 steps (a 150-step morph had two
    steps labelled ``t = 0.01``, ``1% of the way``)."""
    from voxface.cli._latent import _shares

    assert _shares(5, 2) == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert _shares(5, 0, "%") == ["0%", "25%", "50%", "75%", "100%"]
    assert _shares(101, 2)[:3] == ["0.00", "0.01", "0.02"]
    for steps in range(2, 201):
        for digits, kind in ((2, "f"), (0, "%")):
            labels = _shares(steps, digits, kind)
            assert len(set(labels)) == steps, (steps, kind)
            assert float(labels[-1].rstrip("%")) == (100 if kind == "%" else 1)
    assert _shares(150, 2)[:3] == ["0.000", "0.007", "0.013"]


def test_latent_commands_show_progress_on_a_terminal(model, toy_ckpt, tmp_path, monkeypatch, capsys):
    """Long work shows a progress bar: decoding and rendering count the faces on a terminal (a
    1,024-face sample ran for minutes without a line); captured or piped stderr gets no bar.
    ``decode_latents(progress=True)`` shows its bar (the argument was accepted and ignored)."""
    from voxface.latent import decode, sample

    recs = decode(model, sample(model, 3), progress=True)
    err = capsys.readouterr().err
    assert "decode: 100%" in err and "3/3" in err, err
    # render_sequence's bar (the commands' render bar) leaves its renders as they are
    from voxface.viz import render_sequence

    views = [(0.0, 0.0), (30.0, 10.0)]
    one_by_one, together = render_sequence(recs, views, 32, progress=True), render_sequence(recs, views, 32)
    assert "render: 100%" in capsys.readouterr().err
    assert len(one_by_one) == 3 and all(len(v) == 2 for v in one_by_one)
    assert all(np.array_equal(x, y) for a, b in zip(one_by_one, together) for x, y in zip(a, b))
    decode(model, sample(model, 3))
    assert capsys.readouterr().err == ""

    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 3, "-o", tmp_path / "quiet", "--checkpoint", toy_ckpt,
                           "--size", 32)
    assert code == 0 and err == "", err  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 3, "-o", tmp_path / "tty", "--checkpoint", toy_ckpt,
                           "--size", 32)
    assert code == 0, err
    bars = err.replace("\r", "\n")
    assert "decode: 100%" in bars and "render: 100%" in bars and "3/3" in bars, err
    assert (tmp_path / "quiet" / "grid.png").read_bytes() == (tmp_path / "tty" / "grid.png").read_bytes()


def test_cli_walk_writes_every_file_and_walks_the_direction(model, toy_ckpt, val_items, tmp_path, monkeypatch,
                                                             capsys):
    from voxface.latent import mean_latents, principal_directions, save_latents

    start = save_latents(encode(model, val_items[:1]), tmp_path / "start.npz")
    out = tmp_path / "walk"
    code, stdout, err = run_cli(monkeypatch, capsys, "walk", start, "-o", out, "--space", "identity",
                                "--direction", 1, "--values=-2,0,1.5,3", "--checkpoint", toy_ckpt, "--size", 48)
    assert code == 0, err
    d = principal_directions(model, "identity", k=2)[1]
    assert f"identity direction #1: std {d.std:.3g}" in stdout
    for name in [f"step_{i:02d}.ply" for i in range(4)] + ["strip.png", "walk.gif", "index.html", "latents.npz",
                                                         "manifest.json"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert frames_of(out / "walk.gif") == 6  # there and back
    check_page(out / "index.html", 4)
    z = np.load(out / "latents.npz")
    assert np.allclose(z["values"], [-2, 0, 1.5, 3]) and np.allclose(z["direction"], d.vector.numpy())
    a = np.load(start)
    # the offsets are in the direction's standard deviations; expression stays the start's
    expect = a["z_id"].reshape(1, -1) + np.array([-2, 0, 1.5, 3])[:, None] * d.std * d.vector.numpy()
    assert np.allclose(z["z_id"], expect, atol=1e-5) and np.allclose(z["z_exp"], a["z_exp"].reshape(1, -1))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"]["name"] == "walk" and all(m["watertight"] for m in manifest["meshes"])
    # the meshes really move along the walk
    import trimesh

    ends = [trimesh.load(out / f"step_{i:02d}.ply") for i in (0, 3)]
    assert all(m.is_watertight for m in ends)
    gap = np.abs(trimesh.proximity.signed_distance(ends[1], ends[0].vertices[::7])).mean()
    assert gap > 1.0, gap  # toy heads: a 5-sd walk moves the surface ~2.7 mm on average, not by float noise

    # no face: the walk starts at the prior's mean face (step 0 of a walk with offset 0)
    out = tmp_path / "mean"
    code, _, err = run_cli(monkeypatch, capsys, "walk", "-o", out, "--values", "0", "--checkpoint", toy_ckpt,
                           "--size", 32)
    assert code == 0, err
    z, mean = np.load(out / "latents.npz"), mean_latents(model)
    assert np.allclose(z["z_id"], mean.z_id.numpy()) and np.allclose(z["z_exp"], mean.z_exp.numpy())
    assert mean.z_id.shape == (1, 16) and np.allclose(mean.z_exp.numpy()[0], model.prior["z_exp_mean"])


@pytest.mark.parametrize("args, words", [
    (["--direction", "99"], "--direction 99 does not exist; its expression prior has 8 direction(s): use 0..7"),
    (["--values", "1,two"], "--values must be comma-separated numbers"),
    (["--values", "1,nan"], "--values must be finite numbers, not nan"),
    (["--values", "1e30"], "--values: "),
    (["--space", "both"], "--space must be identity or expression"),
    (["{tmp}/nope.npz"], "no such file"),
], ids=["direction", "not-numbers", "nan", "huge", "space", "missing"])
def test_cli_walk_refuses_bad_options_on_one_line(toy_ckpt, tmp_path, monkeypatch, capsys, args, words):
    code, _, err = run_cli(monkeypatch, capsys, "walk", *(a.format(tmp=tmp_path) for a in args), "-o",
                           tmp_path / "o", "--checkpoint", toy_ckpt)
    assert code == 1 and words in one_error_line(err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["interpolate", "{tmp}/nope.npz", "{tmp}/nope.npz", "-o", "{tmp}/o"], "no such file"),
        (["interpolate", "{tmp}/x.npz", "{tmp}/x.npz", "-o", "{tmp}/o", "--space", "pose"], "--space"),
        (["interpolate", "{tmp}/x.npz", "{tmp}/x.npz", "-o", "{tmp}/o", "--mode", "cubic"], "--mode"),
        (["transfer", "{tmp}/x.npz", "{tmp}/bad.npz", "-o", "{tmp}/o"], "not a voxface latent file"),
        (["sample", "-o", "{tmp}/o", "--kind", "flow"], "--kind"),
        # Path("") is the current folder: it was called '.: is a directory'
        (["interpolate", "", "{tmp}/x.npz", "-o", "{tmp}/o"], "a face argument is empty (give a photo or a .npz"),
    ],
    ids=["missing", "space", "mode", "bad-npz", "kind", "empty-face"],
)
def test_cli_user_errors_print_one_line(toy_ckpt, tmp_path, monkeypatch, capsys, args, words):
    np.savez(tmp_path / "x.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    (tmp_path / "bad.npz").write_bytes(b"nope")
    code, _, err = run_cli(monkeypatch, capsys, *(a.format(tmp=tmp_path) for a in args), "--checkpoint", toy_ckpt)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert not (tmp_path / "o" / "index.html").exists()


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line of a CLI failure (asserting there is exactly one, no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


#: Latent files of odd shapes and dtypes: their arrays, and the words the error must hold after
#: ``error: <file>: ``.
ODD_LATENT_FILES = {
    "no-rows": ({"z_id": np.zeros((0, 16), np.float32), "z_exp": np.zeros((0, 8), np.float32)},
                "'z_id' holds no codes (shape (0, 16))"),
    "strings": ({"z_id": np.array(["a"] * 16), "z_exp": np.zeros(8)}, "'z_id' must hold real numbers, not strings"),
    "3-d": ({"z_id": np.zeros((1, 1, 16)), "z_exp": np.zeros((1, 8))},
            "'z_id' must be one code (16,) or a batch (B, 16), got shape (1, 1, 16)"),
    "scalars": ({"z_id": np.zeros(16), "z_exp": np.float32(1.0)},
                "'z_exp' must be one code (8,) or a batch (B, 8), got shape ()"),
    "nan": ({"z_id": np.full(16, np.nan, np.float32), "z_exp": np.zeros(8)},
            "'z_id' holds 16 NaN or infinite value(s)"),
    "inf": ({"z_id": np.zeros(16), "z_exp": np.array([0.0] * 7 + [np.inf])},
            "'z_exp' holds 1 NaN or infinite value(s) of 8"),
    "huge": ({"z_id": np.full(16, 1e30), "z_exp": np.zeros(8)}, "'z_id' holds values beyond +-1e+06"),
    "row-counts": ({"z_id": np.zeros((2, 16)), "z_exp": np.zeros((3, 8))}, "'z_id' holds 2 code(s) but 'z_exp' 3"),
    "objects": ({"z_id": np.array([None] * 16, object), "z_exp": np.zeros(8)}, "'z_id' cannot be read"),
    "complex": ({"z_id": np.zeros(16, complex), "z_exp": np.zeros(8)}, "'z_id' must hold real numbers, not complex"),
    "other-model": ({"z_id": np.zeros(32), "z_exp": np.zeros(8)},
                    "'z_id' has codes of length 32, this model's z_id has 16"),
    "no-z_exp": ({"z_id": np.zeros(16), "logits": np.zeros(3)}, "not a voxface latent file: no 'z_exp' array"),
    "half-pose": ({"z_id": np.zeros(16), "z_exp": np.zeros(8), "pose_rotation": np.eye(3)},
                  "has pose_rotation but no pose_scale, pose_translation"),
}


@pytest.mark.parametrize("command", ["interpolate", "transfer"])
@pytest.mark.parametrize("case", list(ODD_LATENT_FILES))
def test_cli_odd_latent_files_are_one_line_errors_naming_file_and_array(toy_ckpt, tmp_path, monkeypatch, capsys,
                                                                         command, case):
    arrays, words = ODD_LATENT_FILES[case]
    np.savez(tmp_path / "odd.npz", **arrays)
    np.savez(tmp_path / "ok.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    odd, ok, out = tmp_path / "odd.npz", tmp_path / "ok.npz", tmp_path / "o"
    args = [odd, ok] if command == "interpolate" else [ok, odd]  # transfer: the target is odd
    code, _, err = run_cli(monkeypatch, capsys, command, *args, "-o", out, "--steps", 2, "--checkpoint", toy_ckpt)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"error: {odd}: ") and words in line, line
    assert not out.exists()  # refused before anything is written


def test_broken_latent_archives_name_the_file_and_array(model, tmp_path):
    import zipfile

    from voxface import VoxfaceError
    from voxface.latent import as_latents

    with open(tmp_path / "x.npz", "wb") as fh:  # a lone .npy array named .npz
        np.save(fh, np.zeros(24))
    with pytest.raises(VoxfaceError, match=r"x\.npz: not a voxface latent file \(a single \.npy array"):
        as_latents(model, tmp_path / "x.npz")
    # a compressed member whose data is damaged (zlib's error, not one of numpy's)
    np.savez_compressed(tmp_path / "c.npz", z_id=np.random.default_rng(0).random(16), z_exp=np.zeros(8))
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        info = z.getinfo("z_id.npy")
    data = bytearray((tmp_path / "c.npz").read_bytes())
    extra = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + len(info.filename) + extra  # the start of its deflate stream
    data[start : start + 10] = bytes(b ^ 0xFF for b in data[start : start + 10])
    (tmp_path / "c.npz").write_bytes(bytes(data))
    with pytest.raises(VoxfaceError, match=r"c\.npz: 'z_id' cannot be read \(error: "):
        as_latents(model, tmp_path / "c.npz")


@pytest.mark.parametrize("value, words", [("inf", "--temperature must be a finite number >= 0, not inf"),
                                          ("1e30", "--temperature 1e+30: the codes would exceed +-1e+06")])
def test_cli_sample_refuses_temperatures_that_make_non_finite_codes(toy_ckpt, tmp_path, monkeypatch, capsys,
                                                                    value, words):
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-o", out, "-n", 2, "--temperature", value,
                           "--checkpoint", toy_ckpt)
    assert code == 1 and words in one_error_line(err)
    assert not out.exists()


@pytest.mark.parametrize("option, value, words", [
    ("--seed", "-1", "--seed must be >= 0, got -1"),
    ("--temperature", "inf", "--temperature must be a finite number >= 0, not inf"),
    ("--temperature", "1e30", "--temperature 1e+30: the codes would exceed +-1e+06"),
])
def test_cli_decode_refuses_bad_seed_and_temperature_on_one_line(toy_ckpt, tmp_path, monkeypatch, capsys,
                                                                   option, value, words):
    code, _, err = run_cli(monkeypatch, capsys, "decode", toy_ckpt, "-o", tmp_path / "d.ply", option, value)
    assert code == 1 and words in one_error_line(err)
    assert not (tmp_path / "d.ply").exists()


@pytest.mark.parametrize("command", ["decode", "sample"])
def test_cli_checkpoint_without_a_prior_warns_in_one_clean_line(tiny_model, tmp_path, monkeypatch, capsys, command):
    """decode and sample of a checkpoint without a latent prior say so in the same single ``warning:``
    line (no ``UserWarning``, no source file and line) and go on."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "noprior.pth.tar", tiny_model)
    args = (["decode", ckpt, "-o", tmp_path / "d.ply"] if command == "decode"
            else ["sample", "-c", ckpt, "-o", tmp_path / "s", "-n", 1, "--size", 32])
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert err == "warning: this checkpoint has no latent prior: sampling N(0, I)\n"
    assert "wrote" in out


def _photo(path: Path, fmt: str = "PNG") -> Path:
    from PIL import Image

    Image.new("RGB", (64, 64), (150, 110, 90)).save(path, format=fmt)
    return path


@pytest.mark.parametrize("case", ["interpolate-relative", "interpolate-numbered-mesh", "transfer", "walk-link",
                                  "sample-checkpoint"])
def test_cli_refuses_outputs_that_would_overwrite_an_input(toy_ckpt, tmp_path, monkeypatch, capsys, case):
    """An input (photo or checkpoint) that one of the outputs would replace, however it is named
    (``./`` and ``..``, a symbolic link to it, the output folder a link), is refused before anything
    is read or written: one line naming the input and that output, the folder left as it was."""
    import shutil

    import voxface.checkpoint

    out = tmp_path / "o"
    out.mkdir()
    other = _photo(tmp_path / "other.png")
    monkeypatch.chdir(tmp_path)
    if case == "interpolate-relative":
        victim = _photo(out / "strip.png")
        given, output = "./o/../o/strip.png", "o/strip.png"
        args = ["interpolate", given, other, "-o", "o", "--steps", 3, "--checkpoint", toy_ckpt]
    elif case == "interpolate-numbered-mesh":  # 101 steps: step_000 ... step_100
        victim = _photo(out / "step_100.ply")
        given, output = victim, out / "step_100.ply"
        args = ["interpolate", other, victim, "-o", out, "--steps", 101, "--checkpoint", toy_ckpt]
    elif case == "transfer":
        victim = _photo(out / "triptych.png")
        given, output = victim, out / "triptych.png"
        args = ["transfer", other, victim, "-o", out, "--checkpoint", toy_ckpt]
    elif case == "walk-link":  # the photo is linked from outside the folder
        victim = _photo(out / "walk.gif", "GIF")
        given, output = tmp_path / "face.gif", out / "walk.gif"
        given.symlink_to(victim)
        args = ["walk", given, "-o", out, "--checkpoint", toy_ckpt]
    else:  # the checkpoint, with the output folder named through a link
        victim = out / "grid.png"
        shutil.copyfile(toy_ckpt, victim)
        (tmp_path / "link").symlink_to(out)
        given, output = victim, tmp_path / "link" / "grid.png"
        args = ["sample", "-n", 2, "-o", tmp_path / "link", "--checkpoint", victim]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(voxface.checkpoint, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 1
    assert one_error_line(err) == (f"error: {given}: the output {output} would overwrite this input; "
                                   "write into another folder (-o)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and victim.is_file()


def test_cli_rerun_replaces_the_earlier_runs_files_and_keeps_the_users(toy_ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"

    def run(*args: object) -> str:
        code, stdout, err = run_cli(monkeypatch, capsys, *args, "-o", out, "--checkpoint", toy_ckpt, "--size", 32)
        assert code == 0, err
        return stdout

    def check_agrees() -> set[str]:  # the manifest lists exactly voxface's files in the folder
        listed = set(json.loads((out / "manifest.json").read_text())["files"])
        assert {p.name for p in out.iterdir()} - {"manifest.json"} == listed | mine
        return listed

    run("sample", "-n", 3)
    mine = {"notes.txt", "sample_09.ply"}  # the user's files, not in any manifest: never touched
    for name in mine:
        (out / name).write_text("mine")
    stdout = run("sample", "-n", 2, "--format", "obj")  # fewer samples, another format
    assert "removed 3 file(s) of an earlier run" in stdout  # sample_00.ply, sample_01.ply, sample_02.ply
    assert {n for n in check_agrees() if n.startswith("sample_")} == {"sample_00.obj", "sample_01.obj"}
    # reading the folder's own latents.npz as a face: refused (the run would replace those codes
    # and remove the samples made from them), nothing touched
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run_cli(monkeypatch, capsys, "interpolate", out / "latents.npz", out / "latents.npz", "--steps", 3,
                           "-o", out, "--checkpoint", toy_ckpt, "--size", 32)
    assert code == 1 and one_error_line(err) == (f"error: {out / 'latents.npz'}: the output {out / 'latents.npz'} "
                                                 "would overwrite this input; write into another folder (-o)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    codes = shutil.copyfile(out / "latents.npz", tmp_path / "codes.npz")
    run("interpolate", codes, codes, "--steps", 3)
    assert {n for n in check_agrees() if n.startswith(("sample", "step"))} == {f"step_0{i}.ply" for i in range(3)}
    assert not (out / "grid.png").exists() and not (out / "samples.gif").exists()
    run("transfer", codes, codes, "--steps", 2)
    listed = check_agrees()
    assert "step_02.ply" not in listed and not (out / "interpolation.gif").exists()
    assert all((out / name).read_text() == "mine" for name in mine)


def test_stale_outputs_are_only_files_an_earlier_manifest_lists(tmp_path):
    from voxface.cli._latent import _earlier_outputs, _remove_stale

    out = tmp_path / "o"
    (out / "sub").mkdir(parents=True)
    (out / "index.html").mkdir()  # a folder by that name
    for name in ["notes.txt", "step_05.ply", "strip.png", "step_01.ply", "sub/step_00.ply", "../outside.ply",
                 "../elsewhere.ply"]:
        (out / name).write_text("x")
    (out / "step_06.ply").symlink_to(tmp_path / "elsewhere.ply")
    listed = ["../outside.ply", "sub/step_00.ply", "notes.txt", "step_05.ply", "step_06.ply", "strip.png",
              "step_01.ply", "index.html", "manifest.json", 7]
    (out / "manifest.json").write_text(json.dumps({"command": {"name": "sample"}, "files": listed}))
    earlier = _earlier_outputs(out)
    assert earlier == {"step_05.ply", "step_06.ply", "strip.png", "step_01.ply", "index.html"}
    # step_01.ply was rewritten, strip.png is an input, step_06.ply a link, index.html a folder
    assert _remove_stale(out, earlier, [out / "step_01.ply"], [str(out / "strip.png")]) == ["step_05.ply"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "manifest.json", "notes.txt", "step_01.ply",
                                                     "step_06.ply", "strip.png", "sub"]
    assert (tmp_path / "outside.ply").exists() and (tmp_path / "elsewhere.ply").exists()
    # no manifest, another tool's, or a broken one: nothing is taken for voxface's
    for text in ['{"files": ["step_01.ply"]}', '{"command": {"name": "train"}, "files": ["step_01.ply"]}',
                 '["step_01.ply"]', "{not json"]:
        (out / "manifest.json").write_text(text)
        assert _earlier_outputs(out) == set()
    (out / "manifest.json").unlink()
    assert _earlier_outputs(out) == set()


def test_latent_module_imports_no_torch_at_import_time():
    import subprocess

    code = "import sys, voxface.latent, voxface.html; assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_release_annotate_names_the_directions_from_the_runs_validation_data(toy_ckpt, tmp_path, monkeypatch, capsys):
    """``voxface release CKPT -o OUT --annotate N``: the released prior names its directions (the toy
    run's own validation data here); the weights, history and evaluation stay the same; a release
    of that release keeps the first one's ``released_from``."""
    from voxface import load_checkpoint, load_model
    from voxface.latent import principal_directions

    out = tmp_path / "annotated.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "release", toy_ckpt, "-o", out, "--annotate", 128)
    assert code == 0, err
    trained = principal_directions(load_model(toy_ckpt, device="cpu"), "identity", k=1)[0]  # on training heads
    top = principal_directions(load_model(out, device="cpu"), "identity", k=1)[0]  # on 128 validation heads
    assert top.match == "toy_width" and abs(top.correlation) > 0.5, top
    assert top.correlation != trained.correlation  # recomputed, not carried
    again = tmp_path / "again.pth.tar"
    assert run_cli(monkeypatch, capsys, "release", out, "-o", again)[0] == 0
    a, b = load_checkpoint(out), load_checkpoint(again)
    assert b["extra"]["released_from"] == a["extra"]["released_from"] == toy_ckpt.name
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    code, _, err = run_cli(monkeypatch, capsys, "release", toy_ckpt, "-o", tmp_path / "x.pth.tar", "--annotate", 2)
    assert code == 1 and "at least 3" in err and "Traceback" not in err


def test_expression_names_need_the_priors_mark_not_just_the_right_size(tiny_model):
    """A model's expression coordinates are named only where its prior says the codes were trained
    to be the coefficients (``coefficient_coordinates``): 53 dimensions alone (an untrained model)
    name nothing, and set_expression refuses rather than set an arbitrary coordinate."""
    from voxface import VoxfaceError
    from voxface.latent import expression_names, set_expression

    d_exp = tiny_model.config.encoder.z_exp
    names = [f"unit{j}" for j in range(d_exp)]
    tiny_model.prior = {"exp_names": names}
    try:
        assert expression_names(tiny_model) is None
        with pytest.raises(VoxfaceError, match="not named coefficients"):
            set_expression(tiny_model, torch.zeros(1, d_exp), {"unit0": 1.0})
        tiny_model.prior["coefficient_coordinates"] = True
        assert expression_names(tiny_model) == names
        tiny_model.prior["exp_names"] = names[:-1]  # a list of another size names nothing
        assert expression_names(tiny_model) is None
    finally:
        tiny_model.prior = None


def test_gif_frames_keep_the_head_still_when_a_label_wraps(model, toy_ckpt, val_items, tmp_path, monkeypatch,
                                                            capsys):
    """At --size 32, 'target expression' wraps onto two lines and '33% of the way' onto one more or
    fewer: each frame was built on its own, so the GIF (frames centred on the largest) moved the head
    by half a line between steps. Shorter frames now get blank rows above their label."""
    from PIL import Image, ImageSequence

    out = tmp_path / "t"
    _run_transfer(model, toy_ckpt, val_items, tmp_path, monkeypatch, capsys, out, 32)
    with Image.open(out / "transfer.gif") as gif:
        frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    # the lowest row drawn on (the bottom of the rendered head) is the same row of every frame
    bottoms = [int(np.nonzero((f < 250).any(1))[0][-1]) for f in frames]
    label_rows = [int(np.nonzero((f < 250).any(1))[0][0]) for f in frames]
    assert len(set(label_rows)) > 1, label_rows  # the labels did wrap differently
    assert max(bottoms) - min(bottoms) <= 1, bottoms


def test_release_annotate_renders_synthetic_faces_from_its_ict_root(toy_ckpt, tmp_path, monkeypatch, capsys):
    """``release --annotate`` of a run on synthetic ICT data renders its faces from ICT-FaceKit; it had
    no --ict-root, though the missing-data message said 'or pass its path'."""
    ck = torch.load(toy_ckpt, weights_only=False)
    ck["extra"]["run_config"]["data"] = {"kind": "synthetic", "num_val": 8}
    synthetic = tmp_path / "synthetic-run.pth.tar"
    torch.save(ck, synthetic)
    nowhere = tmp_path / "no-ict"
    nowhere.mkdir()
    monkeypatch.delenv("VOXFACE_ICT_ROOT", raising=False)
    code, _, err = run_cli(monkeypatch, capsys, "release", synthetic, "-o", tmp_path / "r.pth.tar", "--annotate", 4,
                           "--ict-root", nowhere)
    assert code == 1 and "Traceback" not in err, err
    assert f"{nowhere}: not an ICT-FaceKit folder" in err
    assert not (tmp_path / "r.pth.tar").exists()


def test_editing_the_mean_face_leaves_the_prior_alone(model):
    """``mean_latents`` hands back the prior's mean as new tensors: setting a coefficient on it in
    place (``mean.z_exp[0, j] = 1``) changed ``model.prior`` and with it every later sample,
    slerp centre and mean face."""
    from voxface.latent import mean_latents, sample

    prior_id, prior_exp = model.prior["z_id_mean"].clone(), model.prior["z_exp_mean"].clone()
    mean = mean_latents(model)
    mean.z_id += 5.0
    mean.z_exp[0, 0] = 1.0
    assert torch.equal(model.prior["z_id_mean"], prior_id) and torch.equal(model.prior["z_exp_mean"], prior_exp)
    assert torch.equal(sample(model, 1, temperature=0.0).z_exp[0], prior_exp)
    assert torch.equal(mean_latents(model).z_id[0], prior_id)


def test_image_tensors_are_photos_as_model_reconstruct_takes_them(model, val_items):
    """An image tensor (``(H, W, 3)`` or ``(3, H, W)``, a 2-D ``uint8`` grayscale one) is a photo,
    as ``model.reconstruct`` reads it: it was taken for a raw code and refused ('a raw latent code
    must be (D,) or (B, D), got shape (128, 128, 3)'). Tensors of codes stay codes."""
    from voxface.latent import _is_raw_code, as_latents

    crop = np.ascontiguousarray(np.asarray(val_items[0]["image"], np.float32).transpose(1, 2, 0))  # (S, S, 3)
    want = as_latents(model, crop, detect=False)
    for tensor in (torch.from_numpy(crop), torch.from_numpy(crop).permute(2, 0, 1),
                   torch.from_numpy(np.round(crop * 255).astype(np.uint8))):
        got = as_latents(model, tensor, detect=False)
        assert got.pose is not None and got.z_id.shape == want.z_id.shape
        assert torch.allclose(got.z_id, want.z_id, atol=0.05) and torch.allclose(got.z_exp, want.z_exp, atol=0.05)
    assert not _is_raw_code(torch.zeros(64, 64, dtype=torch.uint8), 100, 53)  # grayscale
    assert _is_raw_code(torch.zeros(3, 153), 100, 53) and _is_raw_code(torch.zeros(153), 100, 53)


def test_set_expression_refuses_weights_no_code_may_hold(tiny_model):
    """A weight beyond :data:`MAX_ABS_CODE` is refused where it comes in, naming the coefficient, as
    every other way in refuses such codes (it was set, and failed later, at decoding, as
    '<latents>: 'z_exp' holds values beyond +-1e+06'); weights past 0..1 within it are kept."""
    from voxface.latent import MAX_ABS_CODE, set_expression

    d_id, d_exp = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    tiny_model.prior = {"exp_names": [f"unit{j}" for j in range(d_exp)], "coefficient_coordinates": True}
    try:
        face = torch.zeros(1, d_id + d_exp)
        with pytest.raises(ValueError, match=r"unit1 = 1e\+30 is beyond"):
            set_expression(tiny_model, face, {"unit1": 1e30})
        assert float(set_expression(tiny_model, face, {"unit1": -2.5}).z_exp[0, 1]) == -2.5
        assert float(set_expression(tiny_model, face, {"unit1": MAX_ABS_CODE}).z_exp[0, 1]) == MAX_ABS_CODE
    finally:
        tiny_model.prior = None


def test_save_latents_adds_the_npz_suffix_so_the_file_reads_back(model, tmp_path):
    """``save_latents(codes, "out/morph")`` wrote ``out/morph``, which every latent function then
    took for a photo ('not an image'); it writes ``out/morph.npz``, as ``numpy.savez`` would, and
    returns that path."""
    from voxface.latent import as_latents, sample, save_latents

    codes = sample(model, 2, seed=4)
    path = save_latents(codes, tmp_path / "morph")
    assert path == tmp_path / "morph.npz" and path.is_file() and not (tmp_path / "morph").exists()
    back = as_latents(model, path)
    assert torch.equal(back.z_id, codes.z_id) and torch.equal(back.z_exp, codes.z_exp)
    assert save_latents(codes, tmp_path / "Upper.NPZ") == tmp_path / "Upper.NPZ"


@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-4, ValueError), (8.0, TypeError)])
def test_annotate_directions_refuses_a_batch_size_it_cannot_use(model, batch_size, error):
    """``batch_size=0`` was Python's 'range() arg 3 must not be zero' after the model was put in
    eval mode; now a one-line error naming batch_size, and the prior is left as it was."""
    from voxface.latent import annotate_directions

    before = {k: v for k, v in model.prior["z_id_pca"].items()}
    with pytest.raises(error, match="batch_size"):
        annotate_directions(model, [], batch_size=batch_size)
    assert model.prior["z_id_pca"].keys() == before.keys()


def test_stack_latents_moves_to_the_first_items_device_and_names_bad_items():
    """Codes on two devices (CUDA codes from ``model.encode`` beside CPU codes from a file) failed
    in torch's 'Expected all tensors to be on the same device'; codes of another model's lengths
    in 'Sizes of tensors must match'; a Reconstruction or a path in an AttributeError; a generator
    in 'expected a non-empty list'. Now: every item moves to the first one's device (the meta
    device stands in for CUDA here), Reconstructions give their latents, the rest are one-line
    errors naming the item."""
    from voxface.latent import stack_latents
    from voxface.models import Latents, Pose
    from voxface.reconstruct import Reconstruction

    def lat(n, device="cpu"):
        pose = Pose(torch.eye(3).expand(n, 3, 3).clone(), torch.ones(n), torch.zeros(n, 2))
        return Latents(torch.randn(n, 6), torch.randn(n, 4), pose).to(device)

    a, b = lat(2), lat(1)
    both = stack_latents(x for x in [a, b])  # any iterable
    assert torch.equal(both.z_id, torch.cat([a.z_id, b.z_id])) and both.pose.rotation.shape == (3, 3, 3)
    on_meta = stack_latents([lat(1, "meta"), a, b])
    assert len(on_meta) == 4
    for t in (on_meta.z_id, on_meta.z_exp, on_meta.pose.rotation, on_meta.pose.scale, on_meta.pose.translation):
        assert t.device.type == "meta"
    rec = Reconstruction.__new__(Reconstruction)  # only its latents are read
    rec.latents = b
    assert torch.equal(stack_latents([a, rec]).z_exp[2:], b.z_exp)
    with pytest.raises(ValueError, match=r"item 1 has codes z_id \(1, 5\)"):
        stack_latents([a, Latents(torch.zeros(1, 5), torch.zeros(1, 4))])
    with pytest.raises(TypeError, match="item 1 is a str"):
        stack_latents([a, "face.npz"])
    with pytest.raises(ValueError, match="at least one"):
        stack_latents(iter([]))


def test_cli_walk_of_a_checkpoint_without_a_prior_names_the_file(tiny_model, tmp_path, monkeypatch, capsys):
    """``voxface walk -c CKPT`` of a checkpoint without a prior said only 'error: this checkpoint has
    no latent prior' (which checkpoint?): the line names the file, and nothing is written."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "noprior.pth.tar", tiny_model)
    code, _, err = run_cli(monkeypatch, capsys, "walk", "-c", ckpt, "-o", tmp_path / "w")
    assert code == 1
    assert one_error_line(err).startswith(f"error: {ckpt}: this checkpoint has no latent prior")
    assert not (tmp_path / "w").exists()


def test_a_raw_code_that_fits_either_part_is_called_ambiguous(tiny_config):
    """A model with as many identity as expression values (z_id = z_exp = 8) refused a raw code of
    length 8 as 'does not fit this model: expected ... D_id = 8 or D_exp = 8': the error says the
    code could be either part and how to give it; a full [z_id, z_exp] code still reads."""
    from voxface import VoxfaceError
    from voxface.latent import as_latents
    from voxface.models import create_model

    tiny_config["encoder"].update(z_id=8, z_exp=8)
    model = create_model(tiny_config).eval()
    with pytest.raises(VoxfaceError, match=r"length 8 could be a z_id or a z_exp .*\[z_id, z_exp\] \(length 16\)"):
        as_latents(model, np.zeros(8, np.float32))
    lat = as_latents(model, np.arange(16, dtype=np.float32))
    assert lat.z_id.tolist() == [list(range(8))] and lat.z_exp.tolist() == [list(range(8, 16))]


def test_a_list_of_faces_reads_each_and_stacks_them(tiny_model, tmp_path):
    """``as_latents(model, ["a.npz", "b.npz"])`` (the files of several reconstructions as one batch)
    was refused as 'a raw latent code must hold real numbers, not strings', and a list of Latents
    as an array 'exceeding the maximum number of dimensions of 64': a list or tuple holding faces
    reads each and stacks them in order (poses kept when each has one); lists of numbers stay codes."""
    from voxface import VoxfaceError
    from voxface.latent import as_latents, save_latents
    from voxface.models import Latents, Pose

    def face(n, seed, pose=True):
        g = torch.Generator().manual_seed(seed)
        p = Pose(torch.eye(3).expand(n, 3, 3).clone(), torch.full((n,), 2.0), torch.zeros(n, 2)) if pose else None
        return Latents(torch.randn(n, 16, generator=g), torch.randn(n, 8, generator=g), p)

    a, b, c = face(1, 0), face(2, 1), face(1, 2, pose=False)
    pa, pb = save_latents(a, tmp_path / "ä.npz"), save_latents(b, tmp_path / "b.npz")
    both = as_latents(tiny_model, [pa, str(pb)])
    assert torch.equal(both.z_id, torch.cat([a.z_id, b.z_id])) and torch.equal(both.z_exp, torch.cat([a.z_exp, b.z_exp]))
    assert both.pose is not None and both.pose.scale.tolist() == [2.0, 2.0, 2.0]
    mixed = as_latents(tiny_model, (c, pa, np.zeros(24, np.float32)))
    assert len(mixed) == 3 and mixed.pose is None and torch.equal(mixed.z_id[0], c.z_id[0])
    assert len(as_latents(tiny_model, [[0.0] * 24, [1.0] * 24])) == 2  # a nested list of numbers: codes
    assert len(as_latents(tiny_model, [np.zeros(24), np.ones(24)])) == 2  # 1-D arrays too
    assert len(as_latents(tiny_model, [np.zeros((2, 24)), torch.ones(3, 24)])) == 5  # batches of codes, stacked
    photos = as_latents(tiny_model, [np.full((64, 64, 3), 90, np.uint8), np.full((64, 64, 3), 200, np.uint8)],
                        detect=False)  # photo arrays: each encoded
    assert len(photos) == 2 and photos.pose is not None and not torch.equal(photos.z_id[0], photos.z_id[1])
    with pytest.raises(VoxfaceError, match=r"nope\.npz: no such latent file"):
        as_latents(tiny_model, [pa, tmp_path / "nope.npz"])


def test_cli_a_latent_file_of_several_faces_warns_that_the_first_is_used(tiny_model, tmp_path, monkeypatch,
                                                                          capsys):
    """Another latent command's ``latents.npz`` (a sample's 16 faces, a morph's steps) given as a face
    silently used its first row; the run says so on one ``warning:`` line and goes on."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "many.npz", z_id=np.zeros((3, 16), np.float32), z_exp=np.zeros((3, 8), np.float32))
    np.savez(tmp_path / "one.npz", z_id=np.zeros((1, 16), np.float32), z_exp=np.zeros((1, 8), np.float32))
    code, out, err = run_cli(monkeypatch, capsys, "interpolate", tmp_path / "many.npz", tmp_path / "one.npz",
                             "-o", tmp_path / "o", "--steps", 2, "--size", 32, "-c", ckpt)
    assert code == 0, err
    assert err == f"warning: {tmp_path / 'many.npz'} holds 3 faces; the first one is used\n"
    assert "wrote" in out
    # a file refused for its arrays gives its one error line, no warning before it
    np.savez(tmp_path / "bad.npz", z_id=np.zeros((3, 16), np.float32), z_exp=np.zeros((2, 8), np.float32))
    code, _, err = run_cli(monkeypatch, capsys, "transfer", tmp_path / "bad.npz", tmp_path / "one.npz",
                           "-o", tmp_path / "t", "--steps", 2, "--size", 32, "-c", ckpt)
    assert code == 1 and "'z_id' holds 3 code(s) but 'z_exp' 2" in one_error_line(err)


def test_save_latents_refuses_extras_named_like_its_own_arrays(tmp_path):
    """``save_latents(codes, p, z_id=other)`` wrote ``other`` as the file's codes, and
    ``pose_rotation=...`` of codes without a pose a file that ``as_latents`` refuses as half a pose;
    both are refused, nothing written."""
    from voxface.latent import save_latents
    from voxface.models import Latents

    codes = Latents(torch.zeros(2, 16), torch.zeros(2, 8))
    for key in ("z_id", "pose_rotation"):
        with pytest.raises(ValueError, match=f"save_latents: {key} would replace"):
            save_latents(codes, tmp_path / "c.npz", **{key: np.ones(3)})
    assert not (tmp_path / "c.npz").exists()
    path = save_latents(codes, tmp_path / "c.npz", t=[0.0, 1.0])
    with np.load(path) as z:
        assert sorted(z.files) == ["t", "z_exp", "z_id"] and not z["z_id"].any()


def test_cli_a_folder_where_an_output_goes_is_refused_before_anything_is_written(tiny_model, tmp_path, monkeypatch,
                                                                                 capsys):
    """A folder named like an output (``strip.png/`` in -o) failed the run after decoding, with
    ``latents.npz`` and some meshes already replaced beside the earlier run's manifest: one line
    naming it, before anything is written."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    out = tmp_path / "o"
    (out / "strip.png").mkdir(parents=True)
    code, _, err = run_cli(monkeypatch, capsys, "interpolate", tmp_path / "a.npz", tmp_path / "a.npz", "-o", out,
                           "--steps", 2, "--size", 32, "-c", ckpt)
    assert code == 1
    assert one_error_line(err) == f"error: {out / 'strip.png'}: is a folder, where this run writes a file; move it " \
                                  "or write into another folder (-o)"
    assert sorted(p.name for p in out.iterdir()) == ["strip.png"]


def test_cli_latent_commands_extract_on_a_finer_grid(toy_ckpt, tmp_path, monkeypatch, capsys):
    """The latent commands had no --resolution (reconstruct's): a morph or a sample for a figure was
    always a mesh of the model's coarse grid. --resolution/--upsample extract on a finer one, say
    so in the manifest, print reconstruct's note when the upsampling asked for is not there, and
    refuse grids outside 64/128/256 before anything runs."""
    import trimesh

    meshes = {}
    for res in (None, 64):
        out = tmp_path / f"s{res}"
        extra = ["--resolution", res, "--upsample", "head"] if res else []
        code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 1, "-o", out, "--size", 32, "-c", toy_ckpt, *extra)
        assert code == 0, err
        assert ("no refinement head" in err) == bool(res)  # the toy model has none: reconstruct's note
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["command"]["resolution"] == res
        meshes[res] = trimesh.load(out / "sample_00.ply")
    fine, coarse = meshes[64], meshes[None]
    assert len(fine.vertices) > 2.5 * len(coarse.vertices)  # 4x the surface cells
    assert np.allclose(fine.bounds, coarse.bounds, atol=0.1 * np.ptp(coarse.bounds[:, 0]))  # the same head
    code, _, err = run_cli(monkeypatch, capsys, "walk", "-o", tmp_path / "w", "--resolution", 100, "-c", toy_ckpt)
    assert code == 1 and one_error_line(err) == "error: --resolution must be one of 64, 128, 256, not 100"
    assert not (tmp_path / "w").exists()


def test_a_transposed_latent_array_is_called_so(tiny_model, tmp_path):
    """A file whose z_id holds one code per column (``(16, 3)``, as MATLAB or a column-major
    pipeline writes it) was blamed on 'latents of another model?': the error says the codes are
    columns and to save the transpose."""
    from voxface import VoxfaceError
    from voxface.latent import as_latents

    np.savez(tmp_path / "t.npz", z_id=np.zeros((16, 3), np.float32), z_exp=np.zeros((3, 8), np.float32))
    with pytest.raises(VoxfaceError, match=r"t\.npz: 'z_id' has codes of length 3, this model's z_id has 16 \(a "
                                           r"\(D, B\) array with one code per column\? codes are rows"):
        as_latents(tiny_model, tmp_path / "t.npz")
    np.savez(tmp_path / "o.npz", z_id=np.zeros((3, 32), np.float32), z_exp=np.zeros((3, 8), np.float32))
    with pytest.raises(VoxfaceError, match=r"has 16 \(latents of another model\?\)"):
        as_latents(tiny_model, tmp_path / "o.npz")


def test_set_expression_refuses_weights_that_name_no_values(tiny_model):
    """``set_expression(model, face, "jawOpen")`` or ``["jawOpen"]`` failed in Python's 'dictionary
    update sequence element #0 has length 7; 2 is required': a TypeError that says what weights
    are; a list of (name, value) pairs still works."""
    from voxface.latent import set_expression

    d_id, d_exp = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    tiny_model.prior = {"exp_names": [f"unit{j}" for j in range(d_exp)], "coefficient_coordinates": True}
    try:
        face = torch.zeros(1, d_id + d_exp)
        for bad in ("unit1", ["unit1"], 1.0):
            with pytest.raises(TypeError, match=r"weights must map expression names to values, e.g. \{'jawOpen'"):
                set_expression(tiny_model, face, bad)
        assert float(set_expression(tiny_model, face, [("unit1", 0.5)]).z_exp[0, 1]) == 0.5
    finally:
        tiny_model.prior = None


def test_bad_arguments_of_transfer_and_walk_are_input_errors(tiny_model):
    """transfer_expression with 3 sources for 2 targets and walk with a direction of the wrong length
    raised a bare VoxfaceError, which ``except ValueError`` (the README: bad arguments raise
    InputError, a ValueError) did not catch."""
    from voxface import InputError
    from voxface.latent import transfer_expression, walk

    with pytest.raises(InputError, match="3 sources for 2 targets"):
        transfer_expression(tiny_model, torch.zeros(3, 24), torch.zeros(2, 24))
    with pytest.raises(ValueError, match=r"an expression direction must have shape \(8,\), got \(16,\)"):
        walk(tiny_model, torch.zeros(24), torch.ones(16), [1.0], space="expression")


def test_cli_sample_without_a_prior_does_not_call_its_faces_pca_samples(tiny_model, tmp_path, monkeypatch, capsys):
    """A checkpoint without a prior samples N(0, I) (and warns), but the page and the grid's caption
    said 'pca prior': they say what was drawn."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "noprior.pth.tar", tiny_model)
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-c", ckpt, "-o", tmp_path / "s", "-n", 1, "--size", 32)
    assert code == 0, err
    page = (tmp_path / "s" / "index.html").read_text(encoding="utf-8")
    assert "no prior in the checkpoint: N(0, I), temperature 1, seed 0" in page and "pca prior" not in page


def test_directions_are_named_only_above_chance_for_the_faces_correlated() -> None:
    """``release --annotate 8`` named every direction (|r| 0.6-0.8 with one of ~100 coefficients is
    chance at 8 faces); the naming threshold is the chance level z / sqrt(n) (z 3.5 for 100
    coefficients) where that is above 0.3, and a prior without the count keeps 0.3."""
    from types import SimpleNamespace

    import torch

    from voxface.latent import MATCH_MIN_CORRELATION, match_threshold, principal_directions, record_correlations

    assert match_threshold(None) == MATCH_MIN_CORRELATION == match_threshold(256)
    assert match_threshold(8) > 1.0 and match_threshold(49) == pytest.approx(3.48 / 7, abs=0.01)
    assert match_threshold(32, 4) == pytest.approx(2.50 / 32 ** 0.5, abs=0.01)  # fewer coefficients: less chance
    gen = torch.Generator().manual_seed(0)
    d, c = 6, 100

    def prior_of(n: int) -> dict:
        z = torch.randn(n, d, generator=gen, dtype=torch.float64)
        coeffs = torch.randn(n, c, generator=gen, dtype=torch.float64)  # unrelated to the codes
        coeffs[:, 7] = z[:, 0] + 0.3 * coeffs[:, 7]  # one real relation: direction 0 follows coefficient 7
        pca = {"components": torch.eye(d), "explained_variance": torch.linspace(2, 1, d),
               "explained_variance_ratio": torch.linspace(2, 1, d) / torch.linspace(2, 1, d).sum()}
        prior = {"z_id_mean": torch.zeros(d), "z_id_std": torch.ones(d), "z_id_pca": pca,
                 "id_names": [f"identity{i:03d}" for i in range(c)]}
        return record_correlations(prior, {"z_id": z, "z_exp": z}, {"z_id": coeffs, "z_exp": coeffs})

    few = principal_directions(SimpleNamespace(prior=prior_of(8)), "identity", k=d)
    assert all(x.match is None for x in few), [(x.match, x.correlation) for x in few]
    many = principal_directions(SimpleNamespace(prior=prior_of(400)), "identity", k=d)
    assert many[0].match == "identity007" and all(x.match is None for x in many[1:])


def test_latent_arguments_that_cannot_be_used_are_input_errors(model, tmp_path) -> None:
    """The README promises InputError (a ValueError) for arguments voxface cannot use; as_latents
    raised a bare VoxfaceError for an empty or NaN raw code and a missing file, and rec.save for an
    unknown mesh format, which `except ValueError` did not catch."""
    from voxface.errors import InputError
    from voxface.latent import as_latents
    from voxface.mesh import mesh_bytes

    width = model.config.encoder.z_id + model.config.encoder.z_exp
    for bad in ([], np.full(width, np.nan), str(tmp_path / "missing.npz"), np.zeros(width + 1)):
        with pytest.raises(InputError):
            as_latents(model, bad)
    with pytest.raises(InputError, match="unknown mesh format 'xyz'"):
        mesh_bytes((np.eye(3), np.array([[0, 1, 2]])), tmp_path / "x.xyz")


def test_a_pair_of_codes_is_one_face_not_two(tiny_model):
    """``as_latents(model, (rec.latents.z_id, rec.latents.z_exp))`` read the pair as a list of two
    faces (the identity with the prior's mean expression, then the mean identity with the
    expression): an interpolation from it silently started from the mean expression. A pair of
    codes of the model's z_id and z_exp lengths is one face (or one batch)."""
    from voxface import VoxfaceError
    from voxface.latent import as_latents, interpolate

    g = torch.Generator().manual_seed(0)
    z_id, z_exp = torch.randn(1, 16, generator=g), torch.randn(1, 8, generator=g)
    for pair in ((z_id, z_exp), [z_id[0], z_exp[0]], (z_id.numpy(), z_exp.numpy()),
                 [z_id[0].tolist(), z_exp[0].tolist()]):
        lat = as_latents(tiny_model, pair)
        assert len(lat) == 1 and torch.equal(lat.z_id, z_id) and torch.equal(lat.z_exp, z_exp)
    batch = as_latents(tiny_model, (torch.cat([z_id, -z_id]), torch.cat([z_exp, -z_exp])))
    assert len(batch) == 2 and torch.equal(batch.z_exp[1], -z_exp[0])
    codes = interpolate(tiny_model, (z_id, z_exp), torch.zeros(24), 3)
    assert torch.equal(codes.z_exp[0], z_exp[0]) and torch.equal(codes.z_id[0], z_id[0])
    # two identity codes are still two faces; rows that disagree are one line
    assert len(as_latents(tiny_model, (z_id, -z_id))) == 2
    with pytest.raises(VoxfaceError, match=r"'z_id' holds 2 code\(s\) but 'z_exp' 1"):
        as_latents(tiny_model, (torch.cat([z_id, z_id]), z_exp))


def test_walk_refuses_complex_and_bool_directions(tiny_model):
    """A complex direction (np.linalg.eig of a non-symmetric matrix gives complex eigenvectors) was
    cast to float32, dropping its imaginary part behind a torch UserWarning, and a bool mask walked
    as 0/1: a TypeError, as raw codes of those dtypes are."""
    from voxface.latent import walk

    start = torch.zeros(24)
    for bad in (np.full(8, 1 + 1j), torch.ones(8, dtype=torch.complex64), np.ones(8, bool)):
        with pytest.raises(TypeError, match="direction must hold real numbers"):
            walk(tiny_model, start, bad, [1.0], space="expression")
    codes = walk(tiny_model, start, np.arange(8), [2.0], space="expression")  # integers are numbers
    assert codes.z_exp[0].tolist() == [2.0 * i for i in range(8)]


def test_save_latents_takes_a_reconstruction_and_refuses_other_things(tiny_model, tmp_path):
    """save_latents(rec, path) and save_latents({'z_id': ..., 'z_exp': ...}, path) failed in
    AttributeError: '... object has no attribute numpy': a Reconstruction's latents (and pose) are
    written, as stack_latents takes them; anything else is a one-line TypeError."""
    from voxface.latent import as_latents, decode, save_latents
    from voxface.models import Pose

    lat = as_latents(tiny_model, torch.linspace(-1, 1, 24))
    lat.pose = Pose(torch.eye(3)[None], torch.full((1,), 2.0), torch.zeros(1, 2))
    rec = decode(tiny_model, lat)[0]
    back = as_latents(tiny_model, save_latents(rec, tmp_path / "rec"))
    assert torch.equal(back.z_id, lat.z_id) and torch.equal(back.z_exp, lat.z_exp) and back.pose.scale.tolist() == [2.0]
    for bad in ({"z_id": lat.z_id, "z_exp": lat.z_exp}, str(tmp_path / "rec.npz")):
        with pytest.raises(TypeError, match="save_latents writes Latents or a Reconstruction"):
            save_latents(bad, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_cli_interpolate_of_one_space_says_the_other_stays_as_a(tiny_model, tmp_path, monkeypatch, capsys):
    """``interpolate a b --space identity`` captioned its strip and page 'a (t = 0) to b (t = 1): the
    identity by slerp', while t = 1 keeps a's expression (not b's face): the caption and the page
    say the other code stays a's."""
    import html

    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    np.savez(tmp_path / "b.npz", z_id=np.ones(16, np.float32), z_exp=np.ones(8, np.float32))
    for space, stays in (("identity", "the expression stays a.npz's"), ("expression", "the identity stays a.npz's")):
        out = tmp_path / space
        code, _, err = run_cli(monkeypatch, capsys, "interpolate", tmp_path / "a.npz", tmp_path / "b.npz", "-o", out,
                               "--steps", 2, "--size", 32, "--space", space, "-c", ckpt)
        assert code == 0, err
        assert stays in html.unescape((out / "index.html").read_text(encoding="utf-8"))
        z = np.load(out / "latents.npz")
        kept = "z_exp" if space == "identity" else "z_id"
        assert np.array_equal(z[kept][1], np.zeros(z[kept].shape[1]))  # t = 1 keeps a's code indeed


def test_cli_refuses_to_replace_a_foreign_index_html_or_manifest(tiny_model, tmp_path, monkeypatch, capsys):
    """``interpolate a b -o docs/`` replaced the site's own docs/index.html, and a folder's other
    ``manifest.json`` (another tool's, which the rerun logic already ignored) was replaced by the
    run's: both are refused on one line naming the file, before anything is written; a rerun into
    a latent command's own folder still replaces its page."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))

    def run(out: Path) -> tuple[int, str]:
        code, _, err = run_cli(monkeypatch, capsys, "interpolate", tmp_path / "a.npz", tmp_path / "a.npz", "-o", out,
                               "--steps", 2, "--size", 32, "-c", ckpt)
        return code, err

    for name, words in (("index.html", "was not written by a voxface latent command"),
                        ("manifest.json", "is not the manifest of a voxface latent command")):
        out = tmp_path / name.split(".")[0]
        out.mkdir()
        (out / name).write_text("theirs")
        code, err = run(out)
        assert code == 1 and one_error_line(err).startswith(f"error: {out / name}: {words}"), err
        assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "theirs"
    out = tmp_path / "ours"
    assert run(out)[0] == 0
    page = (out / "index.html").read_bytes()
    (out / "index.html").write_text("edited")
    assert run(out)[0] == 0 and (out / "index.html").read_bytes() == page  # its own page: replaced


def test_cli_transfer_triptych_names_its_faces(tiny_model, tmp_path, monkeypatch, capsys):
    """triptych.png was the one picture of the latent commands without a caption: three heads
    labelled source/target/transfer, no file named. Its title says whose identity wears whose
    expression."""
    import voxface.viz
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "smile.npz", z_id=np.zeros(16, np.float32), z_exp=np.ones(8, np.float32))
    np.savez(tmp_path / "anna.npz", z_id=np.ones(16, np.float32), z_exp=np.zeros(8, np.float32))
    grids = []
    real = voxface.viz.image_grid
    monkeypatch.setattr(voxface.viz, "image_grid", lambda *a, **k: grids.append(k) or real(*a, **k))
    code, _, err = run_cli(monkeypatch, capsys, "transfer", tmp_path / "smile.npz", tmp_path / "anna.npz", "-o",
                           tmp_path / "t", "--steps", 2, "--size", 32, "-c", ckpt)
    assert code == 0, err
    triptych = [k for k in grids if k.get("labels", [None])[0] == "source (expression)"]
    assert len(triptych) == 1 and triptych[0]["title"] == "anna.npz's identity with smile.npz's expression"


def test_cli_a_run_stopped_part_way_leaves_the_earlier_run_whole(tiny_model, tmp_path, monkeypatch, capsys):
    """A rerun stopped part-way (Ctrl-C while the page was written) had replaced the earlier run's
    meshes, codes, strip and GIF one by one, beside its page and manifest: a folder of two runs.
    Files are written into a hidden folder and moved in at the end: the earlier run's files stay
    byte for byte, and nothing of the stopped run is left."""
    import voxface.html
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    np.savez(tmp_path / "b.npz", z_id=np.ones(16, np.float32), z_exp=np.ones(8, np.float32))
    out = tmp_path / "o"

    def run(b: str, steps: int) -> tuple[int, str]:
        code, _, err = run_cli(monkeypatch, capsys, "interpolate", tmp_path / "a.npz", tmp_path / b, "-o", out,
                               "--steps", steps, "--size", 32, "-c", ckpt)
        return code, err

    assert run("a.npz", 3)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(voxface.html, "save_mesh_page", interrupted)
        code, err = run("b.npz", 2)
    assert code == 130, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no .voxface-partial-* folder either
    assert run("b.npz", 2)[0] == 0  # the rerun finishes the job
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step_")) == ["step_00.ply", "step_01.ply"]


def test_cli_a_killed_runs_hidden_folder_is_removed_by_the_next_run(tiny_model, tmp_path, monkeypatch, capsys):
    """A run killed outright (SIGKILL, a lost machine) left its ``.voxface-partial-*`` folder of
    half a run's files in the output folder for good. The next run removes the folders of runs no
    longer alive, and leaves those of a run still writing there (its process is alive)."""
    import os
    import subprocess
    import sys

    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    out = tmp_path / "o"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = out / f".voxface-partial-{int(gone.stdout)}-x1y2"  # a process that has exited
    alive = out / f".voxface-partial-{os.getppid()}-a3b4"  # a process still running
    other = out / ".voxface-partial-notapid"  # not a name this code writes: left alone
    for d in (dead, alive, other):
        d.mkdir()
        (d / "step_00.ply").write_bytes(b"half a mesh")
    code, _, err = run_cli(monkeypatch, capsys, "interpolate", tmp_path / "a.npz", tmp_path / "a.npz", "-o", out,
                           "--steps", 2, "--size", 32, "-c", ckpt)
    assert code == 0, err
    assert not dead.exists()
    assert (alive / "step_00.ply").read_bytes() == b"half a mesh" and other.is_dir()
    assert sorted(p.name for p in out.glob(".voxface-partial-*")) == sorted([alive.name, other.name])


def test_annotate_directions_refuses_indices_that_are_not_items(model):
    """``indices=[0, 1.7, 2]`` read item 1 (``int()`` truncated it) and an index past the dataset was an
    IndexError deep in its loader; both are one-line errors naming the index, the prior left as it was."""
    from voxface.latent import annotate_directions

    before = {k: v for k, v in model.prior["z_id_pca"].items()}
    items = [None] * 5  # never read: refused before
    with pytest.raises(TypeError, match=r"^indices\[1\] must be an integer, got float 1\.7"):
        annotate_directions(model, items, indices=[0, 1.7, 2])
    with pytest.raises(ValueError, match=r"^indices\[2\] = 9 is past the dataset's 5 items"):
        annotate_directions(model, items, indices=[0, 1, 9])
    with pytest.raises(ValueError, match=r"^indices\[0\] must be at least 0, got -1"):
        annotate_directions(model, items, indices=[-1, 1, 2])
    assert model.prior["z_id_pca"].keys() == before.keys()

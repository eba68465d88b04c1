"""Refinement head and coarse-to-fine (MISE) extraction: analytic references, checkpoints, training.

Analytic tests hold :func:`voxface.refine.mise` against :func:`voxface.refine.dense` on a field
whose fine detail the coarse grid cannot show (a sphere with sub-cell bumps); model tests use a
16^3 toy-sized model and one intra-op thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voxface.checkpoint import load_checkpoint, load_model, save_checkpoint
from voxface.config import RefineConfig
from voxface.errors import VoxfaceError
from voxface.mesh import extract_mesh
from voxface.models import create_model
from voxface.refine import (
    RefineHead,
    RefineTrainConfig,
    add_refine_head,
    dense,
    grid_points_unit,
    logit_iou,
    mise,
    refine_checkpoint,
    refine_logits,
    train_refiner,
)

from .conftest import SMALL_CONFIG as SMALL
from .conftest import TOY_DATA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bumpy_sphere(p: torch.Tensor) -> torch.Tensor:
    """Logits of a sphere (radius 0.55 of the half-cube) with bumps of 0.04: ``(N, 3) -> (N,)``."""
    c = torch.tensor([0.05, -0.1, 0.02])
    bump = 0.04 * torch.sin(9 * p[:, 0]) * torch.sin(9 * p[:, 1]) * torch.sin(9 * p[:, 2])
    return 40.0 * (0.55 - (p - c).norm(dim=-1) + bump)


def _coarse(field, r: int) -> torch.Tensor:
    idx = torch.stack(torch.meshgrid(*(torch.arange(r),) * 3, indexing="ij"), -1).reshape(-1, 3)
    return field(grid_points_unit(idx, r)).view(r, r, r)


def _model(seed: int = 0, refine: bool = True):
    torch.manual_seed(seed)
    m = create_model(SMALL).eval()
    if refine:
        add_refine_head(m, RefineConfig(hidden=16, layers=2, pe_freqs=2))
    return m


def test_grid_points_follow_the_frame_convention():
    from voxface.frame import Grid

    g = Grid(8, 300.0, (0.0, -10.0, 20.0))
    dhw = np.array([[0, 0, 0], [7, 3, 5], [2, 6, 1]])
    want = g.mm_to_unit(g.index_to_mm(dhw))
    got = grid_points_unit(torch.as_tensor(dhw), 8).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_dense_is_every_cell_centre_and_holds_one_chunk_of_indices_at_a_time(monkeypatch):
    """dense's memory is the R^3 result plus a chunk (its docstring): it built all R^3 int64 indices
    first (134 MB at 256^3, twice the result)."""
    R, chunk = 12, 100
    want = _bumpy_sphere(grid_points_unit(torch.stack(torch.meshgrid(*(torch.arange(R),) * 3, indexing="ij"),
                                                      -1).reshape(-1, 3), R)).view(R, R, R)
    sizes = []
    arange = torch.arange

    def counted(*a, **k):
        t = arange(*a, **k)
        sizes.append(t.numel())
        return t

    monkeypatch.setattr(torch, "arange", counted)
    got = dense(_bumpy_sphere, R, chunk=chunk)
    monkeypatch.undo()
    torch.testing.assert_close(got, want)
    assert sizes and max(sizes) <= chunk, sizes


def test_mise_agrees_with_dense_at_128_with_far_fewer_points():
    coarse = _coarse(_bumpy_sphere, 32)
    fine, stats = mise(coarse, _bumpy_sphere, levels=2)
    ref = dense(_bumpy_sphere, 128)
    assert fine.shape == ref.shape == (128, 128, 128)
    assert logit_iou(fine, ref) >= 0.99
    points = sum(s["points"] for s in stats)
    assert points < 128 ** 3 / 8, points
    # the coarse grid alone misses the bumps: refinement is doing something
    tri = F.interpolate(coarse[None, None], size=(128,) * 3, mode="trilinear", align_corners=False)[0, 0]
    assert logit_iou(tri, ref) < logit_iou(fine, ref)


def test_mise_points_grow_with_the_surface_not_the_volume():
    counts = {}
    for r in (16, 32):
        _, stats = mise(_coarse(_bumpy_sphere, r), _bumpy_sphere, levels=2)
        counts[r] = sum(s["points"] for s in stats)
    growth = counts[32] / counts[16]  # resolution x2: surface x4, volume x8
    assert 3.0 < growth < 5.5, counts


def test_mise_without_dilation_is_onet_rule_and_still_close():
    coarse = _coarse(_bumpy_sphere, 32)
    f0, s0 = mise(coarse, _bumpy_sphere, levels=1, dilate=0)
    f1, s1 = mise(coarse, _bumpy_sphere, levels=1, dilate=1)
    assert s0[0]["points"] < s1[0]["points"]
    assert logit_iou(f0, dense(_bumpy_sphere, 64)) > 0.98


@pytest.mark.parametrize("dilate", [0, 1, 2])
def test_active_cubes_are_the_pooled_definition(dilate):
    """The cubes MISE refines, one axis at a time, against their definition through 3D max pooling:
    corners above and at-or-below the level (values *on* it included; past the grid: outside, -1
    here), grown by a (2d+1)^3 box."""
    from voxface.refine import _active_cubes

    torch.manual_seed(dilate)
    for values in (torch.randn(9, 9, 9), torch.round(torch.randn(12, 12, 12)), (torch.rand(7, 7, 7) > 0.9).float()):
        v = F.pad(values[None, None], (1,) * 6, value=-1.0)
        want = (F.max_pool3d(v, 2, stride=1) > 0) & (-F.max_pool3d(-v, 2, stride=1) <= 0)
        if dilate:
            want = F.max_pool3d(want.float(), 2 * dilate + 1, stride=1, padding=dilate) > 0
        got = _active_cubes(values, 0.0, dilate)
        assert got.shape == (values.shape[0] + 1,) * 3 and torch.equal(got, want[0, 0])


def test_mise_refines_where_the_cube_cuts_the_shape():
    """A shape the cube's -x face cuts, ending between the face and the outermost coarse centres
    (x = -0.97; the coarse centres are at -0.9375, the 64^3 grid's outermost at -0.984): the mesh's
    cap there is surface as much as any (marching cubes closes it with the outside padding), and
    MISE must refine it. With the border replicated past the grid those cubes never straddled the
    level, and the whole outermost layer of the fine grid was filled as inside (IoU 0.92 against
    dense); outside the grid counts as outside, as for the mesh."""
    from voxface.refine import _active_cubes

    def cut(p: torch.Tensor) -> torch.Tensor:  # a ball of radius 0.8 about x = -0.5, cut off at x = -0.97
        return 40.0 * torch.minimum(0.8 - (p - torch.tensor([-0.5, 0.0, 0.0])).norm(dim=-1), p[:, 0] + 0.97)

    coarse = _coarse(cut, 16)
    assert (coarse[:, :, 0] > 0).any()  # the coarse grid reaches the face: the cube cuts the shape
    fine, stats = mise(coarse, cut, levels=2)
    ref = dense(cut, 64)
    assert (ref[:, :, 0] > 0).sum() == 0 < (ref[:, :, 1] > 0).sum()  # dense: the shape ends before the face
    assert logit_iou(fine, ref) >= 0.999 and torch.equal(fine > 0, ref > 0)
    # where the shape does not reach the faces, the rule is unchanged: no cube outside the grid is active
    ball = _coarse(_bumpy_sphere, 16)
    act = _active_cubes(ball, 0.0, 0)
    assert not (act[0].any() or act[-1].any() or act[:, 0].any() or act[:, -1].any()
                or act[:, :, 0].any() or act[:, :, -1].any())


@pytest.mark.parametrize("dilate", [0, 1])
def test_mise_keeps_a_thin_part_the_middle_level_falls_between(dilate):
    """A plate 0.06 thick (half-cube units) centred on a 16^3 layer of centres: the 16^3 and 64^3
    grids hold it, the 32^3 one's centres (0.0625 apart, 0.031 from the plate's middle) all fall
    outside it. Levels share no point, so the 16^3 sample inside the plate lies inside a 32^3
    cube whose corners are all outside: MISE dropped the plate at 64^3 (no cube straddled), where
    dense evaluation shows it; that cube is refined as one that straddles."""
    def plate(p: torch.Tensor) -> torch.Tensor:
        return 100.0 * (0.03 - (p[:, 2] - 0.0625).abs())

    assert (_coarse(plate, 16) > 0).any() and not (dense(plate, 32) > 0).any()
    ref = dense(plate, 64)
    fine, stats = mise(_coarse(plate, 16), plate, levels=2, dilate=dilate)
    assert (ref > 0).sum() == 2 * 64 * 64 and torch.equal(fine > 0, ref > 0)
    # the reverse: a thin gap in a solid, seen by the coarse grid, that the middle level falls between
    gap = lambda p: -plate(p)  # noqa: E731
    fine, _ = mise(_coarse(gap, 16), gap, levels=2, dilate=dilate)
    assert torch.equal(fine > 0, dense(gap, 64) > 0)
    # a smooth surface's refined points are those of the straddling rule alone (the hidden cubes are rare)
    from voxface.refine import _hidden_cubes

    c32 = _coarse(_bumpy_sphere, 32)
    f64, _ = mise(c32, _bumpy_sphere, levels=1, dilate=dilate)
    assert not _hidden_cubes(c32 > 0, f64 > 0).any()


def test_mise_rejects_non_cubes():
    with pytest.raises(VoxfaceError):
        mise(torch.zeros(4, 4, 5), _bumpy_sphere, levels=1)
    with pytest.raises(VoxfaceError, match=r"cubic .* got \(0, 0, 0\)"):  # was torch's RuntimeError
        mise(torch.zeros(0, 0, 0), _bumpy_sphere, levels=1)
    with pytest.raises(TypeError, match="array of numbers"):
        mise(np.full((4, 4, 4), "a"), _bumpy_sphere, levels=1)


def test_mise_takes_a_numpy_grid_as_it_takes_a_tensor():
    """RefineResult.logits and extract_mesh's grids are numpy: mise(array) was AttributeError: no 'dim'."""
    coarse = _coarse(_bumpy_sphere, 16)
    a, sa = mise(coarse.numpy().astype(np.float64), _bumpy_sphere, levels=1)
    b, sb = mise(coarse, _bumpy_sphere, levels=1)
    assert isinstance(a, torch.Tensor) and torch.equal(a, b) and sa[0]["points"] == sb[0]["points"]


def test_logit_iou_refuses_grids_of_different_shapes():
    """(8, 8, 8) against (8, 8, 1) was broadcast by numpy into a wrong IoU (0.43 for a grid against its own
    first slice); (8, 8, 8) against (4, 4, 4) a raw broadcasting ValueError."""
    from voxface.errors import InputError

    a = _coarse(_bumpy_sphere, 8)
    assert logit_iou(a, a.clone()) == 1.0 and logit_iou(a.numpy(), a) == 1.0
    for b in (a[:, :, :1], a[:4, :4, :4], a[None]):
        with pytest.raises(InputError, match=r"same shape, got \(8, 8, 8\) and"):
            logit_iou(a, b)


def test_untrained_head_is_trilinear_upsampling():
    m = _model()
    z_id, z_exp = torch.randn(1, 8), torch.randn(1, 4)
    with torch.no_grad():
        coarse = m.decode(z_id, z_exp)
    tri = F.interpolate(coarse, size=(32,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()
    d = refine_logits(m, z_id, z_exp, resolution=32, method="dense")[0]
    mi = refine_logits(m, z_id, z_exp, resolution=32, method="mise")[0]
    np.testing.assert_allclose(d.logits, tri, atol=1e-4)
    np.testing.assert_allclose(mi.logits, tri, atol=1e-4)
    assert d.head and d.grid.resolution == 32 and d.grid.side_mm == m.grid.side_mm


def test_head_shapes_and_periodic_encoding():
    head = RefineHead(RefineConfig(hidden=8, layers=1, pe_freqs=3), feature_channels=5, feature_resolution=4)
    feats, coarse = torch.randn(2, 5, 4, 4, 4), torch.randn(2, 1, 8, 8, 8)
    pts = torch.rand(2, 7, 3) * 2 - 1
    assert head(feats, coarse, pts).shape == (2, 7)
    # one feature cell apart (2 / 4 in unit coordinates): the same encoding
    e = head.encode_points(torch.tensor([[-0.6, 0.1, 0.3]]))
    e2 = head.encode_points(torch.tensor([[-0.1, 0.6, -0.2]]))
    assert e.shape == (1, 18) and torch.allclose(e, e2, atol=1e-5)


def test_real_head_on_a_clean_field_mise_matches_dense_and_meshes():
    from voxface.frame import Grid

    torch.manual_seed(1)
    head = RefineHead(RefineConfig(hidden=16, layers=2, pe_freqs=2), feature_channels=16, feature_resolution=8).eval()
    with torch.no_grad():  # a "trained" head: moves the coarse field by up to a logit or two
        head.mlp[-1].weight.normal_(0, 0.3)
    feats = torch.randn(1, 16, 8, 8, 8)
    coarse = _coarse(_bumpy_sphere, 16)[None, None]

    def ev(p):
        with torch.no_grad():
            return head(feats, coarse, p[None])[0]

    fine, stats = mise(coarse[0, 0], ev, levels=2)
    ref = dense(ev, 64)
    assert [s["resolution"] for s in stats] == [32, 64]
    assert sum(s["points"] for s in stats) < 64 ** 3 / 3
    assert logit_iou(fine, ref) >= 0.99
    assert not torch.allclose(fine, F.interpolate(coarse, size=(64,) * 3, mode="trilinear", align_corners=False)[0, 0])
    mesh = extract_mesh(fine.numpy(), Grid(64, 300.0, (0.0, -10.0, 20.0))).mesh
    assert mesh.is_watertight and mesh.volume > 0


def test_no_head_falls_back_to_trilinear_and_bad_resolutions_fail():
    m = _model(refine=False)
    r = refine_logits(m, torch.zeros(1, 8), torch.zeros(1, 4), resolution=32)[0]
    assert not r.head and r.logits.shape == (32, 32, 32)
    for bad in (16, 24, 48):
        with pytest.raises(VoxfaceError):
            refine_logits(m, torch.zeros(1, 8), torch.zeros(1, 4), resolution=bad)
    with pytest.raises(VoxfaceError):
        refine_logits(m, torch.zeros(1, 8), torch.zeros(1, 4), method="octree")


def test_refine_logits_checks_and_casts_codes_as_decode_does():
    """The finer grid takes the codes the model's grid takes and refuses what it refuses: float64 and
    numpy codes are cast (the same logits), a wrong shape and NaN are InputErrors (they were raw
    RuntimeErrors, or NaN logits), an empty batch gives no results (it crashed); resolution=0 is not
    the default grid."""
    from voxface.errors import InputError
    from voxface.reconstruct import decode_at

    m = _model()
    z = torch.randn(2, 8), torch.randn(2, 4)
    ref = refine_logits(m, *z, resolution=32)
    for cast in ((z[0].double(), z[1].double()), (z[0].numpy(), z[1].numpy())):
        got = refine_logits(m, *cast, resolution=32)
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    for bad in ((torch.zeros(1, 7), torch.zeros(1, 4)), (torch.full((1, 8), float("nan")), torch.zeros(1, 4))):
        with pytest.raises(InputError, match="z_id"):
            refine_logits(m, *bad, resolution=32)
        with pytest.raises(InputError, match="z_id"):
            decode_at(m, *bad, 32)
    assert refine_logits(m, torch.zeros(0, 8), torch.zeros(0, 4), resolution=32) == []
    logits, grid, info = decode_at(m, torch.zeros(0, 8), torch.zeros(0, 4), 32, upsample="head")
    assert logits == [] and grid.resolution == 32 and grid.side_mm == m.grid.side_mm and info["points"] == 0
    with pytest.raises(InputError, match="resolution 0"):
        refine_logits(m, *z, resolution=0)


def test_head_round_trips_through_a_checkpoint(tmp_path):
    plain = _model(refine=False)
    p0 = save_checkpoint(tmp_path / "plain.pth.tar", plain)
    assert load_model(p0, device="cpu").refiner is None  # checkpoints without a head load as before
    m = _model()
    with torch.no_grad():
        m.refiner.mlp[-1].weight.normal_(0, 0.1)
    p = save_checkpoint(tmp_path / "m.pth.tar", m)
    ck = load_checkpoint(p)
    assert ck["config"]["refine"] == {"hidden": 16, "layers": 2, "pe_freqs": 2}
    assert any(k.startswith("refiner.") for k in ck["state_dict"])
    m2 = load_model(p, device="cpu")  # strict
    z = torch.randn(1, 8), torch.randn(1, 4)
    a = refine_logits(m, *z, resolution=32)[0].logits
    b = refine_logits(m2, *z, resolution=32)[0].logits
    np.testing.assert_array_equal(a, b)


def test_train_refiner_freezes_the_rest_and_logs():
    m = _model(refine=False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = RefineTrainConfig(steps=3, batch_size=4, points=128, resolution=32, num_val=2, log_every=2)
    records = []
    res = train_refiner(m, TOY_DATA, cfg, head=RefineConfig(hidden=8, layers=1, pe_freqs=2), log=records.append)
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert m.refiner is not None and m.config.refine.hidden == 8
    assert any(p.abs().sum() > 0 for p in m.refiner.mlp[-1].parameters())  # the head moved
    assert [r["step"] for r in res.history] == [2, 3]
    assert all(math.isfinite(r["loss"]) and 0 <= r["acc_head"] <= 1 for r in res.history)
    assert set(res.val) >= {"iou_head", "iou_trilinear", "iou_coarse"} and res.val["num_val"] == 2
    assert records[-1]["event"] == "val"
    assert not m.training  # as it was
    assert all(p.requires_grad for p in m.encoder.parameters())  # flags restored


def test_train_refiner_builds_its_validation_faces_before_training(monkeypatch, capsys):
    """A validation split the data cannot give (toy num_val 3) was a ConfigError only once every step
    had run, the training lost; data without validation items (num_val 0, the project's "no
    validation") gave NaN IoUs, which refine-train printed as JSON's invalid NaN."""
    import voxface.refine as refine_mod
    from voxface.errors import ConfigError

    cfg = RefineTrainConfig(steps=2, batch_size=2, points=64, resolution=32, num_val=2, log_every=1)
    steps = []
    real = refine_mod._band_points
    monkeypatch.setattr(refine_mod, "_band_points", lambda *a: steps.append(1) or real(*a))
    m = _model(refine=False)
    with pytest.raises(ConfigError, match="num_val 3"):
        train_refiner(m, dict(TOY_DATA, num_val=3), cfg, head=RefineConfig(hidden=8, layers=1, pe_freqs=2))
    assert steps == [] and m.refiner is None  # refused before any step, the model as it was
    records = []
    res = train_refiner(m, dict(TOY_DATA, num_val=0), cfg, head=RefineConfig(hidden=8, layers=1, pe_freqs=2),
                        log=records.append)
    assert res.val == {} and [r["step"] for r in res.history] == [1, 2] and steps
    assert not any(r.get("event") == "val" for r in records)
    err = capsys.readouterr().err
    assert "warning: refine: the data has no validation items (data.num_val 0)" in err


def _roughness(m, n: int = 4096, step_mm: float = 3.0) -> float:
    """Mean squared change of the head's correction over ``step_mm`` at random points of random faces."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        z = torch.randn(4, m.config.encoder.z_id + m.config.encoder.z_exp, generator=gen)
        feats = m.decoder.features(z)
        coarse = m.decoder.logits_from_features(feats).float()
        p = torch.rand(4, n, 3, generator=gen) * 1.8 - 0.9
        u = torch.randn(4, n, 3, generator=gen)
        u = u / u.norm(dim=-1, keepdim=True) * (step_mm * 2 / m.grid.side_mm)
        _, d0 = m.refiner.correction(feats, coarse, p)
        _, d1 = m.refiner.correction(feats, coarse, p + u)
    return float(((d1 - d0) ** 2).mean())


def test_train_refiner_shows_the_validation_on_its_progress_bar(capsys):
    """The final validation (exact occupancy and an extraction per face: seconds a face at 256^3, a
    minute or more for --num-val 16) has its own bar; without progress nothing is written."""
    cfg = RefineTrainConfig(steps=1, batch_size=2, points=64, resolution=32, num_val=2)
    train_refiner(_model(refine=False), TOY_DATA, cfg, progress=True)
    err = capsys.readouterr().err
    assert "refine-train validation (32^3)" in err and "2/2" in err, err
    train_refiner(_model(refine=False), TOY_DATA, cfg, progress=False)
    assert "validation" not in capsys.readouterr().err


def test_smoothness_term_damps_the_heads_correction_and_is_logged():
    """``smooth``: the same training (same seed, data, steps) with the term weighted ends with a
    correction that changes less between nearby points, and logs the term; without it nothing is
    drawn for it, so a run with ``smooth=0`` is the run of a config that predates the term."""
    head = RefineConfig(hidden=16, layers=1, pe_freqs=4)
    rough = {}
    for w in (0.0, 10.0):
        m = _model(refine=False)
        cfg = RefineTrainConfig(steps=30, batch_size=4, points=256, lr=1e-2, resolution=0, num_val=0, log_every=10,
                                smooth=w, smooth_mm=3.0)
        res = train_refiner(m, TOY_DATA, cfg, head=head)
        assert ("smooth" in res.history[-1]) == (w > 0)
        assert all(math.isfinite(r["loss"]) for r in res.history)
        rough[w] = _roughness(m)
    assert rough[10.0] < 0.25 * rough[0.0], rough  # measured: 0.0007 against 0.012
    # the correction is what forward adds to the trilinear logits
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        feats = m.decoder.features(torch.randn(2, 12, generator=gen))
        coarse = m.decoder.logits_from_features(feats).float()
        pts = torch.rand(2, 64, 3, generator=gen) * 2 - 1
        c, d = m.refiner.correction(feats, coarse, pts)
        torch.testing.assert_close(m.refiner(feats, coarse, pts), (c + d).float())


def test_shrink_keeps_the_head_near_trilinear_upsampling():
    """``shrink``: the same training with the correction's squared size weighted ends with a head
    much closer to trilinear upsampling (a smaller correction) than without."""
    head = RefineConfig(hidden=16, layers=1, pe_freqs=2)
    size = {}
    for w in (0.0, 1.0):
        m = _model(refine=False)
        train_refiner(m, TOY_DATA, RefineTrainConfig(steps=30, batch_size=4, points=256, lr=1e-2, resolution=0,
                                                     num_val=0, shrink=w), head=head)
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            feats = m.decoder.features(torch.randn(4, 12, generator=gen))
            coarse = m.decoder.logits_from_features(feats).float()
            _, d = m.refiner.correction(feats, coarse, torch.rand(4, 2048, 3, generator=gen) * 2 - 1)
        size[w] = float((d ** 2).mean())
    assert size[1.0] < 0.2 * size[0.0], size  # measured: 0.014 against 0.31


def test_smoothness_steps_run_along_the_level_sets_of_the_coarse_logits():
    """The smoothness term's steps are perpendicular to the coarse field's gradient: on a field that
    grows along x (planes x = const are its level sets) they have no x component, and their length."""
    from voxface.refine import _tangent_steps

    r = 16
    x = (torch.arange(r, dtype=torch.float32) + 0.5) / r * 2 - 1  # cell centres in [-1, 1]
    coarse = (3.0 * x).view(1, 1, 1, 1, r).expand(2, 1, r, r, r).contiguous()  # (B, 1, D, H, W): W is x
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(2, 500, 3, generator=gen) * 1.6 - 0.8
    u = _tangent_steps(coarse, pts, torch.randn(2, 500, 3, generator=gen), 0.01)
    assert u[..., 0].abs().max() < 1e-6
    torch.testing.assert_close(u.norm(dim=-1), torch.full((2, 500), 0.01))
    # a field growing along y: steps keep x and z only
    coarse_y = (3.0 * x).view(1, 1, 1, r, 1).expand(1, 1, r, r, r).contiguous()
    assert _tangent_steps(coarse_y, pts[:1], torch.randn(1, 500, 3, generator=gen), 0.01)[..., 1].abs().max() < 1e-6


def test_refine_checkpoint_and_cli(tmp_path, monkeypatch, capsys):
    import json
    import sys

    import voxface.cli

    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False), step=7, loss_history=[{"step": 7, "total": 1.0}],
                          extra={"grad_scaler": {"scale": 1024.0}, "data_position": 56, "note": "kept"})
    cfg = RefineTrainConfig(steps=2, batch_size=4, points=64, resolution=0, num_val=0)
    out, res = refine_checkpoint(src, tmp_path / "out.pth.tar", TOY_DATA, cfg, device="cpu")
    ck = load_checkpoint(out)
    assert ck["step"] == 7 and len(ck["loss_history"]) == 1
    # the trainer's resume entries go (no run resumes from a refined checkpoint); the rest of extra stays
    assert ck["extra"]["note"] == "kept" and not {"grad_scaler", "data_position"} & set(ck["extra"])
    assert ck["extra"]["refine_train"]["config"]["steps"] == 2
    assert "previous" not in ck["extra"]["refine_train"]
    assert load_model(out, device="cpu").refiner is not None
    # a head that goes on training keeps the record it came with; a fresh one starts a new history
    again, _ = refine_checkpoint(out, tmp_path / "again.pth.tar", TOY_DATA, RefineTrainConfig(
        steps=1, batch_size=4, points=64, resolution=0, num_val=0), device="cpu")
    rt = load_checkpoint(again)["extra"]["refine_train"]
    assert rt["config"]["steps"] == 1 and rt["source"] == str(out) and rt["fresh"] is False
    assert rt["previous"]["config"]["steps"] == 2 and rt["previous"]["source"] == str(src)
    fresh, _ = refine_checkpoint(again, tmp_path / "fresh.pth.tar", TOY_DATA, cfg, device="cpu", fresh=True)
    assert "previous" not in load_checkpoint(fresh)["extra"]["refine_train"]

    yml = tmp_path / "data.yaml"
    yml.write_text(json.dumps({"data": TOY_DATA}))  # JSON is YAML
    monkeypatch.setattr(sys, "argv", ["voxface", "refine-train", "-c", str(src), "-o", str(tmp_path / "cli.pth.tar"),
                                      "--config", str(yml), "--steps", "1", "--batch-size", "4", "--points", "32",
                                      "--resolution", "0", "--hidden", "8", "--pe-freqs", "2", "--no-progress"])
    try:
        voxface.cli.main()
    except SystemExit as e:
        assert e.code in (0, None)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line)["checkpoint"].endswith("cli.pth.tar")
    head = load_model(tmp_path / "cli.pth.tar", device="cpu").config.refine
    assert head.hidden == 8 and head.pe_freqs == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["--resolution", "100"], "--resolution 100 does not fit its 16^3 model: use its resolution times 2, 4, 8"),
        (["--resolution", "16"], "--resolution 16 does not fit its 16^3 model"),
        (["--resolution", "-32"], "--resolution -32 does not fit"),
        (["--lr", "-1"], "--lr must be a positive, finite learning rate, not -1.0"),
        (["--lr", "0"], "--lr must be a positive"),
        (["--lr", "nan"], "--lr must be a positive, finite learning rate, not nan"),
        (["--lr", "inf"], "not inf"),
        (["--steps", "0"], "--steps must be at least 1, not 0"),
        (["--smooth", "-0.1"], "--smooth must be a finite weight >= 0, not -0.1"),
        (["--smooth", "nan"], "--smooth must be a finite weight >= 0, not nan"),
        (["--smooth-mm", "0"], "--smooth-mm must be a positive, finite distance in mm, not 0.0"),
        (["--shrink", "-1"], "--shrink must be a finite weight >= 0, not -1.0"),
        (["--seed", str(2**64)], f"--seed must be a whole number from 0 to {2**64 - 1}, not {2**64}"),
        (["--seed", "-1"], f"--seed must be a whole number from 0 to {2**64 - 1}, not -1"),
        (["--threads", "99999"], "--threads 99999 must be from 0 (torch's default) to the"),  # torch segfaulted
        (["--latents", "both", "--batch-size", "1"], "--latents both takes half of each batch each way: "
         "--batch-size must be at least 2, not 1"),  # trained on the true coefficients only, silently
    ],
    ids=["resolution-100", "resolution-R", "resolution-negative", "lr-negative", "lr-zero", "lr-nan", "lr-inf",
         "steps-0", "smooth-negative", "smooth-nan", "smooth-mm-0", "shrink-negative", "seed-past-2**64",
         "seed-negative", "threads-past-the-cores", "both-with-one-face"],
)
def test_refine_train_refuses_bad_options_before_training(tmp_path, monkeypatch, capsys, args, words):
    """A validation resolution the head cannot extract at (not the model's R times 2, 4, ...), a learning
    rate that is not positive and finite, or no step at all: one line naming the option (and, for the
    resolution, the checkpoint), exit 1, before any training; an earlier output stays as it was."""
    import voxface.refine
    from .conftest import run_cli

    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False))
    out = tmp_path / "out.pth.tar"
    out.write_bytes(b"an earlier head")
    monkeypatch.setattr(voxface.refine, "train_refiner", lambda *a, **k: pytest.fail("training started"))
    code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, "--steps", "1",
                                "--no-progress", *args)
    assert code == 1 and "Traceback" not in stdout + err, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    if args[0] == "--resolution":
        assert lines[0].startswith(f"error: {src}: ") and "or 0 for no validation" in lines[0]
    assert out.read_bytes() == b"an earlier head"


def test_refine_library_refuses_the_same_settings_before_training(tmp_path):
    """train_refiner / refine_checkpoint check steps, lr and the validation resolution up front
    (ConfigError; refine_checkpoint names the checkpoint, whose model fixes the resolutions)."""
    from voxface.errors import ConfigError

    head = RefineConfig(hidden=8, layers=1, pe_freqs=1)
    for cfg, words in ((RefineTrainConfig(steps=0), "steps 0"), (RefineTrainConfig(lr=float("nan")), "lr nan"),
                       (RefineTrainConfig(lr=-1.0), "lr -1.0"), (RefineTrainConfig(resolution=24), "resolution 24"),
                       (RefineTrainConfig(smooth=-1.0), "smooth -1.0"),
                       (RefineTrainConfig(smooth_mm=float("inf")), "smooth_mm inf"),
                       (RefineTrainConfig(shrink=float("nan")), "shrink nan"),
                       (RefineTrainConfig(seed=2**64), f"seed {2**64} must be"),
                       (RefineTrainConfig(seed=-1), "seed -1 must be"),
                       (RefineTrainConfig(threads=10**5), "threads 100000 must be from 0"),
                       # a raw ZeroDivisionError at the first log, numpy's "need at least one array to stack",
                       # a head trained on a NaN loss (NaN weights), torch's "negative dimension -9", in the first step
                       (RefineTrainConfig(log_every=0), "log_every 0 must be at least 1"),
                       (RefineTrainConfig(batch_size=0), "batch_size 0 must be at least 1"),
                       (RefineTrainConfig(points=0), "points 0 must be at least 1"),
                       (RefineTrainConfig(num_val=-1), "num_val -1 must be at least 0"),
                       (RefineTrainConfig(surface_share=0.8, predicted_share=0.5), "add up to at most 1"),
                       (RefineTrainConfig(predicted_share=-0.1), "must each lie in"),
                       # one face a step: "both" trained on the true coefficients only, silently
                       (RefineTrainConfig(latents="both", batch_size=1), "batch_size 1 must be at least 2")):
        m = _model(refine=False)
        with pytest.raises(ConfigError, match=words):
            train_refiner(m, TOY_DATA, cfg, head=head)
        assert m.refiner is None  # refused before a head was added
    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False))
    with pytest.raises(ConfigError) as ei:
        refine_checkpoint(src, tmp_path / "out.pth.tar", TOY_DATA, RefineTrainConfig(resolution=100), device="cpu")
    assert str(ei.value).startswith(f"{src}: ") and "32, 64, 128, ..." in str(ei.value)
    assert not (tmp_path / "out.pth.tar").exists()
    # the resolutions the message offers are the ones the check accepts (test_train_refiner_freezes_the_rest_and_logs
    # validates at 32 on this 16^3 model)
    from voxface.refine import check_refine_train_config

    for ok in (0, 32, 64, 128):
        check_refine_train_config(RefineTrainConfig(resolution=ok), 16)
    for bad in (16, 24, 48, 100, -32):
        with pytest.raises(ConfigError):
            check_refine_train_config(RefineTrainConfig(resolution=bad), 16)
    # 1024^3 (4 GB a grid) was accepted and ran out of memory after the training: at most 256, before it
    check_refine_train_config(RefineTrainConfig(resolution=256), 64)
    for big in (512, 1024):
        with pytest.raises(ConfigError, match=rf"^refine: the validation resolution {big} must be at most 256, "):
            check_refine_train_config(RefineTrainConfig(resolution=big), 64)


_QUICK = ("--steps", "1", "--batch-size", "4", "--points", "32", "--resolution", "0", "--num-val", "0",
          "--no-progress")


def _training_checkpoint(path):
    """A checkpoint like a run's last.pth.tar: weights plus resume state (optimizer, scheduler, RNG)."""
    m = _model(refine=False)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    return save_checkpoint(path, m, opt, step=3, scheduler=sched, rng_state={"torch": torch.get_rng_state()},
                           extra={"run_config": {"data": TOY_DATA}})


def test_refine_train_into_its_own_training_checkpoint_is_refused(tmp_path, monkeypatch, capsys):
    """``refine-train -c RUN/last.pth.tar -o RUN/last.pth.tar`` (the same file under any name: the path,
    another spelling of it, a symbolic link) would replace the training checkpoint with one without its
    optimizer, scheduler and RNG state, so the run could no longer be resumed: refused in one line naming
    it, before any training, the file byte-identical (as `release X -o X`). A checkpoint without resume
    state may be refined in place."""
    import os

    import voxface.refine
    from voxface.errors import CheckpointError

    from .conftest import run_cli

    run = tmp_path / "run"
    last = _training_checkpoint(run / "last.pth.tar")
    before = last.read_bytes()
    (run / "link.pth.tar").symlink_to("last.pth.tar")
    real_train = voxface.refine.train_refiner
    monkeypatch.setattr(voxface.refine, "train_refiner", lambda *a, **k: pytest.fail("training started"))
    for out in (last, run / "link.pth.tar", tmp_path / "run" / ".." / "run" / "last.pth.tar"):
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", last, "-o", out, *_QUICK)
        assert code == 1 and "Traceback" not in stdout + err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {last}: the output is this checkpoint itself"), err
        assert "lose its resume state (optimizer, scheduler, RNG); write it to another file" in lines[0], err
        assert last.read_bytes() == before and os.path.islink(run / "link.pth.tar")
    with pytest.raises(CheckpointError, match="lose its resume state") as ei:
        refine_checkpoint(last, os.path.relpath(last), TOY_DATA, RefineTrainConfig(steps=1), device="cpu")
    assert str(ei.value).startswith(f"{last}: ")
    assert last.read_bytes() == before
    # still a checkpoint training resumes from
    ck = load_checkpoint(last)
    assert all(ck[k] is not None for k in ("optimizer", "scheduler", "rng")) and ck["step"] == 3
    # another file is fine, and so is refining in place a checkpoint that holds no resume state
    monkeypatch.setattr(voxface.refine, "train_refiner", real_train)
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", last, "-o", run / "refined.pth.tar", *_QUICK)
    assert code == 0, err
    refined = run / "refined.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", refined, "-o", refined, *_QUICK)
    assert code == 0, err
    assert load_checkpoint(refined)["extra"]["refine_train"]["previous"]["source"] == str(last)


def test_an_existing_head_goes_on_training_with_its_own_config(tmp_path, monkeypatch, capsys):
    """A head trained with other than the default options (hidden 16, pe_freqs 2 here) goes on training when
    no head option is given; a head option that differs from the head's is refused in one line naming the
    checkpoint and the option (before any training, nothing written); an equal one is fine; with --fresh
    the options given replace the old head's, the others kept."""
    import voxface.refine
    from voxface.errors import ConfigError

    from .conftest import run_cli

    src = save_checkpoint(tmp_path / "head.pth.tar", _model(), extra={"run_config": {"data": TOY_DATA}})
    assert load_checkpoint(src)["config"]["refine"] == {"hidden": 16, "layers": 2, "pe_freqs": 2}

    def head_of(path):
        return load_checkpoint(path)["config"]["refine"]

    out = tmp_path / "on.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, *_QUICK)
    assert code == 0, err
    assert head_of(out) == {"hidden": 16, "layers": 2, "pe_freqs": 2}
    assert load_checkpoint(out)["extra"]["refine_train"]["fresh"] is False
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", tmp_path / "same.pth.tar",
                           "--hidden", "16", "--pe-freqs", "2", *_QUICK)  # the head's own values
    assert code == 0, err
    assert head_of(tmp_path / "same.pth.tar") == {"hidden": 16, "layers": 2, "pe_freqs": 2}

    monkeypatch.setattr(voxface.refine, "train_refiner", lambda *a, **k: pytest.fail("training started"))
    refused = tmp_path / "refused.pth.tar"
    for args, words in ((["--pe-freqs", "4"], "--pe-freqs 2 (not 4)"),
                        (["--hidden", "32", "--layers", "2"], "--hidden 16 (not 32):"),
                        (["--hidden", "64", "--layers", "3", "--pe-freqs", "4"],
                         "--hidden 16 (not 64), --layers 2 (not 3), --pe-freqs 2 (not 4)")):
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", refused, *args, *_QUICK)
        lines = err.strip().splitlines()
        assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
        assert lines[0].startswith(f"error: {src}: its refinement head has {words}"), err
        assert "--fresh" in lines[0] and not refused.exists()
    with pytest.raises(ConfigError) as ei:  # the library names the checkpoint and the fields too
        refine_checkpoint(src, refused, TOY_DATA, RefineTrainConfig(steps=1),
                          head=RefineConfig(hidden=16, layers=2, pe_freqs=4), device="cpu")
    assert str(ei.value).startswith(f"{src}: already has a refinement head with pe_freqs 2 (not 4)")
    assert not refused.exists()
    with pytest.raises(VoxfaceError, match=r"hidden 16 \(not 8\)"):
        train_refiner(_model(), TOY_DATA, RefineTrainConfig(steps=1), head=RefineConfig(hidden=8, pe_freqs=2))

    monkeypatch.undo()
    fresh = tmp_path / "fresh.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", fresh, "--fresh", "--hidden", "8",
                           *_QUICK)
    assert code == 0, err
    assert head_of(fresh) == {"hidden": 8, "layers": 2, "pe_freqs": 2}
    assert load_checkpoint(fresh)["extra"]["refine_train"]["fresh"] is True
    # a checkpoint without a head: the defaults, with the options given
    plain = save_checkpoint(tmp_path / "plain.pth.tar", _model(refine=False))
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", plain, "-o", tmp_path / "new.pth.tar",
                           "--config", _data_yaml(tmp_path), "--layers", "1", *_QUICK)
    assert code == 0, err
    assert head_of(tmp_path / "new.pth.tar") == {"hidden": 64, "layers": 1, "pe_freqs": 4}


def _data_yaml(tmp_path, data=TOY_DATA):
    import json

    yml = tmp_path / f"data-{data['kind']}.yaml"
    yml.write_text(json.dumps({"data": data}))  # JSON is YAML
    return yml


def test_refine_train_on_data_without_exact_geometry_names_the_file(tmp_path, monkeypatch, capsys):
    """Real-data folders have no exact geometry to label the head's points: refused before any training,
    in one line that starts with the file the data: section came from (--config, else the checkpoint,
    whose run trained on it, with a pointer to --config); the library refuses before adding a head."""
    import voxface.refine
    from voxface.errors import ConfigError

    from .conftest import run_cli

    folder = {"kind": "folder", "path": str(tmp_path / "photos")}
    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False), extra={"run_config": {"data": folder}})
    out = tmp_path / "out.pth.tar"
    monkeypatch.setattr(voxface.refine, "train_refiner", lambda *a, **k: pytest.fail("training started"))
    yml = _data_yaml(tmp_path, folder)
    for args, where in ((["--config", yml], yml), ([], src)):
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, *args, *_QUICK)
        lines = err.strip().splitlines()
        assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
        assert lines[0].startswith(f"error: {where}: refinement training needs exact geometry; data.kind 'folder' "
                                   "has none (use toy, synthetic or cache)"), err
        assert ("pass --config" in lines[0]) == (where == src), err
        assert not out.exists()
    monkeypatch.undo()
    m = _model(refine=False)
    with pytest.raises(ConfigError, match="data.kind 'folder' has none"):
        train_refiner(m, folder, RefineTrainConfig(steps=1))
    assert m.refiner is None


def test_train_refiner_on_true_coefficients_never_reads_the_images_and_fresh_replaces_the_head(monkeypatch):
    """``latents="true"``: the frozen decoder decodes each item's own coefficients, so the images
    (and the encoder) play no part: the head trained is the same whatever the encoder's weights.
    ``fresh`` replaces an existing head; without it the head goes on training. Codes that are not
    the data's coefficients are refused."""
    import copy

    toy = {"encoder": {**SMALL["encoder"], "z_id": 4, "z_exp": 3}}  # the toy data's coefficient sizes
    cfg = RefineTrainConfig(steps=2, batch_size=4, points=64, resolution=0, num_val=0, latents="true")
    head = RefineConfig(hidden=8, layers=1, pe_freqs=1)
    heads = []
    for scramble in (False, True):
        torch.manual_seed(0)
        m = create_model({**SMALL, **toy}).eval()
        if scramble:
            with torch.no_grad():
                for p in m.encoder.parameters():
                    p.add_(torch.randn_like(p))
        monkeypatch.setattr(m, "encode", lambda *a, **k: pytest.fail("encoded an image"))
        torch.manual_seed(1)  # the head's initialisation
        train_refiner(m, TOY_DATA, cfg, head=head)
        heads.append(copy.deepcopy(m.refiner.state_dict()))
    assert heads[0].keys() == heads[1].keys()
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    trained = m.refiner
    train_refiner(m, TOY_DATA, cfg)  # goes on: the same module
    assert m.refiner is trained
    train_refiner(m, TOY_DATA, cfg, fresh=True)  # a new head with the old one's config
    assert m.refiner is not trained and m.config.refine == head
    with pytest.raises(VoxfaceError, match="coefficients"):
        train_refiner(_model(refine=False), TOY_DATA, cfg, head=head)  # z_id 8 / z_exp 4 against 4 / 3
    with pytest.raises(VoxfaceError, match="latents"):
        train_refiner(_model(refine=False), TOY_DATA, RefineTrainConfig(steps=1, latents="guess"), head=head)
    # "both": half of each batch on the coefficients, half on the encoder's codes
    from voxface.refine import _decoder_input
    from voxface.data import build_dataset

    torch.manual_seed(0)
    m = create_model({**SMALL, **toy}).eval()
    items = [build_dataset(TOY_DATA, "train", m.config)[i] for i in range(4)]
    with torch.no_grad():
        z = _decoder_input(m, items, "both")
        np.testing.assert_array_equal(z[:2].numpy(), _decoder_input(m, items[:2], "true").numpy())
        torch.testing.assert_close(z[2:], _decoder_input(m, items[2:], "encoder"))


def test_refine_train_on_another_projects_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    """A First Order Motion Model-style file (generator, kp_detector...): one line saying it is not a
    voxface checkpoint, not a hint to pass --config that leads nowhere."""
    import torch

    from .conftest import run_cli

    fomm = tmp_path / "fomm.pth.tar"
    torch.save({"generator": {"w": torch.zeros(2)}, "kp_detector": {"w": torch.zeros(2)}, "epoch": 3}, fomm)
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", fomm, "-o", tmp_path / "x.pth.tar")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {fomm}: ") and "--config" not in err and "voxface" in err, err
    assert not (tmp_path / "x.pth.tar").exists()


def test_a_head_config_no_head_can_have_leaves_the_model_as_it_was(tmp_path):
    """``hidden``/``layers`` below 1 or ``pe_freqs`` below 0 are a ConfigError naming the key (a plain
    ValueError before); the model keeps its head and config: ``fresh`` dropped the old head and
    ``add_refine_head`` recorded the bad config first, so a checkpoint saved afterwards did not load."""
    from voxface.errors import ConfigError

    m = _model()
    old, old_cfg = m.refiner, m.config.refine
    cfg = RefineTrainConfig(steps=1, batch_size=2, points=16, resolution=0, num_val=0)
    for bad, words in ((RefineConfig(hidden=0), "model.refine.hidden must be at least 1, got 0"),
                       (RefineConfig(layers=-1), "model.refine.layers must be at least 1, got -1"),
                       (RefineConfig(pe_freqs=-2), "model.refine.pe_freqs must be at least 0, got -2")):
        with pytest.raises(ConfigError, match=words):
            train_refiner(m, TOY_DATA, cfg, head=bad, fresh=True)
        with pytest.raises(ConfigError, match=words):
            add_refine_head(m, bad)
        assert m.refiner is old and m.config.refine == old_cfg
    plain = _model(refine=False)
    with pytest.raises(ConfigError):
        add_refine_head(plain, RefineConfig(hidden=0))
    assert plain.refiner is None and plain.config.refine is None
    assert load_model(save_checkpoint(tmp_path / "m.pth.tar", m), device="cpu").config.refine == old_cfg


def test_extraction_options_are_checked_not_truncated():
    """``dilate=-1`` ran as 0 and ``1.5`` as 1, ``chunk=0`` evaluated one point a call (hundreds of
    thousands of calls), ``levels=-1`` gave the coarse grid back, ``threshold="0.5"`` failed in
    ``math.log``; an unknown ``upsample`` or a non-cube was a bare VoxfaceError: InputError (a
    ValueError) or InputTypeError (a TypeError) each, naming the argument."""
    from voxface.errors import InputError, InputTypeError
    from voxface.refine import upsample_method

    m = _model()
    z = torch.zeros(1, 8), torch.zeros(1, 4)
    coarse = _coarse(_bumpy_sphere, 8)
    for kw, err, words in ((dict(dilate=-1), InputError, "dilate must be at least 0, got -1"),
                           (dict(dilate=1.5), InputTypeError, "dilate must be an integer"),
                           (dict(chunk=0), InputError, "chunk must be at least 1, got 0"),
                           (dict(chunk=2.0), InputTypeError, "chunk must be an integer"),
                           (dict(threshold="0.5"), InputTypeError, "threshold must be a real number"),
                           (dict(threshold=float("nan")), InputError, "threshold must be finite"),
                           (dict(threshold=1.0), InputError, r"threshold must lie in \(0, 1\)"),
                           (dict(upsample="cubic"), InputError, "upsample must be one of decoder, head")):
        with pytest.raises(err, match=words):
            refine_logits(m, *z, resolution=32, **kw)
    for kw, err, words in ((dict(levels=-1), InputError, "levels must be at least 0, got -1"),
                           (dict(levels=1, dilate=-2), InputError, "dilate must be at least 0"),
                           (dict(levels=1.0), InputTypeError, "levels must be an integer"),
                           (dict(levels=1, chunk=-5), InputError, "chunk must be at least 1, got -5")):
        with pytest.raises(err, match=words):
            mise(coarse, _bumpy_sphere, **kw)
    with pytest.raises(InputError, match="chunk must be at least 1"):
        dense(_bumpy_sphere, 8, chunk=0)
    # dense's resolution too: 8.7 was an 8^3 grid, -2 torch's negative-dimension RuntimeError
    for bad, err, words in ((8.7, InputTypeError, "resolution must be an integer"),
                            (-2, InputError, "resolution must be at least 1, got -2"),
                            (0, InputError, "resolution must be at least 1, got 0")):
        with pytest.raises(err, match=words):
            dense(_bumpy_sphere, bad)
    assert dense(_bumpy_sphere, np.int64(8)).shape == (8, 8, 8)
    with pytest.raises(InputError, match="cubic"):
        mise(coarse[None], _bumpy_sphere, 1)
    with pytest.raises(InputError):
        upsample_method(m, "trilinear")
    # what they take: numpy integers, and the same result for the same values
    a = refine_logits(m, *z, resolution=32, dilate=np.int64(1), chunk=np.int32(4096), threshold=np.float32(0.5))[0]
    b = refine_logits(m, *z, resolution=32)[0]
    np.testing.assert_array_equal(a.logits, b.logits)
    fine, stats = mise(coarse, _bumpy_sphere, 0)
    assert stats == [] and torch.equal(fine, coarse)


def test_threads_hold_for_the_validation_too(monkeypatch):
    """``threads`` (``refine-train --threads``) held while training but the validation (seconds a face
    at 256^3) ran on the process's own count; the count and the model's mode come back afterwards,
    also when the validation fails."""
    import voxface.refine

    seen = []

    def fake_validation(model, *a, **k):
        seen.append((torch.get_num_threads(), model.training))
        return {"iou_head": 1.0}

    monkeypatch.setattr(voxface.refine, "evaluate_refiner", fake_validation)
    m = _model(refine=False)
    cfg = RefineTrainConfig(steps=1, batch_size=2, points=16, resolution=32, num_val=1, threads=2)
    assert torch.get_num_threads() == 1  # one_torch_thread
    assert train_refiner(m, TOY_DATA, cfg).val == {"iou_head": 1.0}
    assert seen == [(2, False)] and torch.get_num_threads() == 1 and not m.training

    def failing(model, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(voxface.refine, "evaluate_refiner", failing)
    m.train()
    with pytest.raises(KeyboardInterrupt):
        train_refiner(m, TOY_DATA, cfg)
    assert torch.get_num_threads() == 1 and m.training


def test_an_embedded_evaluation_of_the_old_head_does_not_describe_the_new_one(tmp_path):
    """``release --report`` embeds an evaluation that ``inspect`` shows; one that scored the head
    (``upsample: head``) was kept by refine-train, whose output has another head: it moves to the
    refine_train record; one that the head played no part in (``none``, ``decoder``) stays."""
    from voxface.checkpoint import inspect_checkpoint

    cfg = RefineTrainConfig(steps=1, batch_size=2, points=16, resolution=0, num_val=0)
    for upsample, kept in (("head", False), ("none", True), ("decoder", True)):
        ev = {"num": 4, "resolution": 32 if upsample != "none" else 16, "upsample": upsample, "summary": {"iou": 0.5}}
        src = save_checkpoint(tmp_path / f"src-{upsample}.pth.tar", _model(), extra={"evaluation": ev})
        out, _ = refine_checkpoint(src, tmp_path / f"out-{upsample}.pth.tar", TOY_DATA, cfg, device="cpu")
        extra = load_checkpoint(out)["extra"]
        assert ("evaluation" in extra) == kept, upsample
        assert (inspect_checkpoint(out).evaluation is not None) == kept
        if kept:
            assert extra["evaluation"] == ev and "evaluation_before" not in extra["refine_train"]
        else:
            assert extra["refine_train"]["evaluation_before"] == ev


def test_refine_train_data_section_problems_name_the_file(tmp_path, monkeypatch, capsys):
    """A --config without a data: section was told to "pass --config"; a data: section with a bad value
    or an unknown key (found as its datasets are built) was one line naming no file. Each names the
    file the section came from (--config, else the checkpoint), and nothing is written."""
    import json

    from .conftest import run_cli

    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False))  # no run_config: no data: section
    out = tmp_path / "out.pth.tar"
    nodata = tmp_path / "nodata.yaml"
    nodata.write_text("model:\n  decoder:\n    resolution: 16\n")
    zero = _data_yaml(tmp_path, {**TOY_DATA, "num_train": 0})
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text(json.dumps({"data": {**TOY_DATA, "bogus": 1}}))
    in_ckpt = save_checkpoint(tmp_path / "run.pth.tar", _model(refine=False),
                              extra={"run_config": {"data": {**TOY_DATA, "num_train": 0}}})
    for ck, args, words in ((src, ["--config", nodata], f"{nodata}: has no data: section"),
                            (src, [], f"{src}: records no training data: section to train the refinement head on; "
                                      "pass --config with one"),
                            (src, ["--config", zero], f"{zero}: data.num_train 0 must be"),
                            (src, ["--config", bogus], f"{bogus}: data: unknown key(s) ['bogus']"),
                            (in_ckpt, [], f"{in_ckpt}: data.num_train 0 must be")):
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", ck, "-o", out, *args, *_QUICK)
        lines = err.strip().splitlines()
        assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
        assert lines[0].startswith(f"error: {words}"), err
        assert "pass --config" not in lines[0] or not args, err
        assert not out.exists()


def test_true_latents_the_model_cannot_take_are_refused_before_the_head_changes(tmp_path):
    """``latents="true"``/``"both"`` with codes that are not the data's coefficients failed in the first
    step, after ``fresh`` had replaced the head with an untrained one, and refine-train's line named no
    file: a ConfigError before the head is touched, naming the checkpoint from refine_checkpoint."""
    from voxface.errors import ConfigError

    m = _model()  # z_id 8 + z_exp 4; the toy data's coefficients are 4 + 3
    old, old_cfg = m.refiner, m.config.refine
    for latents in ("true", "both"):
        cfg = RefineTrainConfig(steps=1, batch_size=2, points=16, resolution=0, num_val=0, latents=latents)
        with pytest.raises(ConfigError, match=f"latents '{latents}' needs codes that are the data's coefficients: "
                                              "the model's z_id \\+ z_exp have 12 values, the coefficients 7"):
            train_refiner(m, TOY_DATA, cfg, head=RefineConfig(hidden=4, layers=1, pe_freqs=1), fresh=True)
        assert m.refiner is old and m.config.refine == old_cfg
    src = save_checkpoint(tmp_path / "src.pth.tar", m)
    with pytest.raises(ConfigError) as ei:
        refine_checkpoint(src, tmp_path / "out.pth.tar", TOY_DATA, cfg, device="cpu")
    assert str(ei.value).startswith(f"{src}: refine: latents 'both' needs codes")
    assert not (tmp_path / "out.pth.tar").exists()


def test_refine_train_validates_by_default_on_a_grid_the_model_can_refine_to(tmp_path, monkeypatch, capsys, refine_resolutions):
    """--resolution defaulted to 128, which a 128^3 model cannot refine to: refine-train on such a
    checkpoint failed, unasked, with "--resolution 128 does not fit its 128^3 model"; the default is now
    128 where it fits (this 16^3 model, a 64^3 one), else twice the model's grid."""
    from .conftest import run_cli

    seen = refine_resolutions
    torch.manual_seed(0)
    big = create_model({**SMALL, "decoder": {"resolution": 128, "widths": [8, 8, 8, 8, 8]}})
    for model, want in ((_model(refine=False), 128), (big, 256)):
        src = save_checkpoint(tmp_path / "src.pth.tar", model, extra={"run_config": {"data": TOY_DATA}})
        code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", tmp_path / "out.pth.tar",
                               "--steps", "1", "--no-progress")
        assert code == 0 and seen[-1] == want, (err, seen)
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", tmp_path / "out.pth.tar",
                           "--resolution", "128", "--no-progress")
    assert code == 1 and "--resolution 128 does not fit its 128^3 model" in err, err


def test_ctrl_c_in_refine_train_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the head trains (minutes, in memory) printed a bare "interrupted": one line saying
    that -o was not written (an earlier file there kept), exit 130."""
    import voxface.refine

    from .conftest import run_cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(voxface.refine, "train_refiner", interrupted)
    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False), extra={"run_config": {"data": TOY_DATA}})
    out = tmp_path / "out.pth.tar"
    before = b""
    for earlier in (False, True):
        if earlier:  # an earlier refined checkpoint (another file is refused before training)
            before = save_checkpoint(out, _model(refine=True)).read_bytes()
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, *_QUICK)
        lines = err.strip().splitlines()
        assert code == 130 and "Traceback" not in stdout + err and len(lines) == 1, err
        assert lines[0] == f"error: interrupted; no refined checkpoint written to {out}" + (
            " (the earlier file there is kept as it was)" if earlier else ""), err
        assert out.read_bytes() == before if earlier else not out.exists()


def test_sigterm_stops_refine_train_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    """SIGTERM (kill, a scheduler's time limit) killed refine-train at once: mid-save, its hidden
    temporary stayed beside -o. It now stops as Ctrl-C does (the write's clean-up runs): one line,
    exit 143, the earlier file kept, no temporary; SIGTERM's handler is restored afterwards."""
    import os
    import signal
    import time

    import voxface.checkpoint

    from .conftest import run_cli

    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False), extra={"run_config": {"data": TOY_DATA}})
    out = tmp_path / "out.pth.tar"
    before = save_checkpoint(out, _model(refine=True)).read_bytes()
    save = torch.save

    def killed_mid_save(obj, f, *a, **k):  # the trained head is being written into its temporary
        save(obj, f, *a, **k)
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this

    monkeypatch.setattr(voxface.checkpoint.torch, "save", killed_mid_save)
    previous = signal.getsignal(signal.SIGTERM)
    code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, *_QUICK)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert code == 143 and "Traceback" not in stdout + err, err
    assert err.strip().splitlines()[-1] == f"error: terminated; no refined checkpoint written to {out} (the earlier file there is kept as it was)"
    assert out.read_bytes() == before and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_refine_checkpoint_reads_past_malformed_metadata_after_training(tmp_path):
    """A hand-edited source (a NaN epoch, a note among the loss records, meta and extra that are not
    dicts) ended refine-train in a traceback *after* the training, which was lost; release reads
    past such metadata, and so does refine_checkpoint now: the dict records are kept."""
    src = save_checkpoint(tmp_path / "src.pth.tar", _model(), step=7)
    ck = load_checkpoint(src)
    ck.update(epoch=float("nan"), meta="hand-edited", extra=["not", "a", "dict"],
              loss_history=[{"step": 1, "loss": 0.5}, "note: restarted here", {"step": 2, "loss": 0.4}])
    torch.save(ck, src)
    cfg = RefineTrainConfig(steps=1, batch_size=2, points=16, resolution=0, num_val=0)
    out, res = refine_checkpoint(src, tmp_path / "out.pth.tar", TOY_DATA, cfg, device="cpu")
    got = load_checkpoint(out)
    assert got["epoch"] == 0 and got["step"] == 7 and len(res.history) == 1
    assert got["loss_history"] == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]
    assert got["extra"]["refine_train"]["source"] == str(src)
    assert load_model(out, device="cpu").refiner is not None


def test_refine_train_cli_reaches_its_lr_in_a_short_run(tmp_path, monkeypatch, capsys):
    """refine-train warmed up over 50 steps whatever --steps was: a 20-step run trained at 20/51 of
    --lr at most, and never decayed. A run shorter than 100 steps warms up over half of them (the
    shipped head's runs, 600 and 1000 steps, keep their 50)."""
    import json

    from .conftest import run_cli

    src = save_checkpoint(tmp_path / "src.pth.tar", _model(refine=False))
    yml = tmp_path / "toy.yaml"
    yml.write_text(json.dumps({"data": TOY_DATA}))  # JSON is YAML
    for steps, warmup, last_lr in ((4, 2, 0.5e-2), (1, 0, 1e-2)):
        out = tmp_path / f"out{steps}.pth.tar"
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, "--config",
                                    yml, "--steps", str(steps), "--lr", "1e-2", "--batch-size", "2",
                                    "--points", "16", "--resolution", "0", "--num-val", "0", "--no-progress")
        assert code == 0, err
        assert json.loads(stdout.strip().splitlines()[-1])["last"]["lr"] == pytest.approx(last_lr)
        assert load_checkpoint(out)["extra"]["refine_train"]["config"]["warmup"] == warmup

"""High-resolution output: ``resolution=`` / ``--resolution`` in reconstruction and evaluation.

A 16^3 toy-sized model (random weights, output bias lowered so that ~8% of the cells are inside:
a few blobs rather than a field that is surface everywhere) with a refinement head trained for a
few steps on toy heads; 128^3 is ``16 * 2^3`` (three MISE levels).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from voxface.checkpoint import load_model, save_checkpoint
from voxface.config import RefineConfig
from voxface.errors import VoxfaceError
from voxface.frame import Grid
from voxface.models import create_model
from voxface.refine import RefineTrainConfig, logit_iou, refine_logits, train_refiner

from .conftest import SMALL_CONFIG as SMALL
from .conftest import TOY_DATA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_model():
    torch.manual_seed(0)
    m = create_model(SMALL).eval()
    with torch.no_grad():  # a steeper field (x4), ~8% inside: the head's few-step corrections stay local
        m.decoder.out.weight.mul_(4.0)
        m.decoder.out.bias.fill_(-2.0)
    return m


@pytest.fixture(scope="module")
def headed():
    """The small model with a refinement head trained for 4 steps (toy heads)."""
    m = _small_model()
    cfg = RefineTrainConfig(steps=4, batch_size=4, points=512, lr=2e-3, warmup=0, resolution=0, num_val=0)
    train_refiner(m, TOY_DATA, cfg, head=RefineConfig(hidden=16, layers=2, pe_freqs=2))
    assert any(p.abs().sum() > 0 for p in m.refiner.mlp[-1].parameters())  # trained: not trilinear
    return m.eval()


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Three ready crops (PNG) of random colours."""
    from voxface.viz import save_png

    d = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    return [save_png((rng.random((32, 32, 3)) * 255).astype(np.uint8), d / f"f{i}.png") for i in range(3)]


def _closed(mesh) -> bool:
    return bool(mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0)


def test_mise_agrees_with_dense_at_128_with_far_fewer_points(headed, monkeypatch):
    # A head-shaped coarse field (a smooth blob plus the random decoder's output, scaled down), the
    # trained head on top. (MISE assumes the sign is certain away from the coarse surface; on the
    # random decoder's confetti of one-cell blobs that fails, with or without a head.)
    dec = headed.decoder
    raw = dec.logits_from_features
    idx = torch.stack(torch.meshgrid(*(torch.arange(16),) * 3, indexing="ij"), -1).float()
    r = (((idx + 0.5) / 8 - 1) * torch.tensor([1.0, 0.8, 1.2])).norm(dim=-1)
    blob = 12.0 * (0.6 - r)  # (16, 16, 16) logits: an ellipsoid, ~6 logits per cell at the surface
    monkeypatch.setattr(dec, "logits_from_features", lambda f: blob.to(f.dtype) + 0.25 * raw(f))
    z = torch.randn(2, 8), torch.randn(2, 4)
    mise = refine_logits(headed, *z, resolution=128, method="mise")
    dense = refine_logits(headed, *z, resolution=128, method="dense")
    for a, b in zip(mise, dense):
        assert a.head and a.logits.shape == (128, 128, 128)
        assert logit_iou(a.logits, b.logits) >= 0.99
        assert a.stats["points"] < 128 ** 3 / 4  # far fewer evaluations than dense
        assert b.stats["points"] == 128 ** 3


def test_reconstruct_image_at_a_finer_grid_keeps_canonical_mm(headed, crops):
    from voxface.reconstruct import reconstruct_image

    base = reconstruct_image(headed, crops[0], detect=False)
    fine = reconstruct_image(headed, crops[0], detect=False, resolution=64)
    assert base.grid.resolution == 16 and base.logits.shape == (16,) * 3
    assert fine.grid.resolution == 64 and fine.logits.shape == (64,) * 3
    assert fine.grid.side_mm == base.grid.side_mm and fine.grid.center_mm == base.grid.center_mm
    assert _closed(base.mesh) and _closed(fine.mesh)
    assert len(fine.mesh.vertices) > len(base.mesh.vertices)
    # canonical mm, not fine-grid cells: the vertices lie on the fine field's zero level there
    from scipy.ndimage import map_coordinates

    v = np.asarray(fine.mesh.vertices)
    v = v[fine.grid.contains(v, margin_mm=fine.grid.voxel_size)]  # not where the grid's border closes it
    at = map_coordinates(fine.logits, fine.grid.mm_to_index(v).T, order=1)  # (d, h, w) indices
    assert np.abs(at).max() < 0.05 * np.abs(fine.logits).max()
    assert np.all(fine.grid.contains(np.asarray(fine.mesh.vertices), margin_mm=1e-3))
    from voxface.errors import InputError, InputTypeError

    for bad in (8, 24, 48, 0, -64):
        with pytest.raises(InputError, match="resolution"):
            reconstruct_image(headed, crops[0], detect=False, resolution=bad)
    for bad in (64.0, 64.9, True, "64"):  # not truncated to a grid (64.9 gave the 64^3 grid)
        with pytest.raises(InputTypeError, match="resolution must be an integer"):
            reconstruct_image(headed, crops[0], detect=False, resolution=bad)
        with pytest.raises(InputTypeError, match="resolution must be an integer"):
            refine_logits(headed, torch.zeros(1, 8), torch.zeros(1, 4), resolution=bad)
    assert reconstruct_image(headed, crops[0], detect=False, resolution=np.int64(32)).grid.resolution == 32


def test_upsample_chooses_what_fills_the_finer_grid(headed):
    """``upsample="decoder"`` (the default) evaluates the decoder's own function, ``"head"`` the
    refinement head; ``"head"`` without a head falls back to the decoder's function; a bad value is a
    VoxfaceError naming the choices."""
    import copy

    from voxface.reconstruct import decode_at
    from voxface.refine import upsample_method

    z = torch.randn(1, 8), torch.randn(1, 4)
    (a,), _, ia = decode_at(headed, *z, 32)
    (b,), _, ib = decode_at(headed, *z, 32, upsample="head")
    assert not ia["head"] and ib["head"] and not np.array_equal(a, b)
    plain = copy.deepcopy(headed)
    plain.refiner = None
    (c,), _, ic = decode_at(plain, *z, 32, upsample="head")
    np.testing.assert_array_equal(a, c)
    # this small conv decoder has no continuous function: its logits are upsampled (test_deform.py
    # checks the template-deformation decoder's ``logits_at`` path)
    assert not hasattr(headed.decoder, "logits_at")
    assert (upsample_method(headed, "head"), upsample_method(plain, "head"), upsample_method(headed)) == (
        "head", "trilinear", "trilinear")
    with pytest.raises(VoxfaceError, match="upsample must be one of decoder, head, not 'cubic'"):
        decode_at(headed, *z, 32, upsample="cubic")


def test_no_head_upsamples_the_coarse_logits(crops):
    from voxface.reconstruct import decode_at, reconstruct_image

    plain = _small_model()
    z = torch.randn(1, 8), torch.randn(1, 4)
    logits, grid, info = decode_at(plain, *z, 32)
    assert info == {"refined": True, "head": False, "points": info["points"]} and grid.resolution == 32
    rec = reconstruct_image(plain, crops[1], detect=False, resolution=32)
    assert _closed(rec.mesh) and rec.grid == Grid(32, 300.0, (0.0, -10.0, 20.0))


def test_cli_reconstruct_at_128_writes_a_finer_closed_mesh(headed, crops, tmp_path, monkeypatch, capsys):
    import trimesh

    import voxface.cli

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", headed)
    assert load_model(ckpt, device="cpu").refiner is not None
    counts = {}
    for res in (None, 128):
        out = tmp_path / f"out{res}"
        argv = ["voxface", "reconstruct", *map(str, crops[:2]), "-o", str(out), "-c", str(ckpt), "--no-detect",
                "--no-preview", "--device", "cpu", "--batch-size", "2"]
        monkeypatch.setattr(sys, "argv", argv + ([] if res is None else ["--resolution", str(res)]))
        try:
            voxface.cli.main()
        except SystemExit as e:
            assert e.code in (0, None)
        m = trimesh.load(out / "f0.ply", force="mesh")
        assert _closed(m)
        counts[res] = len(m.vertices)
    assert counts[128] > 4 * counts[None]
    monkeypatch.setattr(sys, "argv", ["voxface", "reconstruct", str(crops[0]), "-o", str(tmp_path / "bad"),
                                      "-c", str(ckpt), "--no-detect", "--resolution", "100"])
    with pytest.raises(SystemExit) as e:
        voxface.cli.main()
    assert e.value.code == 1 and "--resolution" in capsys.readouterr().err


def test_cli_says_when_a_finer_grid_has_no_head_to_refine_it(headed, crops, tmp_path, monkeypatch, capsys):
    """A finer grid that cannot be reached the way ``--upsample`` asks is said on one line: ``head`` on a
    checkpoint without a head, ``decoder`` (the default) for a decoder without a continuous function
    (this small conv decoder: its logits are then upsampled trilinearly)."""
    from .conftest import run_cli

    plain = _small_model().eval()
    assert plain.refiner is None
    for name, model in (("plain", plain), ("headed", headed)):
        ckpt = save_checkpoint(tmp_path / f"{name}.pth.tar", model)
        for extra in ([], ["--upsample", "head"]):
            code, _, err = run_cli(monkeypatch, capsys, "reconstruct", crops[0], "-o", tmp_path / f"{name}{len(extra)}",
                                   "-c", ckpt, "--no-detect", "--no-preview", "--device", "cpu", "--resolution", 128,
                                   *extra)
            assert code == 0, err
            assert ("no refinement head" in err) == (name == "plain" and bool(extra)), err
            assert ("this decoder has no continuous function" in err) == (not extra), err
            if "note:" in err:
                assert "--resolution 128 uses the 16^3 logits upsampled trilinearly" in err, err


def test_upsample_decoder_leaves_the_head_out(headed, crops, tmp_path, monkeypatch, capsys):
    """``reconstruct --upsample decoder`` (the default): the mesh of the same model with its head removed
    (the decoder's own function at the finer points); ``head`` differs from it; ``evaluate`` records
    which it scored; another value is one line, before the model is read."""
    import json

    import trimesh

    from .conftest import run_cli
    from .toy_ict import write_toy_ict

    ckpt = save_checkpoint(tmp_path / "headed.pth.tar", headed)
    plain = _small_model().eval()
    plain.load_state_dict({k: v for k, v in headed.state_dict().items() if not k.startswith("refiner.")})
    plain_ckpt = save_checkpoint(tmp_path / "plain.pth.tar", plain)
    meshes = {}
    for name, ck, extra in (("head", ckpt, ["--upsample", "head"]), ("decoder", ckpt, []),
                            ("no-head", plain_ckpt, [])):
        code, _, err = run_cli(monkeypatch, capsys, "reconstruct", crops[0], "-o", tmp_path / name, "-c", ck,
                               "--no-detect", "--no-preview", "--device", "cpu", "--resolution", 64, *extra)
        assert code == 0, err
        assert "no refinement head" not in err, err  # (this conv decoder's note on trilinear upsampling aside)
        meshes[name] = trimesh.load(tmp_path / name / f"{crops[0].stem}.ply")
    assert np.array_equal(meshes["decoder"].vertices, meshes["no-head"].vertices)
    assert not (len(meshes["head"].vertices) == len(meshes["decoder"].vertices)
                and np.array_equal(meshes["head"].vertices, meshes["decoder"].vertices))

    root = str(write_toy_ict(tmp_path / "ict").parent)
    for up in ("head", "decoder"):
        code, _, err = run_cli(monkeypatch, capsys, "evaluate", "-c", ckpt, "--num", 4, "--points", 1000,
                               "--ict-root", root, "--report", tmp_path / f"{up}.json", "--device", "cpu",
                               "--resolution", 64, "--upsample", up)
        assert code == 0, err
        assert json.loads((tmp_path / f"{up}.json").read_text())["upsample"] == {"head": "head", "decoder": "trilinear"}[up]
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "-c", ckpt, "--num", 4, "--points", 1000, "--ict-root",
                           root, "--report", tmp_path / "grid.json", "--device", "cpu")
    assert code == 0 and json.loads((tmp_path / "grid.json").read_text())["upsample"] == "none"
    for cmd in (["reconstruct", crops[0], "-o", tmp_path / "bad"], ["evaluate", "--report", tmp_path / "bad.json"]):
        code, _, err = run_cli(monkeypatch, capsys, *cmd, "-c", tmp_path / "missing.pth.tar", "--upsample", "cubic")
        assert code == 1 and "--upsample must be one of decoder, head, not 'cubic'" in err, err
    from voxface.cli._reconstruct import UPSAMPLE
    from voxface.refine import UPSAMPLE as API_UPSAMPLE

    assert UPSAMPLE == API_UPSAMPLE


def test_evaluate_at_a_finer_grid(headed, tmp_path):
    from voxface.evaluate import evaluate

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    rep16, _ = evaluate(headed, num=4, points=2000, ict_root=root, progress=False)
    rep32, _ = evaluate(headed, num=4, points=2000, ict_root=root, progress=False, resolution=32)
    assert (rep16.resolution, rep32.resolution) == (16, 32)
    for rep in (rep16, rep32):
        s = rep.summary()["model"]
        assert 0.0 <= s["iou"]["mean"] <= 1.0 and np.isfinite(s["chamfer_l1"]["mean"])
        assert 0.0 <= s["fscore@2.5"]["mean"] <= 1.0
    # the baseline (the exact mean head) is scored against exact occupancy on the same, finer grid
    assert rep32.summary()["baseline"]["iou"]["mean"] != rep16.summary()["baseline"]["iou"]["mean"]
    # swap - direct compares like with like: both on the model's grid, whatever grid `iou` is on
    assert "grid_iou" not in rep16.samples[0]
    assert [r["grid_iou"] for r in rep32.samples] == [r["iou"] for r in rep16.samples]
    assert [r["swap_iou"] for r in rep32.samples] == [r["swap_iou"] for r in rep16.samples]
    assert rep32.summary()["swap_minus_direct_iou"] == pytest.approx(rep16.summary()["swap_minus_direct_iou"])
    with pytest.raises(VoxfaceError, match="resolution"):
        evaluate(headed, num=4, points=2000, ict_root=root, progress=False, resolution=24)


def test_evaluate_cli_says_when_it_rounds_num(headed, tmp_path, monkeypatch, capsys):
    import json

    from .conftest import run_cli
    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    ckpt = save_checkpoint(tmp_path / "m.pth.tar", headed)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "-c", ckpt, "--num", 6, "--points", 1000,
                             "--ict-root", root, "--report", tmp_path / "r.json", "--device", "cpu")
    assert code == 0, err
    assert "note: --num 6 rounded down to 4" in err
    assert json.loads((tmp_path / "r.json").read_text())["num"] == 4


def test_evaluate_with_the_true_coefficients_takes_the_encoder_out(headed, tmp_path):
    """``latents="true"`` decodes each sample's ICT coefficients: shape scores no longer depend on
    the encoder (its weights scrambled, they stay bit-identical; the encoder's own codes move
    them), pose still scores the encoder; codes that are not ICT coordinates are refused."""
    from voxface.evaluate import evaluate

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    with pytest.raises(VoxfaceError, match="ICT coefficients"):  # z_id 8 / z_exp 4, the toy model has 100 / 53
        evaluate(headed, num=4, points=1000, ict_root=root, progress=False, latents="true")
    with pytest.raises(VoxfaceError, match="latents"):
        evaluate(headed, num=4, points=1000, ict_root=root, progress=False, latents="oracle")
    torch.manual_seed(1)
    m = create_model({**SMALL, "encoder": {**SMALL["encoder"], "z_id": 100, "z_exp": 53}}).eval()
    kw = dict(num=4, points=1000, ict_root=root, progress=False)
    true_a, _ = evaluate(m, latents="true", **kw)
    enc_a, _ = evaluate(m, **kw)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(torch.randn_like(p))
    true_b, _ = evaluate(m, latents="true", **kw)
    enc_b, _ = evaluate(m, **kw)
    assert true_a.latents == "true" and enc_a.latents == "encoder"
    shape_keys = ("iou", "swap_iou", "chamfer_l1", "face_chamfer_l1")
    for ra, rb in zip(true_a.samples, true_b.samples):
        assert all(ra[k] == rb[k] for k in shape_keys), (ra, rb)
    assert [r["pose_deg"] for r in true_a.samples] != [r["pose_deg"] for r in true_b.samples]
    assert [r["iou"] for r in enc_a.samples] != [r["iou"] for r in enc_b.samples]

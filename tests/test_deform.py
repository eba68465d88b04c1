"""The template-deformation decoder, point-mode losses, supervised latents and teacher forcing."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from voxface.checkpoint import load_checkpoint, load_model
from voxface.config import DecoderConfig, FrameConfig
from voxface.errors import CheckpointError, ConfigError
from voxface.frame import Grid
from voxface.losses import (
    LossConfig,
    compute_losses,
    forward_outputs,
    latent_loss,
    near_surface_mask,
    point_targets,
    sample_cells,
)
from voxface.models import DeformVoxelDecoder, create_model
from voxface.models.decoder import unit_cell_centers
from voxface.train import train

R = 16


def _decoder(template_resolution: int = 0) -> DeformVoxelDecoder:
    cfg = DecoderConfig(name="deform", resolution=R, widths=(16, 8), shuffle=2,
                        template_resolution=template_resolution)
    return DeformVoxelDecoder(cfg, z_dim=6)


def _sphere_occupancy(res: int, radius: float, center=(0.0, 0.0, 0.0)) -> torch.Tensor:
    c = unit_cell_centers(res)[0]
    return ((c - torch.tensor(center)).norm(dim=-1) < radius).float()


def test_untrained_deform_decoder_is_its_template() -> None:
    torch.manual_seed(0)
    dec = _decoder()
    occ = _sphere_occupancy(R, 0.5)
    dec.init_template(occ)
    assert torch.allclose(dec.template[0, 0], torch.logit(occ.clamp(0.02, 0.98)))
    logits = dec(torch.randn(3, 6))
    assert logits.shape == (3, 1, R, R, R) and logits.dtype == torch.float32
    # zero output layer: no displacement, no residual, the template sampled at its own cell centres
    assert torch.allclose(logits, dec.template.expand(3, -1, -1, -1, -1), atol=1e-5)


def test_template_is_resampled_to_its_own_resolution() -> None:
    dec = _decoder(template_resolution=2 * R)
    dec.init_template(_sphere_occupancy(R, 0.5))
    assert dec.template.shape == (1, 1, 2 * R, 2 * R, 2 * R)
    # the decoder still outputs R^3 and keeps the sphere: IoU with the source above 0.9
    out = dec(torch.zeros(1, 6))[0, 0] > 0
    ref = _sphere_occupancy(R, 0.5) > 0.5
    assert (out & ref).sum() / (out | ref).sum() > 0.9


def test_a_constant_displacement_translates_the_shape() -> None:
    """template(p + d) is the template moved by -d: the occupied centroid shifts by -d."""
    dec = _decoder()
    dec.init_template(_sphere_occupancy(R, 0.45))
    d = 0.25  # cube units along x: 2 cells of a 16^3 grid
    with torch.no_grad():
        dec.out.bias[0:8] = d  # channels 0..7 are the 2^3 sub-cells of the x displacement
    inside = dec(torch.zeros(1, 6))[0, 0] > 0
    c = unit_cell_centers(R)[0][inside]
    assert c[:, 0].mean().item() == pytest.approx(-d, abs=0.02)
    assert c[:, 1].mean().item() == pytest.approx(0.0, abs=0.02)
    assert c[:, 2].mean().item() == pytest.approx(0.0, abs=0.02)


def test_logits_at_cell_centres_equal_the_grid() -> None:
    torch.manual_seed(1)
    dec = _decoder()
    dec.init_template(_sphere_occupancy(R, 0.5))
    torch.nn.init.normal_(dec.out.weight, std=0.05)
    torch.nn.init.normal_(dec.out.bias, std=0.05)
    z = torch.randn(2, 6)
    f = dec.features(z)
    grid = dec.logits_from_features(f)
    idx = torch.randint(0, R**3, (2, 50))
    pts, vals = point_targets(grid[:, 0], idx)
    at = dec.logits_at(f, pts)
    assert at.shape == (2, 50)
    assert torch.allclose(at, vals, atol=1e-4)


def test_cpu_chunked_sampling_equals_the_whole_batch(monkeypatch) -> None:
    """On a CPU the fields are sampled a few faces at a time (cache-sized chunks): the same logits,
    and gradients, as one pass over the whole batch, whatever the chunk size."""
    import voxface.models.decoder as D

    torch.manual_seed(2)
    dec = _decoder()
    dec.init_template(_sphere_occupancy(R, 0.5))
    torch.nn.init.normal_(dec.out.weight, std=0.05)
    torch.nn.init.normal_(dec.out.bias, std=0.05)
    f = dec.features(torch.randn(7, 6)).detach().requires_grad_(True)
    whole = dec._logits_from_fields(dec.fields(f))
    (g_whole,) = torch.autograd.grad(whole.square().sum(), f)
    for faces in (1, 3, 7, 8):
        monkeypatch.setattr(D, "CPU_SAMPLING_VOXELS", faces * R**3)
        out = dec.logits_from_features(f)
        assert out.shape == whole.shape and torch.equal(out, whole)
        (g,) = torch.autograd.grad(out.square().sum(), f)
        assert torch.allclose(g, g_whole, atol=1e-6)


def test_unit_cell_centers_follow_the_frame_convention() -> None:
    grid = Grid.from_config(FrameConfig(), 8)
    ours = unit_cell_centers(8)[0].double().numpy()
    ref = grid.mm_to_unit(grid.cell_centers())
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ---------------------------------------------------------------------------- point mode


def test_sample_cells_halves_and_determinism() -> None:
    occ = torch.zeros(3, 1, R, R, R, dtype=torch.uint8)
    occ[:, :, 4:12, 4:12, 4:12] = 1
    occ[2] = 0  # no surface at all: the band half falls back to uniform cells
    idx = sample_cells(occ, 64, 1, torch.Generator().manual_seed(0))
    again = sample_cells(occ, 64, 1, torch.Generator().manual_seed(0))
    assert idx.shape == (3, 64) and idx.dtype == torch.int64 and torch.equal(idx, again)
    assert int(idx.min()) >= 0 and int(idx.max()) < R**3
    band = near_surface_mask(occ, 1).flatten(1)
    for b in range(2):
        assert band[b, idx[b, 32:]].all()  # the second half lies in the band
        assert not band[b, idx[b, :32]].all()  # the first half is uniform (mostly off the band)


def test_point_targets_are_cell_centres_and_grid_values() -> None:
    occ = (torch.rand(2, R, R, R) > 0.5).to(torch.uint8)
    idx = torch.randint(0, R**3, (2, 40))
    pts, tgt = point_targets(occ, idx)
    d, h, w = idx // (R * R), (idx // R) % R, idx % R
    assert torch.equal(tgt, occ[torch.arange(2)[:, None], d, h, w].float())
    c = unit_cell_centers(R)[0]
    assert torch.allclose(pts, c[d, h, w])


def test_latent_loss_is_zero_at_the_truth_and_weighted() -> None:
    a, e = torch.randn(4, 5), torch.rand(4, 3)
    assert latent_loss(a, e, a, e).item() == 0.0
    off = a.clone()
    off[:, 0] += 1.0
    assert latent_loss(off, e, a, e).item() == pytest.approx(1 / 5)
    w = torch.tensor([3.0, 1, 1, 1, 1])
    assert latent_loss(off, e, a, e, w).item() == pytest.approx(3 / 5)
    with pytest.raises(ConfigError, match="z_id/z_exp sizes"):
        latent_loss(a[:, :4], e, a, e)


def _deform_model(z_id: int = 4, z_exp: int = 3):
    torch.manual_seed(0)
    return create_model({
        "encoder": {"image_size": 32, "widths": [8, 16], "blocks": [1, 1], "z_id": z_id, "z_exp": z_exp},
        "decoder": {"name": "deform", "resolution": R, "widths": [16, 8], "shuffle": 2},
    })


def test_teacher_decodes_the_true_coefficients_in_grid_and_point_mode() -> None:
    model = _deform_model()
    torch.nn.init.normal_(model.decoder.out.weight, std=0.05)
    img = torch.rand(8, 3, 32, 32)
    a, e = torch.randn(8, 4), torch.rand(8, 3)
    cfg = LossConfig(swap=0, teacher=1.0)
    out = forward_outputs(model, img, cfg, id_coeffs=a, exp_coeffs=e)
    sw = torch.arange(8) ^ 2
    assert torch.allclose(out["teacher_logits"], model.decode(a, e), atol=1e-5)
    assert torch.allclose(out["teacher_swap_logits"], model.decode(a, e[sw]), atol=1e-5)
    # point mode: the same function at the points
    occ = (torch.rand(8, R, R, R) > 0.5).to(torch.uint8)
    idx = sample_cells(occ, 32, 1, torch.Generator().manual_seed(0))
    pts, tgt = point_targets(occ, idx)
    pout = forward_outputs(model, img, cfg, id_coeffs=a, exp_coeffs=e, points=pts, swap_points=pts)
    for k in ("logits", "teacher_logits", "teacher_swap_logits"):
        assert pout[k].shape == (8, 32)
        assert torch.allclose(pout[k], point_targets(out[k][:, 0], idx)[1], atol=1e-4), k
    batch = {"occ": occ, "occ_swap": occ, "pts_occ": tgt, "pts_swap": tgt, "id_coeffs": a, "exp_coeffs": e}
    total, terms = compute_losses(pout, batch, LossConfig(swap=0, teacher=1.0, latent=1.0))
    assert {"teacher", "latent", "occupancy", "near_surface", "iou"} <= set(terms)
    assert np.isfinite(total.item())


def test_teacher_needs_latents_of_the_coefficient_sizes() -> None:
    model = _deform_model(z_id=6)
    with pytest.raises(ConfigError, match="teacher needs z_id/z_exp sizes"):
        forward_outputs(model, torch.rand(4, 3, 32, 32), LossConfig(swap=0, teacher=1.0),
                        id_coeffs=torch.zeros(4, 4), exp_coeffs=torch.zeros(4, 3))


def test_point_mode_needs_a_continuous_decoder() -> None:
    torch.manual_seed(0)
    model = create_model({"encoder": {"image_size": 32, "widths": [8], "blocks": [1], "z_id": 4, "z_exp": 3},
                          "decoder": {"resolution": R, "widths": [16, 8]}})
    pts = torch.zeros(4, 8, 3)
    with pytest.raises(ConfigError, match="logits_at"):
        forward_outputs(model, torch.rand(4, 3, 32, 32), LossConfig(swap=0), points=pts)


# ------------------------------------------------------------------------------- training

DEFORM: dict[str, Any] = {
    "model": {
        "encoder": {"image_size": 32, "widths": [8, 16, 32], "blocks": [1, 1, 1], "z_id": 4, "z_exp": 3},
        "decoder": {"name": "deform", "resolution": 16, "widths": [32, 16], "shuffle": 2},
        "frame": {"side_mm": 300.0, "center_mm": [0.0, -10.0, 20.0]},
    },
    "data": {"kind": "toy", "num_train": 64, "num_val": 16, "cache": True},
    "train": {
        "batch_size": 8, "lr": 0.003, "total_steps": 12, "warmup_steps": 3, "val_every": 5,
        "ckpt_every": 5, "log_every": 2, "num_val": 16, "prior_samples": 32, "threads": 1,
        "loss": {"points": 128, "teacher": 1.0, "latent": 1.0, "swap": 0.0, "coeff": 0.0,
                 "id_consistency": 0.0},
    },
}


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_deform_training_starts_at_the_mean_head_and_resumes_exactly(tmp_path: Path) -> None:
    cfg = copy.deepcopy(DEFORM)
    a = train(cfg, tmp_path / "a", progress=False)
    assert a.steps == 12 and np.isfinite(a.final_loss)
    ck = load_checkpoint(tmp_path / "a" / "last.pth.tar")
    assert {"teacher", "latent"} <= set(ck["loss_history"][0])
    # the template was initialised from the training set's mean occupancy (not left at zero)
    tpl = ck["state_dict"]["decoder.template"]
    assert tpl.abs().max() > 1.0 and (tpl > 0).any() and (tpl < 0).any()
    model = load_model(tmp_path / "a" / "best.pth.tar", device="cpu")
    assert isinstance(model.decoder, DeformVoxelDecoder)
    # interrupted at step 6 and resumed: the same loss history and weights, bit for bit
    paused = train(cfg, tmp_path / "b", progress=False, stop_at=6)
    assert paused.steps == 6
    resumed = train(None, tmp_path / "b", resume=tmp_path / "b" / "last.pth.tar", progress=False)
    assert resumed.steps == 12
    b = load_checkpoint(tmp_path / "b" / "last.pth.tar")
    assert ck["loss_history"] == b["loss_history"]
    for k in ck["state_dict"]:
        assert torch.equal(ck["state_dict"][k], b["state_dict"][k]), k


def test_supervised_latents_refuse_data_without_coefficients(tmp_path: Path, monkeypatch) -> None:
    import voxface.train as vt

    real = vt.build_dataset

    class NoCoeffs:
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            item = dict(self.ds[i])
            item["id_coeffs"] = np.zeros_like(item["id_coeffs"])
            return item

    monkeypatch.setattr(vt, "build_dataset", lambda *a, **k: NoCoeffs(real(*a, **k)))
    with pytest.raises(ConfigError, match="need the true coefficients"):
        train(copy.deepcopy(DEFORM), tmp_path / "c", progress=False)


def test_fine_grids_of_a_deform_model_without_head_are_its_own_continuous_function() -> None:
    """MISE/dense refinement evaluates ``logits_at`` (not trilinear upsampling) when no head exists."""
    from voxface.refine import refine_logits

    model = _deform_model().eval()
    torch.nn.init.normal_(model.decoder.out.weight, std=0.05)
    model.decoder.init_template(_sphere_occupancy(R, 0.6))
    z_id, z_exp = torch.randn(1, 4), torch.rand(1, 3)
    dense = refine_logits(model, z_id, z_exp, resolution=2 * R, method="dense")[0]
    with torch.no_grad():
        f = model.decoder.features(torch.cat([z_id, z_exp], 1))
        ref = model.decoder.logits_at(f, unit_cell_centers(2 * R).reshape(1, -1, 3))
    np.testing.assert_allclose(dense.logits.reshape(-1), ref[0].numpy(), atol=1e-5)
    mise = refine_logits(model, z_id, z_exp, resolution=2 * R, method="mise")[0]
    assert ((mise.logits > 0) == (dense.logits > 0)).mean() > 0.999
    from voxface.refine import upsample_method

    assert upsample_method(model) == upsample_method(model, "head") == "decoder"  # what evaluate/reconstruct report


# ------------------------------------------------------------------- an encoder-only stage


def _encoder_stage(init: Path, **train_overrides: Any) -> dict[str, Any]:
    """A second stage on top of ``init``: no model section (it comes from the checkpoint), the
    decoder frozen, only the latent and pose terms weighted."""
    t = {**DEFORM["train"], "init_from": str(init), "freeze": ["decoder"], "total_steps": 8,
         "val_every": 4, "ckpt_every": 4, "lr": 0.01,
         "loss": {"occupancy": 0.0, "near_surface": 0.0, "swap": 0.0, "teacher": 0.0, "latent": 1.0,
                  "pose": 1.0, "coeff": 0.0, "id_consistency": 0.0, "prior": 0.0}}
    t.update(train_overrides)
    return {"data": copy.deepcopy(DEFORM["data"]), "train": t}


def test_encoder_stage_trains_only_the_encoder_without_decoding(tmp_path: Path, monkeypatch) -> None:
    first = train(copy.deepcopy(DEFORM), tmp_path / "s1", progress=False)
    ck1 = load_checkpoint(first.last_checkpoint)
    cfg = _encoder_stage(first.last_checkpoint)
    # the step never decodes: only validation does (through the model's decode, not forward_outputs)
    calls = {"n": 0}
    real = DeformVoxelDecoder.features

    def counted(self, z):
        calls["n"] += 1
        return real(self, z)

    monkeypatch.setattr(DeformVoxelDecoder, "features", counted)
    stage = train(cfg, tmp_path / "s2", progress=False)
    monkeypatch.undo()
    assert stage.steps == 8
    ck2 = load_checkpoint(stage.last_checkpoint)
    # the model section came from the checkpoint; the training started from its weights
    assert ck2["config"] == ck1["config"]
    dec = [k for k in ck1["state_dict"] if k.startswith("decoder.")]
    enc = [k for k in ck1["state_dict"] if k.startswith("encoder.")]
    assert dec and enc
    for k in dec:  # frozen: bit for bit
        assert torch.equal(ck1["state_dict"][k], ck2["state_dict"][k]), k
    assert any(not torch.equal(ck1["state_dict"][k], ck2["state_dict"][k]) for k in enc)
    # the optimizer only holds the trainable parameters
    n_enc = sum(1 for k in enc)
    assert sum(len(g["params"]) for g in ck2["optimizer"]["param_groups"]) == n_enc
    rec = ck2["loss_history"][0]
    assert {"latent", "latent_id", "latent_exp", "pose"} <= set(rec)
    assert rec["latent"] == pytest.approx(rec["latent_id"] + rec["latent_exp"], rel=1e-5)
    assert "occupancy" not in rec and "iou" not in rec
    # decodes happened only in the two validations
    n_val_batches = -(-DEFORM["train"]["num_val"] // DEFORM["train"]["batch_size"])
    assert calls["n"] == 2 * n_val_batches
    vals = [json.loads(x) for x in (tmp_path / "s2" / "log.jsonl").read_text().splitlines()]
    vals = [r for r in vals if r["event"] == "val"]
    assert len(vals) == 2 and all(np.isfinite(r["val_id_mse"]) and np.isfinite(r["val_exp_mse"]) for r in vals)


def test_encoder_stage_resumes_exactly(tmp_path: Path) -> None:
    first = train(copy.deepcopy(DEFORM), tmp_path / "s1", progress=False)
    cfg = _encoder_stage(first.last_checkpoint)
    a = train(copy.deepcopy(cfg), tmp_path / "a", progress=False)
    train(copy.deepcopy(cfg), tmp_path / "b", progress=False, stop_at=4)
    # the resume reads its own checkpoint, not init_from (which may have changed since)
    shutil.copy(first.best_checkpoint, first.last_checkpoint)
    b = train(None, tmp_path / "b", resume=tmp_path / "b" / "last.pth.tar", progress=False)
    assert a.steps == b.steps == 8
    ca, cb = load_checkpoint(a.last_checkpoint), load_checkpoint(b.last_checkpoint)
    assert ca["loss_history"] == cb["loss_history"]
    for k in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][k], cb["state_dict"][k]), k


def test_encoder_stage_config_errors(tmp_path: Path) -> None:
    from voxface.train import resolve_config

    with pytest.raises(ConfigError, match="train.freeze: unknown part"):
        resolve_config({**copy.deepcopy(DEFORM), "train": {**DEFORM["train"], "freeze": ["decodr"]}})
    cfg = copy.deepcopy(DEFORM)
    cfg["train"]["loss"] = {"occupancy": 0.0, "near_surface": 0.0, "swap": 0.0, "teacher": 0.0, "latent": 1.0}
    with pytest.raises(ConfigError, match="add it to train.freeze"):
        train(cfg, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    bad = tmp_path / "foreign.pth.tar"
    torch.save({"generator": {"w": torch.zeros(1)}, "epoch": 3}, bad)
    with pytest.raises(CheckpointError, match="not a voxface checkpoint"):
        resolve_config(_encoder_stage(bad))


@pytest.mark.parametrize("shape", [(2, 4, 16, 16, 16), (1, 3, 5, 2, 7), (1, 1, 1, 3, 4)])
def test_upsample2x_is_trilinear_interpolation(shape):
    """The decoder's CPU fast path for the fields' 2x upsampling gives F.interpolate's values (any
    sizes, ends included; a size-1 axis takes the fallback), and keeps autograd to F.interpolate."""
    import torch.nn.functional as F

    from voxface.models.decoder import upsample2x_trilinear

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
    with torch.inference_mode():
        fast = upsample2x_trilinear(x)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, rtol=0, atol=2e-6)
    xg = x.clone().requires_grad_(True)
    y = upsample2x_trilinear(xg)
    (y * ref).sum().backward()
    xr = x.clone().requires_grad_(True)
    (F.interpolate(xr, scale_factor=2, mode="trilinear", align_corners=False) * ref).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def _ict_stage(root: str, **train_overrides: Any) -> dict[str, Any]:
    """A tiny model on synthetic faces of the toy ICT-FaceKit (100 identity, 53 expression codes)."""
    cfg = copy.deepcopy(DEFORM)
    cfg["model"]["encoder"].update(z_id=100, z_exp=53)
    cfg["model"]["frame"] = {"side_mm": 400.0, "center_mm": [0.0, -30.0, -55.0]}
    cfg["data"] = {"kind": "synthetic", "ict_root": root, "num_train": 64, "num_val": 8}
    cfg["train"].update(total_steps=4, val_every=0, ckpt_every=0, num_val=8, prior_samples=8)
    cfg["train"].update(train_overrides)
    return cfg


def test_new_encoder_on_a_trained_decoder_with_mirrored_samples(tmp_path: Path, monkeypatch) -> None:
    """``init_parts: [decoder]`` starts a new encoder architecture (here the flatten readout) on a
    trained decoder; ``mirror`` flips whole blocks, and the run still resumes exactly."""
    import voxface.augment

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    first = train(_ict_stage(root), tmp_path / "s1", progress=False)
    ck1 = load_checkpoint(first.last_checkpoint)
    cfg = _ict_stage(root, init_from=str(first.last_checkpoint), init_parts=["decoder"], freeze=["decoder"],
                     mirror=0.5, total_steps=8, ckpt_every=4,
                     loss={"occupancy": 0.0, "near_surface": 0.0, "swap": 0.0, "teacher": 0.0, "latent": 1.0,
                           "pose": 1.0, "coeff": 0.0, "id_consistency": 0.0, "prior": 0.0})
    cfg["model"]["encoder"]["readout"] = "flatten"
    flips = []
    real = voxface.augment.mirror_batch

    def spy(batch, flip, *a, **k):
        flips.append(flip.clone())
        return real(batch, flip, *a, **k)

    monkeypatch.setattr(voxface.augment, "mirror_batch", spy)
    a = train(copy.deepcopy(cfg), tmp_path / "a", progress=False)
    assert len(flips) == 8 and 0 < int(torch.stack(flips).sum()) < 8 * 8
    ck = load_checkpoint(a.last_checkpoint)
    assert ck["config"]["encoder"]["readout"] == "flatten"
    for k in (k for k in ck1["state_dict"] if k.startswith("decoder.")):
        assert torch.equal(ck1["state_dict"][k], ck["state_dict"][k]), k
    assert not any(k.startswith("encoder.pool.") for k in ck1["state_dict"])
    assert any(k.startswith("encoder.pool.") for k in ck["state_dict"])
    # interrupted and resumed: the same samples mirrored, the same weights
    train(copy.deepcopy(cfg), tmp_path / "b", progress=False, stop_at=4)
    b = train(None, tmp_path / "b", resume=tmp_path / "b" / "last.pth.tar", progress=False)
    assert b.steps == 8
    cb = load_checkpoint(b.last_checkpoint)
    assert ck["loss_history"] == cb["loss_history"]
    for k in ck["state_dict"]:
        assert torch.equal(ck["state_dict"][k], cb["state_dict"][k]), k
    # a part that does not fit is named; mirroring data without ICT coefficients is refused
    bad = _ict_stage(root, init_from=str(first.last_checkpoint), init_parts=["encoder"])
    bad["model"]["encoder"]["readout"] = "flatten"
    with pytest.raises(CheckpointError, match="encoder|pool|trunk"):
        train(bad, tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="train.init_parts: unknown part"):
        train(_ict_stage(root, init_from=str(first.last_checkpoint), init_parts=["decodr"]), tmp_path / "d",
              progress=False)
    with pytest.raises(ConfigError, match="train.mirror"):
        train({**copy.deepcopy(DEFORM), "train": {**DEFORM["train"], "mirror": 0.5}}, tmp_path / "e", progress=False)

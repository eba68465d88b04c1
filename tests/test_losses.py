"""Loss terms: pairing, near-surface band (against a brute-force reference), pose, consistency."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from voxface.losses import (
    AuxHeads,
    LossConfig,
    batch_iou,
    compute_losses,
    forward_outputs,
    id_consistency_loss,
    near_surface_mask,
    partner_index,
    pose_loss,
    swap_index,
)
from voxface.models import Latents, Pose
from voxface.rotation import euler_to_matrix


def test_pairing_indices() -> None:
    assert partner_index(8).tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
    assert swap_index(8).tolist() == [2, 3, 0, 1, 6, 7, 4, 5]
    # both stay inside their block of 4 and are involutions
    for f in (partner_index, swap_index):
        idx = f(12)
        assert torch.equal(idx[idx], torch.arange(12))
        assert torch.equal(idx // 4, torch.arange(12) // 4)


class _Tagged(nn.Module):
    """A fake VoxFace whose codes and decodes are traceable: decode writes (id tag, exp tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def encode(self, images: torch.Tensor) -> Latents:
        b = images.shape[0]
        tag = images[:, 0, 0, 0]  # image i carries the number i
        z_id = torch.stack([tag, torch.zeros(b)], 1) * self.w
        z_exp = torch.stack([100 + tag], 1) * self.w
        eye = torch.eye(3).expand(b, 3, 3)
        return Latents(z_id, z_exp, Pose(eye, torch.ones(b), torch.zeros(b, 2)))

    def decode(self, z_id: torch.Tensor, z_exp: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(z_id.shape[0], 1, 2, 2, 2)
        out[:, 0, 0, 0, 0] = z_id[:, 0]
        out[:, 0, 0, 0, 1] = z_exp[:, 0]
        return out + 0 * self.w


def test_forward_outputs_swap_pairing() -> None:
    b = 8
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 4, 4).contiguous()
    out = forward_outputs(_Tagged(), images, LossConfig())
    ident = lambda t: t[:, 0, 0, 0, 0].round().long().tolist()  # noqa: E731
    expr = lambda t: (t[:, 0, 0, 0, 1] - 100).round().long().tolist()  # noqa: E731
    i = list(range(b))
    assert ident(out["logits"]) == i and expr(out["logits"]) == i
    # swap: identity i with the expression of i ^ 2 (what occ_swap[i] holds)
    assert ident(out["swap_logits"]) == i and expr(out["swap_logits"]) == [k ^ 2 for k in i]
    # same-person cross: identity of i ^ 1 with the expression of i (target occ[i])
    assert ident(out["cross_logits"]) == [k ^ 1 for k in i] and expr(out["cross_logits"]) == i
    assert "swap_logits" not in forward_outputs(_Tagged(), images, LossConfig(swap=0))
    no_cross = forward_outputs(_Tagged(), images, LossConfig(cross=False))
    assert "cross_logits" not in no_cross
    assert torch.equal(no_cross["swap_logits"], out["swap_logits"])
    batch = {"occ": torch.zeros(b, 2, 2, 2), "occ_swap": torch.zeros(b, 2, 2, 2)}
    _, terms = compute_losses(no_cross, batch, LossConfig(cross=False))
    assert "swap" in terms
    with pytest.raises(ValueError):
        forward_outputs(_Tagged(), images[:6], LossConfig())


def _sphere(r_cells: float, n: int = 20, center: float = 9.3) -> np.ndarray:
    g = np.arange(n) + 0.0
    d, h, w = np.meshgrid(g, g, g, indexing="ij")
    return (np.sqrt((d - center) ** 2 + (h - center) ** 2 + (w - center) ** 2) <= r_cells).astype(np.float32)


def _band_reference(occ: np.ndarray, cells: int) -> np.ndarray:
    """Slow, obvious reference: a cell is in the band iff its (2c+1)^3 window (clipped at the
    volume's faces) holds both labels."""
    n = occ.shape[0]
    out = np.zeros_like(occ, dtype=bool)
    for d, h, w in itertools.product(range(n), repeat=3):
        win = occ[max(0, d - cells) : d + cells + 1, max(0, h - cells) : h + cells + 1,
                  max(0, w - cells) : w + cells + 1]
        out[d, h, w] = win.min() != win.max()
    return out


@pytest.mark.parametrize("cells", [1, 2])
def test_near_surface_mask_on_a_sphere(cells: int) -> None:
    occ = _sphere(5.5)
    mask = near_surface_mask(torch.from_numpy(occ)[None, None], cells)[0, 0].numpy()
    np.testing.assert_array_equal(mask, _band_reference(occ, cells))
    # geometric sanity: the band hugs the sphere of radius 5.5 cells
    g = np.arange(20.0)
    d, h, w = np.meshgrid(g, g, g, indexing="ij")
    dist = np.sqrt((d - 9.3) ** 2 + (h - 9.3) ** 2 + (w - 9.3) ** 2)
    assert mask[np.abs(dist - 5.5) < 0.5].all()
    assert not mask[np.abs(dist - 5.5) > (cells + 1) * math.sqrt(3)].any()
    assert mask[occ > 0].any() and mask[occ == 0].any()  # both sides of the surface


def test_near_surface_mask_grows_with_width_and_is_empty_at_zero() -> None:
    occ = torch.from_numpy(_sphere(5.5))[None, None]
    sizes = [int(near_surface_mask(occ, c).sum()) for c in (0, 1, 2, 3)]
    assert sizes[0] == 0 and sizes[0] < sizes[1] < sizes[2] < sizes[3]
    assert not near_surface_mask(torch.zeros(1, 1, 8, 8, 8), 1).any()


def test_pose_loss_zero_at_truth_and_monotonic_in_angle() -> None:
    r0 = euler_to_matrix(20, -10, 5)[None]
    s0, t0 = torch.tensor([0.6]), torch.tensor([[0.05, -0.02]])
    assert pose_loss(r0, s0, t0, r0, s0, t0).item() == pytest.approx(0.0, abs=1e-6)
    losses = []
    for angle in (0, 5, 20, 45, 90, 135, 180):
        r = euler_to_matrix(angle, 0, 0)[None] @ r0
        val = pose_loss(r, s0, t0, r0, s0, t0).item()
        assert val == pytest.approx(1 - math.cos(math.radians(angle)), abs=1e-5)
        losses.append(val)
    assert all(a < b for a, b in zip(losses, losses[1:]))
    assert pose_loss(r0, s0 * math.e, t0, r0, s0, t0).item() == pytest.approx(1.0, abs=1e-5)
    assert pose_loss(r0, s0, t0 + torch.tensor([[0.3, 0.4]]), r0, s0, t0).item() == pytest.approx(0.25, abs=1e-5)


def test_id_consistency_is_scale_free() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    base = id_consistency_loss(z)
    assert 0.5 < base.item() < 1.6  # unrelated pairs: about 1
    assert id_consistency_loss(z * 1e-3).item() == pytest.approx(base.item(), rel=1e-4)
    assert id_consistency_loss(z * 1e3).item() == pytest.approx(base.item(), rel=1e-4)
    same = z.clone()
    same[1::2] = same[0::2]  # partners equal
    assert id_consistency_loss(same).item() == pytest.approx(0.0, abs=1e-6)
    # shrinking the codes does not reduce it: the gradient wrt a global scale is ~0
    s = torch.tensor(1.0, requires_grad=True)
    id_consistency_loss(z * s).backward()
    assert abs(s.grad.item()) < 1e-4


def test_batch_iou() -> None:
    target = torch.zeros(2, 1, 4, 4, 4)
    target[0, 0, :2] = 1
    logits = torch.full((2, 1, 4, 4, 4), -5.0)
    logits[0, 0, :1] = 5.0  # half of sample 0's cells
    iou = batch_iou(logits, target)
    assert iou[0].item() == pytest.approx(0.5) and iou[1].item() == 1.0  # empty vs empty counts 1


def _batch(b: int = 8, r: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "occ": (torch.rand(b, r, r, r, generator=g) > 0.6).to(torch.uint8),
        "occ_swap": (torch.rand(b, r, r, r, generator=g) > 0.6).to(torch.uint8),
        "rotation": torch.eye(3).expand(b, 3, 3),
        "scale": torch.full((b,), 0.6),
        "translation": torch.zeros(b, 2),
        "id_coeffs": torch.randn(b, 4, generator=g),
        "exp_coeffs": torch.randn(b, 3, generator=g),
    }


def _outputs(b: int = 8, r: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    vol = lambda: torch.randn(b, 1, r, r, r, generator=g, requires_grad=True)  # noqa: E731
    torch.manual_seed(seed)
    aux = AuxHeads(6, 3, 4, 3)
    z_id = torch.randn(b, 6, generator=g, requires_grad=True)
    z_exp = torch.randn(b, 3, generator=g, requires_grad=True)
    id_pred, exp_pred = aux(z_id, z_exp)
    return {
        "logits": vol(), "swap_logits": vol(), "cross_logits": vol(), "z_id": z_id, "z_exp": z_exp,
        "rotation": euler_to_matrix(30, 0, 0).expand(b, 3, 3), "scale": torch.full((b,), 0.5),
        "translation": torch.full((b, 2), 0.1), "id_pred": id_pred, "exp_pred": exp_pred,
    }


def test_compute_losses_total_is_the_weighted_sum() -> None:
    out, batch = _outputs(), _batch()
    cfg = LossConfig(occupancy=1.0, near_surface=0.5, pose=0.2, prior=0.01, swap=0.3,
                     id_consistency=0.1, coeff=0.05)
    total, terms = compute_losses(out, batch, cfg)
    assert all(isinstance(v, float) for v in terms.values())
    names = ["occupancy", "near_surface", "pose", "prior", "swap", "id_consistency", "coeff"]
    assert set(names) | {"total", "iou"} == set(terms)
    expect = sum(getattr(cfg, k) * terms[k] for k in names)
    assert total.item() == pytest.approx(expect, rel=1e-5)
    assert terms["total"] == pytest.approx(total.item())
    total.backward()
    assert out["z_id"].grad is not None and out["swap_logits"].grad is not None
    # pure: inputs untouched, same result twice
    _, again = compute_losses(_outputs(), _batch(), cfg)
    assert again == pytest.approx(terms)


def test_zero_weights_keep_gradients_flowing() -> None:
    out, batch = _outputs(), _batch()
    total, terms = compute_losses(out, batch, LossConfig(pose=0, prior=0, coeff=0, id_consistency=0))
    total.backward()
    assert "coeff" in terms and out["z_exp"].grad is not None  # zeros, but present (DDP needs it)


def test_perfect_prediction_scores() -> None:
    batch = _batch()
    occ = batch["occ"].float().unsqueeze(1)
    out = _outputs()
    out["logits"] = (occ * 2 - 1) * 30
    out["rotation"] = batch["rotation"]
    out["scale"], out["translation"] = batch["scale"], batch["translation"]
    _, terms = compute_losses(out, batch, LossConfig())
    assert terms["iou"] == 1.0
    assert terms["occupancy"] < 1e-6 and terms["near_surface"] < 1e-6 and terms["pose"] < 1e-6


@pytest.mark.parametrize("cells", [1, 2, 3])
def test_near_surface_mask_matches_the_max_pool_reference(cells: int) -> None:
    """The separable fast path equals the definition: dilation != erosion by a cubic max-pool."""
    g = torch.Generator().manual_seed(cells)
    occ = (torch.rand(3, 1, 9, 12, 7, generator=g) > 0.6).float()
    occ[0] = 0  # an empty grid: no band
    occ[1, :, :, :, :] = 1  # a full grid: no band either (the outside of the grid is not a label)
    k = 2 * cells + 1
    dil = torch.nn.functional.max_pool3d(occ, k, stride=1, padding=cells)
    ero = -torch.nn.functional.max_pool3d(-occ, k, stride=1, padding=cells)
    ref = dil != ero
    fast = near_surface_mask(occ, cells)
    assert fast.dtype == torch.bool and fast.shape == occ.shape
    assert torch.equal(fast, ref)
    assert not fast[:2].any() and fast[2].any()


@pytest.mark.parametrize("angle", [0.0, 1e-3, 90.0, 179.999, 180.0])
def test_pose_loss_gradient_is_finite_through_the_6d_pose_at_any_angle(angle: float) -> None:
    """The chordal form has no arccos: its gradient with respect to the encoder's raw 6D pose is
    finite at 0 and 180 degrees too (an arccos-of-trace geodesic loss is infinite at both)."""
    from voxface.models.voxface import decode_pose

    r0 = euler_to_matrix(20, -10, 5)[None]
    r = euler_to_matrix(angle, 0, 0)[None] @ r0
    raw = torch.cat([r[:, :, :2].transpose(1, 2).reshape(1, 6), torch.zeros(1, 3)], 1).requires_grad_()
    p = decode_pose(raw)
    loss = pose_loss(p.rotation, p.scale, p.translation, r0, torch.ones(1), torch.zeros(1, 2))
    loss.backward()
    assert loss.item() == pytest.approx(1 - math.cos(math.radians(angle)), abs=1e-5)
    assert torch.isfinite(raw.grad).all()


def test_reconstruction_terms_do_not_scale_with_the_batch_and_are_float32_under_bf16() -> None:
    """Means, not sums: the same samples twice give the same terms; bfloat16 logits (autocast)
    are scored in float32 with the same result up to the logits' rounding."""
    out, batch = _outputs(), _batch()
    cfg = LossConfig()
    _, one = compute_losses(out, batch, cfg)
    twice_out = {k: torch.cat([v, v]) for k, v in out.items()}
    twice = {k: torch.cat([v, v]) for k, v in batch.items()}
    _, two = compute_losses(twice_out, twice, cfg)
    for k in ("occupancy", "near_surface", "swap", "pose", "prior", "coeff", "iou"):
        assert two[k] == pytest.approx(one[k], rel=1e-5), k
    half = dict(out, logits=out["logits"].detach().bfloat16())
    _, bf = compute_losses(half, batch, cfg)
    ref = dict(out, logits=half["logits"].float())
    _, fp = compute_losses(ref, batch, cfg)
    assert bf["occupancy"] == pytest.approx(fp["occupancy"], rel=1e-6)
    assert bf["near_surface"] == pytest.approx(fp["near_surface"], rel=1e-6)

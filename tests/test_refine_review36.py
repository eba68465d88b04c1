"""Review 36: coarse-to-fine extraction (MISE) over more than two levels."""

from __future__ import annotations

import pytest
import torch

from voxface.refine import dense, grid_points_unit, mise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _coarse(field, r: int) -> torch.Tensor:
    idx = torch.stack(torch.meshgrid(*(torch.arange(r),) * 3, indexing="ij"), -1).reshape(-1, 3)
    return field(grid_points_unit(idx, r)).view(r, r, r)


def _plate(p: torch.Tensor) -> torch.Tensor:
    """A plate 0.05 thick (half-cube units) centred on a layer of the 8^3 grid's centres (z = 0.125):
    the 8^3 and 64^3 grids hold it, the 16^3 and 32^3 grids' centres (0.0625 and 0.03125 from its
    middle) all fall outside it."""
    return 100.0 * (0.025 - (p[:, 2] - 0.125).abs())


@pytest.mark.parametrize("dilate", [0, 1])
def test_mise_keeps_a_thin_part_two_middle_levels_fall_between(dilate):
    """Only the coarse grid's own samples were checked against the next level's (d26adf5), so a part
    the 8^3 and 64^3 grids show and both the 16^3 and 32^3 ones fall between was lost after one level:
    mise(levels=3) gave no plate where dense 64^3 has 8192 cells of it (the 64^3 model refined to 512^3
    through refine_logits, a 16^3 model's 128^3 validation). As Occupancy Networks' shared corner, the
    coarse sample is refined about at every level until a finer level shows the surface there."""
    assert [int((_coarse(_plate, r) > 0).sum()) for r in (8, 16, 32)] == [64, 0, 0]
    ref = dense(_plate, 64)
    fine, stats = mise(_coarse(_plate, 8), _plate, levels=3, dilate=dilate)
    assert (ref > 0).sum() == 2 * 64 * 64 and torch.equal(fine > 0, ref > 0)
    assert stats[-1]["points"] < 64 ** 3 / 4  # about the plate, not everywhere
    # the reverse: a thin gap in a solid
    gap = lambda p: -_plate(p)  # noqa: E731
    fine, _ = mise(_coarse(gap, 8), gap, levels=3, dilate=dilate)
    assert torch.equal(fine > 0, dense(gap, 64) > 0)


def test_a_smooth_surface_carries_no_hidden_point_across_levels():
    """Where no coarse sample hides a surface the rule adds nothing: a ball's three-level result and
    point counts are those of the straddling rule alone, and equal dense evaluation."""
    from voxface.refine import _hidden_points

    def ball(p: torch.Tensor) -> torch.Tensor:
        return 40.0 * (0.6 - (p - torch.tensor([0.05, -0.1, 0.02])).norm(dim=-1))

    c8 = _coarse(ball, 8)
    fine, stats = mise(c8, ball, levels=3)
    assert torch.equal(fine > 0, dense(ball, 64) > 0)
    f16, _ = mise(c8, ball, levels=1)
    f32, _ = mise(f16, ball, levels=1)
    first = _hidden_points(c8 > 0, f16 > 0)
    assert len(first[0]) == 0 and len(_hidden_points(f16 > 0, f32 > 0, first)[0]) == 0


def test_a_level_that_is_not_finite_is_refused_not_read_as_nothing_above_it():
    """mise(level=nan) refined nothing (no sample is above NaN, so no cube straddles it) and gave the
    coarse grid upsampled; logit_iou(level=nan) was 1.0 for any two grids (both empty). Both are the
    one-line argument error naming level; a string level was numpy's or torch's comparison TypeError."""
    from voxface.errors import InputError, InputTypeError
    from voxface.refine import logit_iou

    def ball(p: torch.Tensor) -> torch.Tensor:
        return 40.0 * (0.6 - p.norm(dim=-1))

    c = _coarse(ball, 8)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InputError, match=r"^level must be finite, got"):
            mise(c, ball, levels=1, level=bad)
        with pytest.raises(InputError, match=r"^level must be finite, got"):
            logit_iou(c, -c, level=bad)
    with pytest.raises(InputTypeError, match="level must be a real number"):
        mise(c, ball, levels=1, level="0")
    assert logit_iou(c, -c) == 0.0 and logit_iou(c, c, level=-1000.0) == 1.0
    fine, stats = mise(c, ball, levels=1, level=2.0)  # a finite level other than 0 is refined about as before
    assert stats[0]["points"] > 0 and torch.equal(fine > 2.0, dense(ball, 16) > 2.0)


@pytest.mark.parametrize("bad, words", [
    ({"hidden": 8.5}, "model.refine.hidden must be a whole number, got 8.5"),  # torch's TypeError in nn.Linear
    ({"pe_freqs": 2.5}, "model.refine.pe_freqs must be a whole number, got 2.5"),  # torch.empty's TypeError
    ({"layers": True}, "model.refine.layers must be a whole number, got True"),  # built one layer, silently
    ({"hidden": "8"}, "model.refine.hidden must be a whole number, got '8'"),  # '<' between str and int
], ids=["hidden-float", "pe-freqs-float", "layers-bool", "hidden-str"])
def test_a_head_config_that_is_not_whole_numbers_is_one_config_error(bad, words):
    """A RefineConfig built in Python (a config file's is type-checked by from_dict) with a count that is
    not a whole number reached torch: add_refine_head / train_refiner(head=...) failed with torch's
    TypeError, or built a head of True layers. One ConfigError naming the key; the model is left as it was."""
    from voxface.config import RefineConfig
    from voxface.errors import ConfigError
    from voxface.models import create_model
    from voxface.refine import add_refine_head

    from .conftest import SMALL_CONFIG

    m = create_model(SMALL_CONFIG).eval()
    with pytest.raises(ConfigError, match=words):
        add_refine_head(m, RefineConfig(**bad))
    assert m.refiner is None and m.config.refine is None
    assert add_refine_head(m, RefineConfig(hidden=8, layers=1, pe_freqs=2)).mlp[0].in_features == 16 + 1 + 12


def test_a_head_added_to_a_float64_model_is_float64_and_refines_it():
    """add_refine_head built the head in float32 whatever the model: on a model cast with .double()
    (which the decoders keep in float64) refine_logits and train_refiner then failed with torch's
    'mat1 and mat2 must have the same dtype, but got Double and Float'. The head takes the decoder's
    dtype; its logits are the float32 model's (an untrained head: trilinear upsampling)."""
    from voxface.config import RefineConfig
    from voxface.models import create_model
    from voxface.refine import RefineTrainConfig, add_refine_head, refine_logits, train_refiner

    from .conftest import SMALL_CONFIG, TOY_DATA

    torch.manual_seed(0)
    m32 = create_model(SMALL_CONFIG).eval()
    m64 = create_model(SMALL_CONFIG).eval()
    m64.load_state_dict(m32.state_dict())
    m64.double()
    heads = [add_refine_head(m, RefineConfig(hidden=8, layers=1, pe_freqs=2)) for m in (m32, m64)]
    assert {p.dtype for p in heads[1].parameters()} == {torch.float64}
    assert next(heads[0].parameters()).dtype == torch.float32
    z_id, z_exp = torch.randn(2, 8), torch.randn(2, 4)
    for method in ("mise", "dense"):
        a = refine_logits(m32, z_id, z_exp, resolution=32, method=method)
        b = refine_logits(m64, z_id, z_exp, resolution=32, method=method)
        for x, y in zip(a, b):
            assert y.head and y.logits.dtype == x.logits.dtype
            assert abs(y.logits - x.logits).max() < 1e-3
    res = train_refiner(m64, TOY_DATA, RefineTrainConfig(steps=1, batch_size=2, points=32, resolution=0, num_val=0))
    assert len(res.history) == 1 and {p.dtype for p in m64.refiner.parameters()} == {torch.float64}

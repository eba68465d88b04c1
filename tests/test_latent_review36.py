"""Review 36 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import pytest

from .conftest import run_cli


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


@pytest.fixture
def identity_prior_only(bundled):
    """The bundled model with a prior of the identity's statistics alone (load_model takes such a
    checkpoint, and sample draws the expression from N(0, I) with a warning); restored after."""
    prior = bundled.prior
    bundled.prior = {k: v for k, v in prior.items() if not k.startswith("z_exp")}
    yield bundled
    bundled.prior = prior


def test_principal_directions_of_a_space_the_prior_has_no_statistics_for_is_one_line(identity_prior_only):
    """``principal_directions(model, "expression")`` of a prior holding the identity's statistics
    only (a checkpoint load_model takes) was a bare ``KeyError: 'z_exp_std'``; the identity's
    directions are unchanged."""
    from voxface.errors import VoxfaceError
    from voxface.latent import principal_directions

    with pytest.raises(VoxfaceError, match=r"no z_exp statistics .*no expression directions"):
        principal_directions(identity_prior_only, "expression", k=2)
    dirs = principal_directions(identity_prior_only, "identity", k=2)
    assert [d.index for d in dirs] == [0, 1] and all(d.space == "identity" for d in dirs)


def test_walk_of_a_checkpoint_without_the_walked_spaces_prior_is_one_line_naming_it(
        identity_prior_only, tmp_path, monkeypatch, capsys):
    """``voxface walk -c X`` (``--space expression``, the default) of such a checkpoint ended in
    principal_directions' KeyError traceback; it is one error line naming the checkpoint, nothing
    written."""
    from voxface import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "id-only.pth.tar", identity_prior_only)
    out = tmp_path / "walk"
    code, _, err = run_cli(monkeypatch, capsys, "walk", "-o", out, "-c", ckpt, "--values=0,1", "--size", "32")
    assert code == 1 and "Traceback" not in err and "KeyError" not in err
    assert f"{ckpt}: this checkpoint's latent prior holds no z_exp statistics" in err
    assert not out.exists()

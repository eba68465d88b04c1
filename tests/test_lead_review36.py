"""Regression tests for the lead's review of session 36."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def toy(toy_root, cache_env):
    from voxface.data.ict import load_ict

    return load_ict(toy_root)


@pytest.mark.parametrize("fov", [(90.0, 90.0), (30.0, 150.0)])
def test_a_field_of_view_that_stands_the_camera_inside_the_head_is_refused(toy, fov):
    """Any field of view below 180 degrees was taken, but the camera stands 170 / tan(fov / 2) mm
    from the head's centre: at 150 degrees 46 mm, inside the head (the real ICT head gave a crop of
    the inside of the nose, scale 0.004, a mask on 3% of it, without a word). From 90 degrees on
    (170 mm) the config is refused, naming the key and why; below it every vertex of the head lies
    in front of the camera."""
    from voxface.data.synthetic import MAX_FOV, FaceSampler, SamplerConfig
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^sampler\.fov .* 0 < low <= high < 90 \(the camera stands 170 / tan"
                                          r"\(fov / 2\) mm from the head's centre: from 90 degrees on, inside"):
        FaceSampler(toy, SamplerConfig(image_size=16, fov=fov), seed=3)
    wide = FaceSampler(toy, SamplerConfig(image_size=16, fov=(MAX_FOV - 1, MAX_FOV - 1)), seed=3)
    for i in range(8):
        _, cam = wide.camera(i, wide.head.full_vertices(None, None))
        assert cam[:, 2].min() > 0  # the whole head in front of the camera
    inside = FaceSampler.__new__(FaceSampler)  # what 150 degrees drew (the check skipped): behind the camera
    inside.__dict__.update(wide.__dict__, cfg=SamplerConfig(image_size=16, fov=(150.0, 150.0)))
    assert min(inside.camera(i, wide.head.full_vertices(None, None))[1][:, 2].min() for i in range(8)) < 0


def test_the_priors_principal_directions_have_a_sign_the_svd_does_not_choose(monkeypatch):
    """compute_latent_prior stored torch.linalg.svd's rows as they came, whose signs are arbitrary (other
    LAPACK builds, other runs): 'walk +3 sd along direction k' could point the other way after a refit.
    Each direction is stored with its largest loading positive: an SVD giving every row negated stores
    the same prior, and the correlations that name directions follow the stored sign."""
    import torch

    import voxface.train
    from voxface.data import build_dataset
    from voxface.models import create_model
    from voxface.train import compute_latent_prior, resolve_config

    from .test_train import tiny

    cfg = resolve_config(tiny())
    ds = build_dataset(cfg["data"], "train", cfg["model"])
    torch.manual_seed(0)
    model = create_model(cfg["model"])
    first = compute_latent_prior(model, ds, list(range(8)))
    for name in ("z_id", "z_exp"):
        rows = first[f"{name}_pca"]["components"]
        assert len(rows) == min(7, rows.shape[1])  # n - 1 = 7 items, or the dimension
        assert (rows.gather(1, rows.abs().argmax(1, keepdim=True)) > 0).all()
    svd = torch.linalg.svd

    def flipped(a, full_matrices=True):
        u, s, vh = svd(a, full_matrices=full_matrices)
        return -u, s, -vh

    monkeypatch.setattr(voxface.train.torch.linalg, "svd", flipped)
    again = compute_latent_prior(model, ds, list(range(8)))
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(again[key], value), key
    for name in ("z_id", "z_exp"):
        pca, pca_again = first[f"{name}_pca"], again[f"{name}_pca"]
        assert "coeff_correlation" in pca  # the toy items know their coefficients: the directions are named
        assert pca.keys() == pca_again.keys()
        for key, value in pca.items():
            assert torch.equal(pca_again[key], value) if isinstance(value, torch.Tensor) else pca_again[key] == value


def test_export_mesh_to_a_name_ending_in_a_slash_says_it_names_a_folder(tmp_path):
    """export_mesh(m, "dir/x/") said "unknown mesh format '(no extension)'" of a path printed without its
    slash (Path drops it), where every other writer says the name ends in '/' (a folder); it now says so
    too, and writes nothing."""
    import trimesh

    from voxface.errors import InputError
    from voxface.mesh import export_mesh

    m = trimesh.creation.icosphere(1)
    with pytest.raises(InputError, match=r"ends in '/'") as e:
        export_mesh(m, f"{tmp_path}/x/")
    assert "format" not in str(e.value)
    assert not list(tmp_path.iterdir())
    with pytest.raises(InputError, match="unknown mesh format '\\(no extension\\)'"):  # a name without a slash: as before
        export_mesh(m, tmp_path / "x")

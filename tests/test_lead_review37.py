"""Review 37 by the lead: regressions."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_a_latent_file_made_by_other_weights_is_read_with_a_warning_naming_it(bundled, tmp_path):
    """``as_latents(model, "a.npz")`` of a file another model wrote (its ``model_sha256`` differs)
    was read without a word: the codes have the right shapes, so nothing else tells, and they
    decode to another face. It warns naming the file and both digests; a file of this model's, or
    one that records no model (written by other tools), reads silently, with the same codes."""
    import numpy as np

    from voxface.latent import as_latents, sample, save_latents
    from voxface.reconstruct import model_provenance

    codes = sample(bundled, 2, seed=3)
    ours = save_latents(codes, tmp_path / "ours.npz", **model_provenance(bundled))
    bare = save_latents(codes, tmp_path / "bare.npz")
    other = save_latents(codes, tmp_path / "other.npz", model_sha256=np.str_("0123456789abcdef"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (ours, bare):
            got = as_latents(bundled, path)
            assert np.array_equal(got.z_id.numpy(), codes.z_id.numpy())
    with pytest.warns(UserWarning, match=r"other\.npz: its codes were made by other weights "
                                         r"\(model_sha256 0123456789abcdef; this model's is [0-9a-f]{16}\)"):
        got = as_latents(bundled, other)
    assert np.array_equal(got.z_exp.numpy(), codes.z_exp.numpy())

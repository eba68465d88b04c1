"""Review 38 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import re
import warnings

import pytest


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_a_batch_given_where_one_face_is_taken_warns_that_the_first_is_used(bundled, tmp_path):
    """``latent.interpolate(model, batch, b)``, ``walk(model, batch, ...)`` and ``sample(...,
    base=batch)`` used the batch's first face without a word (``voxface interpolate`` warned, the
    API it calls did not): a researcher's batch of faces, or another command's ``latents.npz``, gave
    one face's morph as if it were the batch's. Each warns, naming the file (as the CLI's line
    does) or the argument; the result is the first face's, as before; one face warns nothing."""
    import torch

    from voxface.latent import interpolate, principal_directions, sample, save_latents, walk

    faces = sample(bundled, 3, seed=5)
    many = save_latents(faces, tmp_path / "many.npz")
    with pytest.warns(UserWarning, match=f"^{re.escape(str(many))} holds 3 faces; the first one is used$"):
        from_file = interpolate(bundled, many, faces[1], 3)
    with pytest.warns(UserWarning, match=r"^interpolate: b \(a batch\) holds 3 faces; the first one is used$"):
        from_batch = interpolate(bundled, faces[1], faces, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one face each: no warning
        one = interpolate(bundled, faces[0], faces[1], 3)
        back = interpolate(bundled, faces[1], faces[0], 3)
        d = principal_directions(bundled, "expression", k=1)[0]
        walked = walk(bundled, faces[0], d, [0.0, 1.0])
        kept = sample(bundled, 2, space="expression", base=faces[0])
    assert torch.equal(from_file.z_id, one.z_id) and torch.equal(from_file.z_exp, one.z_exp)
    assert torch.equal(from_batch.z_id, back.z_id) and torch.equal(from_batch.z_exp, back.z_exp)
    with pytest.warns(UserWarning, match=r"^walk: code \(a batch\) holds 3 faces"):
        assert torch.equal(walk(bundled, faces, d, [0.0, 1.0]).z_exp, walked.z_exp)
    with pytest.warns(UserWarning, match=r"^sample: base \(a batch\) holds 3 faces"):
        assert torch.equal(sample(bundled, 2, space="expression", base=faces).z_id, kept.z_id)

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


@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_a_code_both_ends_share_stays_that_code_at_every_step(bundled, mode):
    """``interpolate(face, set_expression(face, ...))`` (one identity, two expressions; default
    ``space="both"``, slerp) moved the shared identity off the face by float rounding at every
    middle step (slerp's norm and direction, ~3e-8): the identity was not the face's, bit for bit,
    and ``voxface interpolate``'s decoding (each distinct code once) decoded each step anew. A face
    to itself likewise. The shared code is the face's in every row."""
    import torch

    from voxface.latent import interpolate, sample, set_expression

    face = sample(bundled, 1, seed=7)
    smile = set_expression(bundled, face, {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0})
    codes = interpolate(bundled, face, smile, 9, mode=mode)
    assert all(torch.equal(codes.z_id[i], face.z_id[0]) for i in range(9))
    assert not torch.equal(codes.z_exp[4], face.z_exp[0])  # the expression moves
    same = interpolate(bundled, face, face, 5, mode=mode)
    assert all(torch.equal(same.z_id[i], face.z_id[0]) and torch.equal(same.z_exp[i], face.z_exp[0])
               for i in range(5))
    other = sample(bundled, 1, seed=8)  # different ends: unchanged path, exact ends
    path = interpolate(bundled, face, other, 5, mode=mode)
    assert torch.equal(path.z_id[0], face.z_id[0]) and torch.equal(path.z_id[-1], other.z_id[0])
    assert not torch.equal(path.z_id[2], face.z_id[0])


def test_the_latent_commands_codes_record_which_weights_made_them(bundled, tmp_path, monkeypatch, capsys):
    """``latents.npz`` of interpolate/transfer/walk/sample held the codes and no word of the weights
    (``voxface sample -c runs/x/last.pth.tar``: codes drawn from that file's prior, which a training
    replaces; the manifest names it by path alone), where every ``.npz`` of ``voxface reconstruct``
    and ``Reconstruction.save`` records them. They record ``reconstruct``'s provenance keys."""
    import numpy as np

    from voxface.latent import as_latents, sample, save_latents
    from voxface.reconstruct import model_provenance

    want = {k: v.item() for k, v in model_provenance(bundled).items()}
    assert {"model_sha256", "checkpoint", "checkpoint_sha256"} <= want.keys()
    a, b = save_latents(sample(bundled, 1, seed=1), tmp_path / "a.npz"), save_latents(sample(bundled, 1, seed=2),
                                                                                        tmp_path / "b.npz")
    runs = {"sample": ["sample", "-n", "1"], "interpolate": ["interpolate", a, b, "--steps", "2"]}
    for name, args in runs.items():
        out = tmp_path / name
        code, _, err = run_cli(monkeypatch, capsys, *args, "-o", out, "--size", "32")
        assert code == 0, err
        with np.load(out / "latents.npz") as z:
            assert {k: z[k].item() for k in want} == want
        assert len(as_latents(bundled, out / "latents.npz")) == (1 if name == "sample" else 2)


def test_save_latents_under_a_file_where_a_folder_is_needed_is_one_line_naming_the_path(tmp_path):
    """``save_latents(codes, "a.npz/x.npz")`` (a file where a folder of the path is needed) made the
    folders itself before the atomic writer could, and raised pathlib's bare ``FileExistsError:
    [Errno 17] File exists: 'a.npz'`` (``NotADirectoryError`` one level deeper), no VoxfaceError
    naming the file, where every other voxface writer says what stands in the way. Missing folders
    are still made."""
    import torch

    from voxface.errors import VoxfaceError
    from voxface.latent import save_latents
    from voxface.models import Latents

    codes = Latents(torch.zeros(1, 16), torch.zeros(1, 8))
    (tmp_path / "a.npz").write_bytes(b"x")
    for path in (tmp_path / "a.npz" / "x.npz", tmp_path / "a.npz" / "sub" / "x.npz"):
        with pytest.raises(VoxfaceError, match=r"x\.npz: cannot write file \(.*a\.npz is a file, where a folder is"):
            save_latents(codes, path)
    assert (tmp_path / "a.npz").read_bytes() == b"x"
    assert save_latents(codes, tmp_path / "new" / "deeper" / "c") == tmp_path / "new" / "deeper" / "c.npz"
    assert (tmp_path / "new" / "deeper" / "c.npz").is_file()


def test_a_directions_share_of_the_variance_is_of_the_whole_space_when_the_prior_stores_no_ratio(bundled):
    """A prior's PCA part may leave out ``explained_variance_ratio`` (load_model takes it): each
    Direction's share was then its variance over the *stored* directions' sum (the 16 of the 53
    expression dimensions summing to 100%), though the docstring and ``voxface walk``'s line say
    the share of the space's total variance. It is over the whole space's variance (the sum of the
    per-dimension variances, as compute_latent_prior stores the ratio)."""
    import torch

    from voxface.latent import principal_directions

    stored = {sp: principal_directions(bundled, sp, k=100) for sp in ("identity", "expression")}
    saved = {n: bundled.prior[n] for n in ("z_id_pca", "z_exp_pca")}
    try:
        for n in saved:
            bundled.prior[n] = {k: v for k, v in saved[n].items() if k != "explained_variance_ratio"}
        for sp, want in stored.items():
            got = principal_directions(bundled, sp, k=100)
            assert torch.allclose(torch.tensor([d.explained_variance_ratio for d in got]),
                                  torch.tensor([d.explained_variance_ratio for d in want]), rtol=2e-3, atol=0)
            assert sum(d.explained_variance_ratio for d in got) < 0.999
    finally:
        bundled.prior.update(saved)

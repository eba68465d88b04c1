"""Review 33 of the latent toolkit's outputs (voxface.cli._latent): the ends of a morph are the faces."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import run_cli


def _batch_dependent(monkeypatch):
    """Make ``decode_at`` depend on the size of its batch, as the real decoder's float kernels do
    (a face's logits moved by about 2e-5 with its batch mates, CPU and GPU alike), but visibly."""
    import voxface.reconstruct

    real = voxface.reconstruct.decode_at

    def decode_at(model, z_id, z_exp, *args, **kwargs):
        logits, grid, info = real(model, z_id, z_exp, *args, **kwargs)
        return [x + 0.05 * (len(z_id) - 1) for x in logits], grid, info

    monkeypatch.setattr(voxface.reconstruct, "decode_at", decode_at)


def _faces(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    rng = np.random.default_rng(0)
    np.savez(a, z_id=rng.normal(size=(1, 16)).astype(np.float32), z_exp=rng.uniform(size=(1, 8)).astype(np.float32))
    np.savez(b, z_id=rng.normal(size=(1, 16)).astype(np.float32), z_exp=rng.uniform(size=(1, 8)).astype(np.float32),
             pose_rotation=np.diag([1.0, -1.0, -1.0]).astype(np.float32)[None],
             pose_scale=np.array([0.8], np.float32), pose_translation=np.array([[0.05, -0.02]], np.float32))
    return a, b


def _alone(model, face, path):
    """``face``'s mesh decoded by itself (as ``voxface reconstruct`` decodes one photo), saved to ``path``."""
    from voxface.latent import as_latents
    from voxface.reconstruct import decode_latents

    return decode_latents(model, as_latents(model, face)[:1], batch_size=1)[0].save(path)[0].read_bytes()


@pytest.mark.parametrize("steps", [2, 8])
def test_transfers_morph_ends_are_its_target_and_its_transfer_byte_for_byte(tiny_model, tmp_path, monkeypatch,
                                                                             capsys, steps):
    """The morph's first step has the target's codes and its last the transfer's, exactly, but they
    were decoded again in other batches than target.ply and transfer.ply: the files differed (by up
    to 0.45 um with the bundled model). They are now the same decode: the same bytes, which are the
    faces decoded alone; the morph's steps are written as before (no vertex normals a render of the
    triptych cached on a shared mesh)."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    a, b = _faces(tmp_path)
    _batch_dependent(monkeypatch)
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "transfer", a, b, "-o", out, "--steps", steps, "--size", 32, "-c", ckpt)
    assert code == 0, err
    last = out / f"step_{steps - 1:02d}.ply"
    assert (out / "step_00.ply").read_bytes() == (out / "target.ply").read_bytes()
    assert last.read_bytes() == (out / "transfer.ply").read_bytes()
    assert (out / "target.ply").read_bytes() == _alone(tiny_model, b, tmp_path / "t.ply")
    assert (out / "source.ply").read_bytes() == _alone(tiny_model, a, tmp_path / "s.ply")
    assert b"property float nx" not in (out / "step_00.ply").read_bytes()


def test_interpolates_ends_are_the_faces_decoded_alone(tiny_model, tmp_path, monkeypatch, capsys):
    """step_00.ply of ``interpolate a.npz b.npz`` is A's code exactly, decoded in a batch with
    seven other steps: its logits differed from A decoded alone (``voxface reconstruct`` of one
    photo) by 1.8e-5 with the bundled model. The two ends are decoded alone now."""
    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    a, b = _faces(tmp_path)
    _batch_dependent(monkeypatch)
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "interpolate", a, b, "-o", out, "--size", 32, "-c", ckpt)
    assert code == 0, err
    assert (out / "step_00.ply").read_bytes() == _alone(tiny_model, a, tmp_path / "a.ply")
    assert (out / "step_07.ply").read_bytes() == _alone(tiny_model, b, tmp_path / "b.ply")


def test_decode_decodes_each_distinct_code_once_and_gives_each_row_its_own_record(tiny_model, monkeypatch):
    """Rows repeating a code are not decoded again: they get a record of their own (their own
    codes, a copy of the mesh: a render caching normals on one mesh must not change the other's file)."""
    import torch

    import voxface.reconstruct
    from voxface.cli._latent import _decode
    from voxface.models import Latents

    sizes = []
    real = voxface.reconstruct.decode_at

    def decode_at(model, z_id, z_exp, *args, **kwargs):
        sizes.append(len(z_id))
        return real(model, z_id, z_exp, *args, **kwargs)

    monkeypatch.setattr(voxface.reconstruct, "decode_at", decode_at)
    torch.manual_seed(0)
    z_id, z_exp = torch.randn(3, 16), torch.rand(3, 8)
    codes = Latents(torch.cat([z_id[:1], z_id, z_id[:1]]), torch.cat([z_exp[:1], z_exp, z_exp[:1]]))  # rows 0, 1, 4
    recs = _decode(tiny_model, codes, 0.5, {"resolution": None, "upsample": "decoder"}, alone=(0,))
    assert sizes == [1, 2]  # row 0 alone, then the two other distinct codes together
    assert len(recs) == 5
    for i in (1, 4):
        assert recs[i] is not recs[0] and recs[i].mesh is not recs[0].mesh
        assert np.array_equal(recs[i].mesh.vertices, recs[0].mesh.vertices)
        assert np.array_equal(recs[i].mesh.faces, recs[0].mesh.faces)
        assert torch.equal(recs[i].latents.z_id, codes.z_id[i : i + 1]) and recs[i].logits is None


def test_walks_zero_offset_is_its_start_face_decoded_alone(tiny_model, tmp_path, monkeypatch, capsys):
    """``walk a.npz --values -1,0,1``: the 0 sd step is A's code exactly, but was decoded in a batch
    with the other offsets (not the mesh ``voxface reconstruct`` made of A). It is decoded alone."""
    import torch

    from voxface.checkpoint import save_checkpoint

    d_id, d_exp = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    tiny_model.prior = {f"{n}_{k}": v for n, d in (("z_id", d_id), ("z_exp", d_exp))
                        for k, v in (("mean", torch.zeros(d)), ("std", torch.full((d,), 0.1)),
                                     ("pca", {"components": torch.eye(d)[:2],
                                              "explained_variance": torch.tensor([0.02, 0.01]),
                                              "explained_variance_ratio": torch.tensor([0.5, 0.25])}))}
    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    tiny_model.prior = None
    a, _ = _faces(tmp_path)
    _batch_dependent(monkeypatch)
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "walk", a, "--values", "-1,0,1", "-o", out, "--size", 32, "-c", ckpt)
    assert code == 0, err
    assert (out / "step_01.ply").read_bytes() == _alone(tiny_model, a, tmp_path / "a.ply")

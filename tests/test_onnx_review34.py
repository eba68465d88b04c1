"""Review 34 (ONNX export, interop, frame and rotations): regressions for defects found in this round."""

from __future__ import annotations

import os
import stat

import pytest


def test_exporting_over_earlier_graphs_keeps_their_permission_bits(tiny_model, tmp_path, monkeypatch):
    """export-onnx renamed new files of the default mode (0o666 less the umask) over the earlier
    ones: graphs made private (chmod 600: a model trained on private scans) or shared with a group
    (664) became 644 at the next export, though every other atomic write keeps the mode of the file
    it replaces (mesh._keep_mode). The graphs have that mode from the start, while they are written,
    not only once renamed. A new file still gets the default."""
    pytest.importorskip("onnx")
    import voxface.onnx as vo
    from voxface.onnx import FILES, export_onnx

    out = tmp_path / "o"
    export_onnx(tiny_model, out, check=False, speed=False)
    modes = {"encoder.onnx": 0o600, "decoder.onnx": 0o640, "onnx.json": 0o664, "onnx.md": 0o600}
    for name, mode in modes.items():
        os.chmod(out / name, mode)
    written, declare = [], vo._declare

    def spy(path, *args, **kwargs):  # the graph as torch.onnx.export wrote it, before any rename
        written.append(stat.S_IMODE(os.stat(path).st_mode))
        return declare(path, *args, **kwargs)

    monkeypatch.setattr(vo, "_declare", spy)
    export_onnx(tiny_model, out, check=False, speed=False)
    assert {n: stat.S_IMODE(os.stat(out / n).st_mode) for n in FILES} == modes
    assert written == [0o600, 0o640]

    fresh = tmp_path / "fresh"
    umask = os.umask(0o022)
    try:
        export_onnx(tiny_model, fresh, check=False, speed=False)
    finally:
        os.umask(umask)
    assert {stat.S_IMODE(os.stat(fresh / n).st_mode) for n in FILES} == {0o644}


def test_euler_angles_of_a_bfloat16_rotation():
    """euler_angles took a tensor through np.asarray, which has no bfloat16: a bfloat16 rotation
    (a pose under bfloat16 mixed precision, cast to save memory) was torch's bare 'TypeError: Got
    unsupported ScalarType BFloat16'. Any floating dtype is read now (as voxface.mesh reads
    tensors), requiring grad or not, and gives the angles to the dtype's precision."""
    import torch

    from voxface.frame import FRONTAL_ROTATION, euler_angles
    from voxface.rotation import euler_to_matrix

    r = euler_to_matrix(25.0, -12.0, 8.0)
    for dtype, tol in ((torch.bfloat16, 0.5), (torch.float16, 0.05), (torch.float64, 1e-5)):
        got = euler_angles(r.to(dtype).requires_grad_())
        assert got == pytest.approx((25.0, -12.0, 8.0), abs=tol), dtype
        cam = torch.from_numpy(FRONTAL_ROTATION).float() @ r  # the encoder's camera-frame pose too
        assert euler_angles(cam.to(dtype)) == pytest.approx((25.0, -12.0, 8.0), abs=tol), dtype


def test_the_6d_form_is_columns_and_pytorch3ds_rows_give_the_transpose():
    """rotation.py said the 6D form is 'the first two columns' without a word that PyTorch3D's
    rotation_6d_to_matrix, which a user of voxface.interop reaches for, reads rows: the encoder's
    pose fed to it is the inverse rotation. The docstring now says so; this pins both conventions
    (PyTorch3D's as its documented code computes it: Gram-Schmidt stacked as rows)."""
    import torch
    import torch.nn.functional as F

    from voxface import rotation
    from voxface.rotation import euler_to_matrix, matrix_to_rot6d, rot6d_to_matrix

    def pytorch3d_rotation_6d_to_matrix(d6):
        a1, a2 = d6[..., :3], d6[..., 3:]
        b1 = F.normalize(a1, dim=-1)
        b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
        return torch.stack((b1, b2, torch.cross(b1, b2, dim=-1)), dim=-2)

    r = euler_to_matrix(40.0, 15.0, -20.0)
    d6 = matrix_to_rot6d(r)
    assert torch.equal(d6, torch.cat([r[:, 0], r[:, 1]]))  # columns
    torch.testing.assert_close(rot6d_to_matrix(d6), r)
    torch.testing.assert_close(pytorch3d_rotation_6d_to_matrix(d6), r.T)  # PyTorch3D: the transpose
    assert not torch.allclose(pytorch3d_rotation_6d_to_matrix(d6), r, atol=0.1)
    assert "rows" in rotation.__doc__ and "transpose" in rotation.__doc__


def test_the_graphs_say_their_batch_is_at_least_one(tiny_model, tmp_path):
    """Both graphs fail in onnxruntime on an empty batch (a Reshape: GroupNorm's in the encoder, the
    decoder's first view), where PyTorch's encode/decode give empty outputs; onnx.md said only
    'dynamic batch axis', so a deployer whose detector found no face met onnxruntime's multi-line
    Reshape error. onnx.md (and the module docstring) now say the batch is at least 1."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np

    import voxface.onnx as vo

    out = tmp_path / "o"
    vo.export_onnx(tiny_model, out, check=False, speed=False)
    md = (out / "onnx.md").read_text()
    assert "a batch of at least 1" in md and "at least 1" in vo.__doc__
    enc, dec = vo.ort_session(out / "encoder.onnx"), vo.ort_session(out / "decoder.onnx")
    s, c = tiny_model.image_size, tiny_model.config.encoder
    with pytest.raises(Exception, match="Reshape"):  # what the doc warns of (if this passes one day, update it)
        enc.run(None, {"image": np.zeros((0, 3, s, s), np.float32)})
    with pytest.raises(Exception, match="Reshape"):
        dec.run(None, {"z_id": np.zeros((0, c.z_id), np.float32), "z_exp": np.zeros((0, c.z_exp), np.float32)})
    one = enc.run(None, {"image": np.zeros((1, 3, s, s), np.float32)})
    assert [o.shape[0] for o in one] == [1, 1, 1]


def test_the_export_records_which_weights_the_graphs_hold(tiny_model, tmp_path, monkeypatch):
    """onnx.json recorded the checkpoint's path only when given (None for export_onnx(load_model(p),
    out), the README's API call) and never its hash or epoch, nor the graphs' metadata anything but
    the voxface version: once training rewrote last.pth.tar, nothing told which weights a deployed
    encoder.onnx holds, where every .npz of voxface reconstruct records it (model_provenance). The
    export now records the same provenance in onnx.json and in each graph (less the local path),
    from model.source (the bytes load_model read, even if the file was replaced since: no second
    read), or from an explicit other checkpoint (read here; an unreadable one refused before
    anything is written)."""
    pytest.importorskip("onnx")
    import copy
    import hashlib
    import json

    import onnx
    import torch

    import voxface.checkpoint as vc
    from voxface.checkpoint import load_model, save_checkpoint
    from voxface.errors import CheckpointError
    from voxface.onnx import export_onnx
    from voxface.reconstruct import model_digest

    ckpt = save_checkpoint(tmp_path / "last.pth.tar", tiny_model, epoch=3)
    loaded_sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    model = load_model(ckpt)
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_checkpoint(ckpt, other, epoch=4)  # a training replaces the file after the load
    reads = []
    real = vc.CheckpointSource.of_file.__func__
    spy = classmethod(lambda cls, *a, **k: reads.append(a) or real(cls, *a, **k))
    monkeypatch.setattr(vc.CheckpointSource, "of_file", spy)

    want = {"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": loaded_sha, "checkpoint_epoch": 3,
            "model_sha256": model_digest(model)}
    for given in (None, ckpt):  # the API's default and what the CLI passes: the loaded bytes, not re-read
        out = tmp_path / f"o{given is None}"
        res = export_onnx(model, out, check=False, speed=False, checkpoint=given)
        rep = json.loads((out / "onnx.json").read_text())
        assert rep["checkpoint"] == want["checkpoint"] and res.checkpoint == want["checkpoint"]
        assert {k: rep["provenance"][k] for k in want} == want and "voxface_version" in rep["provenance"]
        for g in ("encoder.onnx", "decoder.onnx"):
            meta = {p.key: p.value for p in onnx.load(str(out / g)).metadata_props}
            assert json.loads(meta["provenance"]) == {k: v for k, v in rep["provenance"].items() if k != "checkpoint"}
    assert reads == []

    # a model made in code: its weights' digest, no file
    res = export_onnx(tiny_model, tmp_path / "code", check=False, speed=False)
    assert res.checkpoint is None and set(res.provenance) == {"voxface_version", "model_sha256"}
    # an explicit checkpoint that cannot be read: one line, nothing made
    with pytest.raises(CheckpointError, match="nope.pth"):
        export_onnx(tiny_model, tmp_path / "none", check=False, speed=False, checkpoint=tmp_path / "nope.pth")
    assert not (tmp_path / "none").exists()

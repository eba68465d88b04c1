"""ONNX export: both graphs match PyTorch within 1e-4 in onnxruntime, at several batch sizes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from voxface.checkpoint import save_checkpoint  # noqa: E402
from voxface.onnx import check_onnx, export_onnx, ort_session  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from voxface.models import create_model
    from voxface.refine import add_refine_head

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = create_model(TINY_CONFIG).eval()
    add_refine_head(model)  # not exported, must not get in the way
    out = tmp_path_factory.mktemp("onnx")
    res = export_onnx(model, out, batch=2, repeat=1)
    return model, out, res


def test_files_and_report(exported):
    model, out, res = exported
    assert res.encoder.exists() and res.decoder.exists()
    rep = json.loads((out / "onnx.json").read_text())
    assert rep["opset"] == res.opset and set(rep["max_abs_diff"]) == {"z_id", "z_exp", "pose", "logits"}
    assert rep["speed"]["speedup"]["encoder"] > 0 and rep["speed"]["speedup"]["decoder"] > 0
    md = (out / "onnx.md").read_text()
    assert "onnxruntime" in md and "| decoder |" in md
    assert max(res.max_abs_diff.values()) <= 1e-4


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_with_a_dynamic_batch(exported, batch):
    model, out, _ = exported
    enc, dec = ort_session(out / "encoder.onnx", threads=1), ort_session(out / "decoder.onnx", threads=1)
    img = torch.rand(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        z_id, z_exp, pose = model.encoder(img)
        logits = model.decode(z_id, z_exp)
    got = enc.run(None, {"image": img.numpy()})
    for ref, g in zip((z_id, z_exp, pose), got):
        assert g.shape == tuple(ref.shape)
        np.testing.assert_allclose(g, ref.numpy(), atol=1e-4, rtol=0)
    lg = dec.run(None, {"z_id": got[0], "z_exp": got[1]})[0]
    assert lg.shape == (batch, 1, 32, 32, 32)
    np.testing.assert_allclose(lg, logits.numpy(), atol=1e-4, rtol=0)
    assert max(check_onnx(model, out, batch_sizes=(batch,)).values()) <= 1e-4


def test_cli_export_onnx(tmp_path, tiny_model, monkeypatch, capsys):
    import voxface.cli

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    monkeypatch.setattr(sys, "argv", ["voxface", "export-onnx", str(ckpt), "-o", str(tmp_path / "o"), "--no-speed"])
    try:
        voxface.cli.main()
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "encoder.onnx" in out and (tmp_path / "o" / "decoder.onnx").exists()
    assert json.loads((tmp_path / "o" / "onnx.json").read_text())["speed"] == {}


def test_deform_decoder_exports_with_volume_grid_sample(tmp_path):
    """The template-deformation decoder samples a volume (GridSample on 5D tensors, opset 20)."""
    from voxface.models import create_model

    torch.manual_seed(0)
    model = create_model({
        "encoder": {"image_size": 32, "widths": [8, 16], "blocks": [1, 1], "z_id": 4, "z_exp": 3},
        "decoder": {"name": "deform", "resolution": 16, "widths": [16, 8], "shuffle": 2},
    }).eval()
    torch.nn.init.normal_(model.decoder.out.weight, std=0.05)  # a real displacement field
    with torch.no_grad():
        model.decoder.template.normal_(0, 2)
    res = export_onnx(model, tmp_path, speed=False)
    assert res.opset >= 20 and max(res.max_abs_diff.values()) <= 1e-4

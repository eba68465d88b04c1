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

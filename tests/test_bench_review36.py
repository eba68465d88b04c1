"""Review 36 of the benchmarks and the ONNX export: ``voxface/bench.py``, ``voxface/onnx.py``, their
commands and ``benchmarks/``."""

from __future__ import annotations

import os
import stat

import pytest


def test_an_export_over_read_only_graphs_replaces_them_and_keeps_them_read_only(tiny_model, tmp_path, monkeypatch):
    """4aa58dc gave each temporary the earlier file's mode before the writers (torch.onnx.export,
    onnx.save, write_text) reopened it by name: over graphs made read-only (chmod 444) the export
    failed with '<out>/encoder.onnx: cannot write file (Permission denied)' for any user but root,
    where every other voxface write (mesh.atomic_open) replaces such a file. The temporaries stay
    owner-writable while written (no more readable than the earlier files) and get their exact
    mode before the rename. (Repro as root without CAP_DAC_OVERRIDE: setpriv --bounding-set
    =-dac_override,-dac_read_search --inh-caps=-dac_override,-dac_read_search python ...)"""
    pytest.importorskip("onnx")
    import voxface.onnx as vo
    from voxface.onnx import FILES, export_onnx

    out = tmp_path / "o"
    export_onnx(tiny_model, out, check=False, speed=False)
    modes = {"encoder.onnx": 0o444, "decoder.onnx": 0o400, "onnx.json": 0o444, "onnx.md": 0o440}
    for name, mode in modes.items():
        os.chmod(out / name, mode)
    before = {n: (out / n).read_bytes() for n in ("encoder.onnx", "decoder.onnx")}
    written, declare = [], vo._declare

    def spy(path, *args, **kwargs):  # the graph torch.onnx.export wrote, which onnx.save now rewrites by name
        written.append(stat.S_IMODE(os.stat(path).st_mode))
        return declare(path, *args, **kwargs)

    monkeypatch.setattr(vo, "_declare", spy)
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        for p in tiny_model.parameters():  # other weights: the files are really replaced
            p.add_(0.01)
    export_onnx(tiny_model, out, check=False, speed=False)
    assert written == [0o644, 0o600]  # the owner may write; no one else may read more than before
    assert {n: stat.S_IMODE(os.stat(out / n).st_mode) for n in FILES} == modes
    assert all((out / n).read_bytes() != b for n, b in before.items())
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temporary left

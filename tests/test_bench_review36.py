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


def test_a_graph_giving_nan_fails_the_parity_check(tiny_model, tmp_path, monkeypatch):
    """check_onnx took each output's largest difference with max(previous, new): max(0.0, nan) is 0.0,
    so a decoder graph giving NaN (a wrongly exported op) was reported as parity 0 and export_onnx
    wrote it, onnx.md saying 'logits 0.00e+00'. NaN is the difference now, and the export refuses it
    in one line, writing nothing."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    import voxface.onnx as vo
    from voxface.errors import VoxfaceError

    real = vo._sessions

    class NanCell:  # the decoder graph, with one cell of every face's grid not a number
        def __init__(self, session):
            self.session = session

        def run(self, names, feeds):
            out = self.session.run(names, feeds)
            out[0][..., 0] = np.nan
            return out

    graphs = tmp_path / "g"
    vo.export_onnx(tiny_model, graphs, speed=False)
    monkeypatch.setattr(vo, "_sessions", lambda m, d, f: (real(m, d, f)[0], NanCell(real(m, d, f)[1])))
    diff = vo.check_onnx(tiny_model, graphs)
    assert np.isnan(diff["logits"]) and all(diff[k] <= 1e-4 for k in ("z_id", "z_exp", "pose"))
    out = tmp_path / "o"
    with pytest.raises(VoxfaceError, match=r"differs from PyTorch by more than 1e-4: \{'logits': nan\} \(nan: "):
        vo.export_onnx(tiny_model, out, speed=False)
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_graphs(tmp_path_factory):
    """(the tiny model, a folder of its exported graphs)."""
    pytest.importorskip("onnxruntime")
    import torch

    from .conftest import TINY_CONFIG
    from voxface.models import create_model
    from voxface.onnx import export_onnx

    torch.manual_seed(0)
    model = create_model(TINY_CONFIG).eval()
    out = tmp_path_factory.mktemp("graphs")
    export_onnx(model, out, check=False, speed=False)
    return model, out


@pytest.mark.parametrize("sizes", [(0,), (), (2.5,), (1, True)])
def test_check_onnx_refuses_batch_sizes_it_cannot_check_in_one_line(tiny_graphs, sizes):
    """check_onnx (public, as onnx_speed whose batch is checked) ran onnxruntime on an empty batch
    (its multi-line 'Non-zero status code returned while running Reshape node'), passed 2.5 to
    torch.rand (a TypeError listing its overloads), took True for a batch of 1, and with no batch
    size returned parity 0 for every output without running a graph. One VoxfaceError line."""
    import voxface.onnx as vo
    from voxface.errors import VoxfaceError

    model, graphs = tiny_graphs
    with pytest.raises(VoxfaceError, match=r"^batch_sizes .*: the parity check needs one or more whole numbers"):
        vo.check_onnx(model, graphs, batch_sizes=sizes)
    assert vo.check_onnx(model, graphs, batch_sizes=(2,))["logits"] <= 1e-4  # valid sizes as before


def test_the_data_sections_occupancy_comparison_gives_both_sides_the_same_rule(toy_root, monkeypatch):
    """bench_data timed the scanline occupancy through the sampler (the head's rule given) against the
    open3d reference with rule='auto', which checks the winding of every edge on each call (~2.5 ms
    of the reference's ~18 ms for the ICT head): the report's 'Scanline occupancy is 5.5x faster'
    charged the reference with work the scanline side is spared. Both sides now use the head's rule
    (the agreement check too)."""
    import voxface.data.synthetic as syn
    import voxface.occupancy as occ
    from voxface.bench import bench_data

    calls, real = [], occ.occupancy_grid

    def spy(*args, method="scanline", rule="auto", **kwargs):
        calls.append((method, rule))
        return real(*args, method=method, rule=rule, **kwargs)

    monkeypatch.setattr(occ, "occupancy_grid", spy)  # bench_data's reference
    monkeypatch.setattr(syn, "occupancy_grid", spy)  # the sampler's scanline
    res = bench_data(1, workers=1, ict_root=str(toy_root), rounds=1)
    scan = {rule for method, rule in calls if method == "scanline"}
    ray = {rule for method, rule in calls if method == "raycast"}
    assert len(scan) == 1 and "auto" not in scan and ray == scan
    assert res["occupancy_differing_voxels"] == 0

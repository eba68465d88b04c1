"""Review 32 (ONNX export and interop): regressions for defects found in this round."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import trimesh

from voxface.interop import from_pytorch3d, to_pytorch3d


class _Meshes:
    """The part of ``pytorch3d.structures.Meshes`` the interop uses: it keeps the tensors it is given."""

    def __init__(self, verts, faces):
        self._verts, self._faces = verts, faces

    def verts_list(self):
        return self._verts

    def faces_list(self):
        return self._faces


def _broken_pytorch3d(monkeypatch, error: ImportError) -> None:
    """An installed pytorch3d whose ``structures`` raises ``error`` on import."""
    import importlib.abc
    import importlib.machinery

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name in ("pytorch3d", "pytorch3d.structures"):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            if module.__name__ == "pytorch3d.structures":
                raise error

    for name in ("pytorch3d", "pytorch3d.structures"):  # the modules this import makes go again after the test
        monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])


@pytest.mark.parametrize("error", [
    ImportError("/site-packages/pytorch3d/_C.cpython-312-x86_64-linux-gnu.so: undefined symbol: _ZN3c10..."),
    ModuleNotFoundError("No module named 'iopath'", name="iopath"),
])
def test_a_pytorch3d_that_is_installed_but_does_not_import_is_not_called_missing(monkeypatch, error):
    """A pytorch3d built for another torch (its _C: 'undefined symbol') or missing a dependency was
    reported as 'pytorch3d is not installed': the user reinstalled what was there. It now says it is
    installed, the import's own error and the torch it must be built for, on one line."""
    _broken_pytorch3d(monkeypatch, error)
    with pytest.raises(ImportError) as e:
        to_pytorch3d(trimesh.creation.box())
    msg = str(e.value)
    assert msg.startswith("pytorch3d is installed but does not import") and "not installed" not in msg
    assert str(error).splitlines()[0] in msg and f"torch {torch.__version__}" in msg and "\n" not in msg
    # not installed at all: still the one line saying so
    monkeypatch.setitem(sys.modules, "pytorch3d", None)
    with pytest.raises(ImportError, match="^pytorch3d is not installed; it is an optional interop"):
        to_pytorch3d(trimesh.creation.box())


def test_pytorch3d_tensors_are_not_the_voxface_meshes_arrays(monkeypatch):
    """to_pytorch3d handed PyTorch3D the trimesh's own faces array (torch.as_tensor shares an int64
    array) and from_pytorch3d gave trimesh the tensors' memory (float64 vertices, int64 faces): an
    in-place edit on one side (a renderer's winding flip, an optimiser's step on the vertices)
    silently changed the other, behind trimesh's caches. Each side now has its own copy."""
    pkg, structures = types.ModuleType("pytorch3d"), types.ModuleType("pytorch3d.structures")
    structures.Meshes = _Meshes
    pkg.structures = structures
    monkeypatch.setitem(sys.modules, "pytorch3d", pkg)
    monkeypatch.setitem(sys.modules, "pytorch3d.structures", structures)

    box = trimesh.creation.box((10.0, 20.0, 30.0))
    faces0, verts0, volume0 = box.faces.copy(), box.vertices.copy(), box.volume
    p3d = to_pytorch3d(box)
    p3d.faces_list()[0][:] = p3d.faces_list()[0][:, [0, 2, 1]]  # the other winding, in place
    p3d.verts_list()[0].mul_(2.0)
    np.testing.assert_array_equal(box.faces, faces0)
    np.testing.assert_array_equal(box.vertices, verts0)
    assert box.volume == pytest.approx(volume0)
    pair = (torch.as_tensor(box.vertices, dtype=torch.float32), torch.as_tensor(box.faces))
    got = to_pytorch3d(pair)
    got.faces_list()[0].zero_()
    assert torch.equal(pair[1], torch.as_tensor(faces0))

    verts, faces = torch.as_tensor(verts0.copy()), torch.as_tensor(faces0.copy())  # float64, int64: as trimesh's
    back = from_pytorch3d(_Meshes([verts], [faces]))[0]
    verts.add_(100.0)
    faces[:] = faces[:, [0, 2, 1]]
    np.testing.assert_array_equal(back.vertices, verts0)
    np.testing.assert_array_equal(back.faces, faces0)
    assert back.volume == pytest.approx(volume0)


def test_check_and_speed_name_missing_foreign_or_unreadable_graphs_in_one_line(tmp_path):
    """check_onnx and onnx_speed on graphs exported from another model (another crop size or code
    lengths) raised onnxruntime's multi-line InvalidArgument ('Got invalid dimensions for input'), and
    onnx_speed turned it into 'a smaller --batch needs less memory'; a folder without graphs was a
    NoSuchFile traceback, a file that is no graph an InvalidProtobuf one, and a checkpoint path given as
    the model an AttributeError. Each is one line now, naming the graph and what differs."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from voxface.errors import InputTypeError, VoxfaceError
    from voxface.models import create_model
    from voxface.onnx import check_onnx, export_onnx, onnx_speed

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = create_model(TINY_CONFIG).eval()
    export_onnx(model, tmp_path / "tiny", speed=False)
    assert check_onnx(model, tmp_path / "tiny")["logits"] <= 1e-4  # its own graphs: still checked

    bigger = {"encoder": {**TINY_CONFIG["encoder"], "image_size": 96}, "decoder": TINY_CONFIG["decoder"]}
    other_codes = {"encoder": {**TINY_CONFIG["encoder"], "z_exp": 5}, "decoder": TINY_CONFIG["decoder"]}
    for cfg, graph, says in ((bigger, "encoder.onnx", "it takes image (B, 3, 64, 64); this model takes image "
                              "(B, 3, 96, 96)"),
                             (other_codes, "decoder.onnx", "it takes z_id (B, 16), z_exp (B, 8); this model takes "
                              "z_id (B, 16), z_exp (B, 5)")):
        other = create_model(cfg).eval()
        for run in (lambda: check_onnx(other, tmp_path / "tiny"), lambda: onnx_speed(other, tmp_path / "tiny", repeat=1)):
            with pytest.raises(VoxfaceError) as e:
                run()
            msg = str(e.value)
            assert msg == f"{tmp_path / 'tiny' / graph}: is a graph of another model: {says}"
            assert "memory" not in msg and "\n" not in msg

    with pytest.raises(VoxfaceError, match=r"encoder.onnx: no such ONNX graph; export it first"):
        check_onnx(model, tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "encoder.onnx").write_text("not a graph")
    with pytest.raises(VoxfaceError, match=r"junk/encoder.onnx: onnxruntime cannot load this graph \(") as e:
        onnx_speed(model, tmp_path / "junk", repeat=1)
    assert "\n" not in str(e.value)
    for run in (check_onnx, onnx_speed):
        with pytest.raises(InputTypeError, match="model must be a voxface.VoxFace .* got PosixPath"):
            run(tmp_path / "m.pth.tar", tmp_path / "tiny")


def test_an_export_removes_what_a_killed_export_left_but_not_a_running_ones(tmp_path, monkeypatch):
    """An export killed outright (SIGKILL: the OOM killer during the timing at a large --batch, a
    pre-empted job) left its hidden temporaries in the folder for good: the shipped model's two
    graphs are 23 MB, every later export kept them. A successful export now removes those untouched
    for STALE_TEMPORARY_S; a running export touches its own after each step, so a long phase (the
    timing at --batch 256 takes minutes) never makes them look abandoned to another export."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import os
    import time

    import voxface.onnx as vo
    from voxface.mesh import STALE_TEMPORARY_S, remove_stale_temporaries
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = create_model(TINY_CONFIG).eval()
    out = tmp_path / "graphs"
    out.mkdir()
    old = time.time() - 2 * STALE_TEMPORARY_S
    killed = [out / ".decoder.onnx.0badc0de.tmp", out / ".encoder.onnx.deadbeef.tmp", out / ".onnx.json.12345678.tmp"]
    for f in killed:
        f.write_bytes(b"half a graph")
        os.utime(f, (old, old))
    fresh = out / ".encoder.onnx.0123abcd.tmp"  # another export's, still being written
    fresh.write_bytes(b"")
    mine = out / ".notes.onnx.deadbeef.tmp"  # not one of the export's files
    mine.write_bytes(b"keep")
    os.utime(mine, (old, old))

    real_check = vo.check_onnx

    def long_check(*args, **kwargs):  # the phase before the timing took long: the temporaries went untouched
        for t in out.glob(".*.tmp"):
            if t not in killed and t not in (fresh, mine):
                os.utime(t, (old, old))
        return real_check(*args, **kwargs)

    real_speed = vo.onnx_speed

    def speed_while_another_export_ends(*args, **kwargs):  # another export into the folder finishes now
        for name in vo.FILES:
            remove_stale_temporaries(out / name, STALE_TEMPORARY_S)
        return real_speed(*args, **kwargs)

    monkeypatch.setattr(vo, "check_onnx", long_check)
    monkeypatch.setattr(vo, "onnx_speed", speed_while_another_export_ends)
    res = vo.export_onnx(model, out, batch=1, repeat=1)  # its own temporaries survived the other export
    assert res.max_abs_diff["logits"] <= 1e-4 and res.speed["batch"] == 1
    assert not any(f.exists() for f in killed)
    assert fresh.exists() and mine.read_bytes() == b"keep"
    assert sorted(p.name for p in out.iterdir()) == sorted([*vo.FILES, fresh.name, mine.name])


def test_a_failed_timing_names_the_runtime_that_failed(tmp_path, monkeypatch):
    """onnx_speed called every failure of its timed runs 'onnxruntime failed at batch N': PyTorch
    running out of memory at --batch 256 (its allocator's RuntimeError, raised before onnxruntime
    ran at all) sent the user after onnxruntime. The line names the runtime whose run failed."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import voxface.onnx as vo
    from voxface.errors import VoxfaceError
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = create_model(TINY_CONFIG).eval()
    vo.export_onnx(model, tmp_path, speed=False, check=False)

    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(model.encoder, "forward", oom)
    with pytest.raises(VoxfaceError, match=r"^PyTorch failed at batch 2 \(RuntimeError: \[enforce fail .* "
                       r"DefaultCPUAllocator: not enough memory\); a smaller --batch needs less memory$"):
        vo.onnx_speed(model, tmp_path, batch=2, repeat=1)
    monkeypatch.undo()

    class Session:  # an onnxruntime session whose run fails as onnxruntime's do
        def __init__(self, real):
            self.real = real

        def get_inputs(self):
            return self.real.get_inputs()

        def run(self, *args):
            raise ort_error("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code: bad_alloc")

    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException as ort_error

    real_session = vo.ort_session
    monkeypatch.setattr(vo, "ort_session", lambda *a, **k: Session(real_session(*a, **k)))
    with pytest.raises(VoxfaceError, match=r"^onnxruntime failed at batch 2 \(RuntimeException: .*bad_alloc\)"):
        vo.onnx_speed(model, tmp_path, batch=2, repeat=1)

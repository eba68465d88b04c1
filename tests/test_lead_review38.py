"""Defects the lead found in session 38, each with the test that failed before its fix."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from .test_reconstruct_review33 import face_png, tiny_model  # noqa: F401 - the same module fixtures


def test_sigterm_stops_any_command_as_ctrl_c_does(tmp_path: Path) -> None:
    """`voxface demo` (and any command without a handler of its own: checkpoint release, bench, data
    preview) died of SIGTERM by the default action: no word, and the half-written outputs stayed.
    The root group stops every command as Ctrl-C does: its cleanup runs, one ``terminated`` line,
    exit 143. The signal comes while the demo writes its first file."""
    out = tmp_path / "demo"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import voxface.viz
        from voxface.cli import main

        real = voxface.viz.save_png

        def save_png(*args, **kwargs):
            real(*args, **kwargs)  # the photo is on disk: the demo's cleanup must remove it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here

        voxface.viz.save_png = save_png
        sys.argv = ["voxface", "demo", "-o", {str(out)!r}, "--device", "cpu"]
        main()
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "terminated" and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()  # the folder the demo made, with the photo it wrote, is removed again


def test_ctrl_c_still_says_interrupted(tmp_path: Path) -> None:
    """The root group's SIGTERM handling leaves Ctrl-C as it was: ``interrupted``, exit 130."""
    script = textwrap.dedent(f"""
        import sys
        import voxface.checkpoint
        from voxface.cli import main

        def load_model(*args, **kwargs):
            raise KeyboardInterrupt

        voxface.checkpoint.load_model = load_model
        sys.argv = ["voxface", "demo", "-o", {str(tmp_path / 'demo')!r}, "--device", "cpu"]
        main()
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in proc.stderr


def test_skip_existing_remakes_a_photo_replaced_in_place(tiny_model, face_png, tmp_path) -> None:
    """--skip-existing skipped a photo replaced in place since its mesh was made (a bad crop fixed,
    a photo re-exported): its old mesh and codes stayed, another face's. An input newer than its mesh
    whose bytes differ from those summary.json recorded is made again, with a warning; one merely
    touched (same bytes) is still skipped, and an untouched one is not even read."""
    import json
    import os
    import warnings

    import numpy as np
    import pytest
    from PIL import Image, ImageOps

    from voxface.reconstruct import reconstruct_files

    photos = tmp_path / "in"
    photos.mkdir()
    for name in ("x.png", "y.png", "z.png"):
        (photos / name).write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    kw = dict(detect=False, progress=False, workers=1, latents=True)
    first = reconstruct_files(tiny_model, photos, out, **kw)
    assert len(first.ok) == 3
    z_before = np.load(out / "x.npz")["z_id"]
    later = os.stat(out / "x.ply").st_mtime_ns + 10**9
    with Image.open(face_png) as im:
        ImageOps.mirror(im).save(photos / "x.png")  # replaced: another photo under the same name
    os.utime(photos / "x.png", ns=(later, later))
    os.utime(photos / "y.png", ns=(later, later))  # touched: the same bytes
    with pytest.warns(UserWarning, match=r"x\.png: its bytes changed since an earlier run made its outputs"):
        again = reconstruct_files(tiny_model, photos, out, skip_existing=True, **kw)
    assert list(again.ok) == [str(photos / "x.png")] and not again.failed
    assert sorted(again.skipped) == [str(photos / "y.png"), str(photos / "z.png")]
    assert not np.allclose(np.load(out / "x.npz")["z_id"], z_before, atol=1e-4)  # the new photo's codes
    digests = json.loads((out / "summary.json").read_text())["digests"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a third run: everything is done, nothing to say
        third = reconstruct_files(tiny_model, photos, out, skip_existing=True, **kw)
    assert not third.ok and len(third.skipped) == 3
    assert json.loads((out / "summary.json").read_text())["digests"] == digests


def test_a_short_runs_loss_curve_is_drawn_at_full_strength(tmp_path: Path) -> None:
    """Under 100 logged steps no running mean is drawn, and the only loss line was the raw one at a
    quarter opacity: a smoke run's loss.png showed a curve barely darker than the grid. Without a
    mean the raw line is drawn at full strength; with one (100 steps and more) as before."""
    import numpy as np
    from PIL import Image

    from voxface.train import _plot

    def blue_pixels(n: int) -> int:
        history = [{"step": float(i), "total": 1.0 / (1 + i)} for i in range(n)]
        _plot(tmp_path / "loss.png", history, [[float(n - 1), 0.8]], 0.7)
        rgb = np.asarray(Image.open(tmp_path / "loss.png").convert("RGB")).astype(int)
        return int((np.abs(rgb - np.array([31, 119, 180])).sum(axis=-1) < 40).sum())  # matplotlib's tab:blue

    assert blue_pixels(60) > 300  # the curve itself, not a pale trace
    assert blue_pixels(200) > 300  # the running mean, unchanged


def test_an_error_about_a_file_with_a_newline_in_its_name_names_it_once(tmp_path: Path) -> None:
    """Code that re-raises an error under its own words stripped ``f"{e.path}: "`` off ``str(e)``,
    which holds the path escaped: for a name with a newline nothing was stripped and the file was
    named twice (``...x\\ny.pth.tar: exists and .../x\\ny.pth.tar: is not a torch checkpoint...``).
    ``VoxfaceError.problem`` is the message without the path."""
    import pytest

    from voxface.checkpoint import check_output_checkpoint
    from voxface.errors import CheckpointError, VoxfaceError

    e = VoxfaceError("cannot read\nthis", tmp_path / "a\nb.txt")
    assert e.problem == "cannot read this" and str(e) == f"{tmp_path}/a\\nb.txt: cannot read this"
    assert VoxfaceError("no file named").problem == "no file named"
    dst = tmp_path / "x\ny.pth.tar"
    dst.write_text("notes, not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        check_output_checkpoint(dst, "checkpoint")
    assert str(info.value).count("x\\ny.pth.tar") == 1, str(info.value)
    assert str(info.value).startswith(f"{tmp_path}/x\\ny.pth.tar: exists and ")


def test_bad_arguments_are_input_errors_as_the_readme_says(tiny_model, tmp_path: Path) -> None:
    """The README says a bad argument raises ``InputError`` (a ``ValueError``); these raised the bare
    ``VoxfaceError``, which ``except ValueError`` misses: ``Reconstruction.save(frame=...)``,
    evaluate's seed range and latents, ONNX's opset and batch, bench's sections, and rendering,
    plotting or framing a mesh without faces."""
    import numpy as np
    import pytest
    import trimesh

    from voxface import viz
    from voxface.bench import run_bench
    from voxface.errors import InputError
    from voxface.evaluate import check_seed_offset, evaluate
    from voxface.onnx import check_batch, check_onnx

    rec = tiny_model.reconstruct(np.full((64, 64, 3), 128, np.uint8), detect=False)
    with pytest.raises(InputError, match="frame must be one of"):
        rec.save(tmp_path / "x.ply", frame="bogus")
    with pytest.raises(InputError, match="seed offset"):
        check_seed_offset(-1)
    with pytest.raises(InputError, match="outside 0..2"):
        evaluate(tiny_model, num=1, seed_offset=2**32)
    with pytest.raises(InputError, match="latents must be"):
        evaluate(tiny_model, num=1, latents="mean")
    with pytest.raises(InputError, match="out of range"):
        check_batch(0)
    with pytest.raises(InputError, match="batch_sizes"):
        check_onnx(tiny_model, tmp_path, batch_sizes=())
    with pytest.raises(InputError, match="unknown bench section"):
        run_bench(out_md=tmp_path / "B.md", sections=("nope",))
    empty = trimesh.Trimesh(np.zeros((3, 3)), np.zeros((0, 3), int), process=False)
    with pytest.raises(InputError, match="without faces"):
        viz.render_mesh(empty)
    with pytest.raises(InputError, match="no vertices"):
        viz.shared_framing([trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), int))])


def test_a_face_sampler_takes_the_path_of_an_ict_folder(monkeypatch) -> None:
    """``voxface.FaceSampler("/data/ICT-FaceKit")`` (the natural first try) failed with a bare
    ``AttributeError: 'str' object has no attribute 'faces'``. A path is loaded with ``load_ict``;
    anything else that is no ``ICTModel`` is an ``InputTypeError`` naming what to pass."""
    import pytest

    import voxface.data.synthetic as synthetic
    from voxface.errors import InputTypeError

    loaded: list[object] = []

    class Loaded(Exception):
        pass

    def load_ict(path=None):
        loaded.append(path)
        raise Loaded  # the sampler went on to build from it: enough that it was loaded from the path

    monkeypatch.setattr(synthetic, "load_ict", load_ict)
    for given in ("/data/ICT-FaceKit", Path("/data/ICT-FaceKit"), None):
        with pytest.raises(Loaded):
            synthetic.FaceSampler(given)
    assert loaded == ["/data/ICT-FaceKit", Path("/data/ICT-FaceKit"), None]
    with pytest.raises(InputTypeError, match="ict must be an ICTModel"):
        synthetic.FaceSampler(42)


def test_latents_and_pose_print_on_one_line() -> None:
    """``Latents`` printed every code and pose tensor (about 160 lines for two faces in a notebook),
    where ``Reconstruction``'s repr is one line; both are one line now."""
    import torch

    from voxface.models.voxface import Latents, Pose

    pose = Pose(torch.eye(3).repeat(2, 1, 1), torch.ones(2), torch.zeros(2, 2))
    z = Latents(torch.randn(2, 64), torch.randn(2, 53), pose)
    assert repr(z) == "Latents(z_id=(2, 64), z_exp=(2, 53), float32, cpu, pose=yes)"
    assert repr(pose) == "Pose(batch=2, float32, cpu)"
    assert repr(Latents(torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 3))).endswith("float64, cpu, pose=none)")


def test_a_checkpoint_under_a_file_is_refused_before_the_work(tiny_model, tmp_path: Path, monkeypatch) -> None:
    """check_output_checkpoint skipped its write probe when a parent of the output was a file ('a file
    in the way is named by the write itself'): refine_checkpoint(out="afile/h.pth.tar") from Python
    trained the whole run and only then failed. The file in the way is named before any work."""
    import pytest

    import voxface.refine
    from voxface.checkpoint import check_output_checkpoint, save_checkpoint
    from voxface.errors import CheckpointError

    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "sub" / "h.pth.tar"
    with pytest.raises(CheckpointError) as info:
        check_output_checkpoint(out, "refined checkpoint")
    assert str(info.value) == f"{out}: cannot write file ({tmp_path / 'afile'} is a file, where a folder is needed)"
    assert info.value.reason == "output"

    def train_refiner(*args, **kwargs):
        raise AssertionError("trained before the output was checked")

    monkeypatch.setattr(voxface.refine, "train_refiner", train_refiner)
    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    with pytest.raises(CheckpointError, match="is a file, where a folder is needed"):
        voxface.refine.refine_checkpoint(ckpt, out, {"kind": "toy"})


def test_a_direction_compares_without_raising() -> None:
    """``latent.Direction``'s generated ``==`` compared its ``vector`` tensors: ``d == copy`` and
    ``d in directions`` raised "Boolean value of Tensor with more than one value is ambiguous".
    ``==`` is identity, as for ``Latents``."""
    import copy

    import torch

    from voxface.latent import Direction

    d = Direction("identity", 0, torch.tensor([1.0, 0.0]), 2.0, 0.5)
    twin = copy.copy(d)
    twin.vector = d.vector.clone()
    assert d == d and d != twin and d in [twin, d] and twin not in [d]
    assert torch.equal(d.vector, twin.vector)


def test_samples_of_the_srgb_anti_aliasing_are_not_grown_with_linear_ones(tmp_path: Path, toy_root, cache_env,
                                                                          monkeypatch, capsys) -> None:
    """f703d00 made the renderer average edge pixels in linear light; a data cache or export begun
    before it and grown after would mix edge pixels of the two renderers in one training set. Caches
    are format 4 (a format-3 cache is read as it is, never grown) and exports record ``antialias``."""
    import json

    import pytest

    from voxface.data.cache import CachedDataset, write_cache
    from voxface.errors import DataError

    from .conftest import run_cli

    root = toy_root
    kw = dict(seed=1, resolution=32, chunk=4, workers=0, progress=False, ict_root=str(root), image_size=32)
    out = write_cache(tmp_path / "c", 4, **kw)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == 4
    (out / "meta.json").write_text(json.dumps({**meta, "format": 3}))
    with pytest.raises(DataError, match=r"a cache of format 3 is already there: it was written before the "
                                        r"linear-light anti-aliasing fix \(its edge pixels averaged in sRGB\)"):
        write_cache(out, 8, **kw)
    assert len(CachedDataset(out)) == 4  # read as it is

    exp = tmp_path / "x"
    opts = ("--resolution", 32, "--points", 16, "--ict-root", root)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 1, "-o", exp, *opts)
    assert code == 0, err
    for p in (exp / ".export.json", exp / "000000.json"):
        recorded = json.loads(p.read_text())
        assert recorded["antialias"] == "linear"
        recorded.pop("antialias")  # as an export before the fix wrote them
        p.write_text(json.dumps(recorded))
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", exp, *opts)
    assert code == 1 and "holds samples exported before the linear-light anti-aliasing fix" in err, err
    assert not (exp / "000001.json").exists()

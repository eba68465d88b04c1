"""Reliability and security: bad checkpoints, bad images through the real CLI, crash-safe training.

What other modules already cover (not repeated here):

* ``tests/test_checkpoint.py``: code-running pickles refused without running them through
  ``load_checkpoint``/``inspect_checkpoint``/``load_model`` (zip, legacy, raw pickles); one distinct
  ``CheckpointError`` per bad file kind from the Python API; no fallback to unsafe loading.
* ``tests/test_train.py``: SIGINT exits 130 after writing a loadable checkpoint; SIGKILL at random
  moments (a checkpoint every step) never leaves a corrupt ``last.pth.tar``; in-process pause and
  resume equals an uninterrupted run.
* ``tests/test_image.py`` / ``tests/test_detect.py``: the loader and the detector on each file of
  ``tests/bad_images.py``.

This module adds: every torch.load in the package is ``weights_only=True`` (static check and a spy
over every load path, ``train --resume`` included); each bad checkpoint kind through the command
line (``inspect``, ``reconstruct -c``, ``train --resume``, ``train --config CFG --resume`` with
weights that do not fit CFG's model): one line, exit 1, no traceback; the whole bad-image corpus in
one ``voxface reconstruct`` batch as a user runs it (subprocess); no partial outputs when writing
fails; a missing input stops the command before the model is read; SIGKILL during a checkpoint
write and SIGINT, then ``--resume`` through the CLI, reproduce the uninterrupted loss history and
weights exactly.
"""

from __future__ import annotations

import ast
import copy
import inspect
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from voxface.checkpoint import FORMAT_VERSION, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
from voxface.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointVersionError,
    UnsafeCheckpointError,
    VoxfaceError,
)
from voxface.models import create_model
from voxface.viz import image_grid

from .bad_images import EXPECT_ERROR, make_corpus
from .conftest import TINY_CONFIG, run_cli

ROOT = Path(__file__).resolve().parents[1]
VOXFACE_BIN = str(Path(sys.executable).with_name("voxface"))
#: Generous: a subprocess needs seconds of CPU, but the shared cores may give it little.
TIMEOUT = 1800


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


@pytest.fixture
def reap():
    """``reap(proc)``: a subprocess still running when the test ends (a failure, a timeout) is killed."""
    procs: list[subprocess.Popen] = []
    yield procs.append
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def error_lines(stderr: str) -> list[str]:
    """The ``error: ...`` lines of a command's stderr (the progress bar writes there too)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]


def assert_one_error_line(code: int, out: str, err: str, path: Path | str) -> str:
    assert code == 1, (code, out, err)
    assert "Traceback" not in err + out
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    return lines[0]


# ===================================================================== 1. checkpoints are data


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``voxface init-checkpoint --config configs/tiny.yaml`` (seed 0), written in-process."""
    torch.manual_seed(0)
    model = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth.tar", model, extra={"init_seed": 0})


def make_bad_checkpoint(kind: str, d: Path, good: Path) -> Path:
    """One bad checkpoint file of each kind the issue lists (and a few more)."""
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{kind}.pth.tar"
    if kind == "missing":
        return d / "no-such-file.pth.tar"
    if kind == "zero-bytes":
        p.write_bytes(b"")
    elif kind == "truncated":
        data = good.read_bytes()
        p.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "zip-not-torch":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("weights/readme.txt", "not a torch file")
    elif kind == "npz":
        p = d / "weights.npz"
        np.savez(p, w=np.zeros(3))
    elif kind == "text":
        p.write_text("encoder: resnet\nz_id: 128\n")
    elif kind == "unsafe":
        torch.save({"state_dict": {}, "config": {}, "x": _RunsCode(d / "MARKER")}, p)
    elif kind == "wrong-architecture":
        ck = load_checkpoint(good)
        other = copy.deepcopy(TINY_CONFIG)
        other["encoder"]["z_id"] = 12
        ck["state_dict"] = create_model(other).state_dict()  # config says z_id 16, weights have 12
        torch.save(ck, p)
    elif kind == "wrong-version":
        ck = load_checkpoint(good)
        ck["meta"]["format_version"] = FORMAT_VERSION + 1
        torch.save(ck, p)
    elif kind == "foreign":  # First Order Motion Model's layout
        torch.save({"generator": {"w": torch.zeros(2)}, "kp_detector": {"w": torch.zeros(2)}, "epoch": 3}, p)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


#: kind -> (exception class load_model raises, words its message holds)
BAD_CHECKPOINTS = {
    "missing": (CheckpointError, "not found"),
    "zero-bytes": (CheckpointError, "empty (0 bytes)"),
    "truncated": (CheckpointError, "truncated"),
    "zip-not-torch": (CheckpointError, "zip archive but not a torch checkpoint"),
    "npz": (CheckpointError, "NumPy .npz archive"),
    "text": (CheckpointError, "text file"),
    "unsafe": (UnsafeCheckpointError, "would import posix.system"),
    "wrong-architecture": (ArchitectureMismatchError, "do not fit the architecture"),
    "wrong-version": (CheckpointVersionError, "upgrade voxface"),
    "foreign": (CheckpointError, "First Order Motion Model"),
}


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_ckpt")
    return {kind: make_bad_checkpoint(kind, d / kind, tiny_ckpt) for kind in BAD_CHECKPOINTS}


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("face") / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS).save(p)
    return p


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    """Static guard: each ``torch.load(...)`` passes ``weights_only=True``; no raw pickle loads."""
    offenders = []
    for py in sorted((ROOT / "voxface").rglob("*.py")):
        tree = ast.parse(py.read_text(), str(py))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f"{getattr(f.value, 'id', '?')}.{f.attr}" if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{py.relative_to(ROOT)}:{node.lineno}"
            if name == "torch.load":
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    offenders.append(f"{where}: torch.load without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load"):
                offenders.append(f"{where}: {name}")
            elif name == "np.load" and isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value:
                offenders.append(f"{where}: np.load(allow_pickle=True)")
    assert not offenders, offenders


def test_every_load_path_uses_weights_only_and_never_runs_code(tmp_path, tiny_ckpt, monkeypatch) -> None:
    """load_model, load_checkpoint, inspect_checkpoint and train(resume=) all read through
    ``torch.load(weights_only=True)``: a good file loads, a code-running pickle is refused unrun."""
    from voxface.train import train

    calls: list[Any] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's escape hatch must not matter
    evil = make_bad_checkpoint("unsafe", tmp_path, tiny_ckpt)
    marker = tmp_path / "MARKER"
    readers = {
        "load_checkpoint": load_checkpoint,
        "inspect_checkpoint": inspect_checkpoint,
        "load_model": lambda p: load_model(p, device="cpu"),
        "train --resume": lambda p: train(None, tmp_path / "run", resume=p, device="cpu", progress=False),
    }
    for name, read in readers.items():
        calls.clear()
        if name != "train --resume":
            read(tiny_ckpt)
            assert calls and all(c is True for c in calls), (name, calls)
            calls.clear()
        with pytest.raises(UnsafeCheckpointError) as ei:
            read(evil)
        assert "posix.system" in str(ei.value) and "\n" not in str(ei.value), name
        assert calls and all(c is True for c in calls), (name, calls)
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_through_the_python_api(bad_checkpoints, kind) -> None:
    cls, words = BAD_CHECKPOINTS[kind]
    path = bad_checkpoints[kind]
    with pytest.raises(CheckpointError) as ei:
        load_model(path, device="cpu")
    assert type(ei.value) is cls
    msg = str(ei.value)
    assert words in msg and "\n" not in msg and msg.startswith(f"{path}: ")


def test_bad_checkpoints_through_the_cli(bad_checkpoints, face_photo, tmp_path, monkeypatch, capsys) -> None:
    """``voxface reconstruct -c BAD`` and ``voxface inspect BAD``: one distinct line, exit 1.

    ``inspect`` reads a newer-format or wrong-architecture file (that is its job) and says what is
    wrong in its ``note`` line, exit 0."""
    messages: dict[str, str] = {}
    for kind, path in bad_checkpoints.items():
        cls, words = BAD_CHECKPOINTS[kind]
        out_dir = tmp_path / f"out-{kind}"
        line = assert_one_error_line(*run_cli(monkeypatch, capsys, "reconstruct", face_photo, "-o", out_dir,
                                              "-c", path, "--device", "cpu"), path)
        assert words in line and line.startswith(f"error: {path}: "), (kind, line)
        messages[kind] = line.replace(str(path), "<path>")
        assert not out_dir.exists() or not any(out_dir.iterdir()), kind  # nothing written

        code, out, err = run_cli(monkeypatch, capsys, "inspect", path)
        if kind in ("wrong-version", "wrong-architecture"):
            assert code == 0 and "Traceback" not in err, err
            note = next(l for l in out.splitlines() if l.startswith("note"))
            assert ("upgrade voxface" if kind == "wrong-version" else "do not fit the architecture") in note
        elif kind == "foreign":
            assert code == 0 and "First Order Motion Model" in out and "not a voxface model" in out
        else:
            assert words in assert_one_error_line(code, out, err, path)
    assert len(set(messages.values())) == len(messages), messages
    assert not (bad_checkpoints["unsafe"].parent / "MARKER").exists()


def test_bad_checkpoints_through_train_resume(bad_checkpoints, tmp_path, monkeypatch, capsys) -> None:
    """``voxface train --resume BAD``: one line, exit 1, nothing written, no code run.

    The wrong-architecture file holds no training config and no resume state (an
    ``init-checkpoint``-style file): the missing resume state is reported, since a config would not
    make it resumable; see test_train_resume_with_wrong_architecture."""
    for kind, path in bad_checkpoints.items():
        out_dir = tmp_path / f"run-{kind}"
        code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", path, "--out", out_dir,
                                 "--device", "cpu", "--no-progress")
        line = assert_one_error_line(code, out, err, path)
        words = ("holds weights only (no optimizer, scheduler, rng state" if kind == "wrong-architecture"
                 else BAD_CHECKPOINTS[kind][1])
        assert line.startswith(f"error: {path}: ") and words in line, (kind, line)
        assert not out_dir.exists(), kind
    assert not (bad_checkpoints["unsafe"].parent / "MARKER").exists()


#: a tiny toy run whose model is TINY_CONFIG (z_id 16), for ``train --resume`` on bad checkpoints
RESUME_CFG: dict[str, Any] = {
    "model": TINY_CONFIG, "data": {"kind": "toy", "num_train": 16, "num_val": 4},
    "train": {"batch_size": 4, "total_steps": 2, "val_every": 0, "ckpt_every": 0, "num_val": 4,
              "prior_samples": 4, "threads": 1},
}


@pytest.mark.parametrize("kind", ["wrong-architecture", "wrong-architecture-own-config", "foreign"])
def test_train_resume_with_wrong_architecture(bad_checkpoints, tmp_path, monkeypatch, capsys, kind) -> None:
    """``voxface train --config CFG --resume BAD`` where BAD's weights do not fit CFG's model (or BAD
    is another project's checkpoint), and ``voxface train --resume BAD`` where they do not fit the
    training config stored in BAD: one line naming the file (and the first mismatching key with both
    shapes), exit 1, no traceback, nothing written; the Python API raises the same error."""
    from voxface.train import train

    cfg = tmp_path / "toy.yaml"
    cfg.write_text(json.dumps(RESUME_CFG))
    if kind == "wrong-architecture-own-config":  # its stored run config says z_id 16, its weights 12
        path = tmp_path / "own-config.pth.tar"
        ck = load_checkpoint(bad_checkpoints["wrong-architecture"])
        ck["extra"] = {**(ck.get("extra") or {}), "run_config": copy.deepcopy(RESUME_CFG)}
        torch.save(ck, path)
        config_args: tuple[Any, ...] = ()
        api_config = None
        described = "its training config describes"
    else:
        path = bad_checkpoints[kind]
        config_args = ("--config", cfg)
        api_config = cfg
        described = f"the training config {cfg} describes"
    try:
        code, out, err = run_cli(monkeypatch, capsys, "train", *config_args, "--resume", path, "--out",
                                 tmp_path / "run", "--device", "cpu", "--no-progress")
    except Exception as e:  # noqa: BLE001 - what a user would see as a traceback
        pytest.fail(f"traceback: {type(e).__name__}: {str(e)[:200]}")
    line = assert_one_error_line(code, out, err, path)
    cls, words = BAD_CHECKPOINTS[kind.replace("-own-config", "")]
    assert line.startswith(f"error: {path}: ") and words in line, line
    if kind != "foreign":  # the first mismatching key and both shapes (z_id 12 vs 16)
        assert described in line, line
        ours = create_model(copy.deepcopy(TINY_CONFIG)).state_dict()
        theirs = load_checkpoint(path)["state_dict"]
        k = next(k for k in ours if ours[k].shape != theirs[k].shape)
        assert f"{k} has shape {tuple(theirs[k].shape)} in the checkpoint but {tuple(ours[k].shape)} in the model" \
            in line, line
    assert not (tmp_path / "run").exists()

    with pytest.raises(cls) as ei:
        train(api_config, tmp_path / "run-api", resume=path, device="cpu", progress=False)
    assert type(ei.value) is cls and str(ei.value) == line[len("error: "):]
    assert not (tmp_path / "run-api").exists()


def test_console_script_prints_no_traceback(bad_checkpoints) -> None:
    """The real console script (a separate process) on a truncated file and a code-running one."""
    for kind in ("truncated", "unsafe"):
        path = bad_checkpoints[kind]
        r = subprocess.run([VOXFACE_BIN, "inspect", str(path)], capture_output=True, text=True, env=_env(),
                           timeout=TIMEOUT)
        assert BAD_CHECKPOINTS[kind][1] in assert_one_error_line(r.returncode, r.stdout, r.stderr, path)
    assert not (bad_checkpoints["unsafe"].parent / "MARKER").exists()


# ===================================================================== 2. bad images, real CLI


def _face_variants(d: Path) -> dict[str, Path]:
    """The astronaut (256 px, one face) in the awkward encodings of the corpus: each must work."""
    from skimage import data

    rgb = Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS)
    grey = rgb.convert("L")
    out: dict[str, Path] = {}

    def save(name: str, im: Image.Image, **kw: Any) -> None:
        out[name] = d / name
        im.save(out[name], **kw)

    save("face_grey.png", grey)
    la = grey.convert("LA")
    la.putalpha(255)
    save("face_grey_alpha.png", la)
    rgba = rgb.convert("RGBA")
    a = np.full((256, 256), 255, np.uint8)
    a[:, :20] = 0  # a transparent strip at the left (composited over white)
    rgba.putalpha(Image.fromarray(a))
    save("face_rgba.png", rgba)
    save("face_16bit.png", Image.fromarray(np.asarray(grey).astype(np.uint16) * 257))
    save("face_cmyk.jpg", rgb.convert("CMYK"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter; the viewer (and voxface) turns it upright
    save("face_exif_rotated.jpg", rgb.transpose(Image.Transpose.ROTATE_90), quality=95, exif=exif.tobytes())
    frames = [rgb.convert("P", palette=Image.Palette.ADAPTIVE), Image.new("RGB", (256, 256), (0, 0, 255)).convert("P")]
    save("face_animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out


@pytest.fixture(scope="module")
def image_batch(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path) -> dict[str, Any]:
    """ONE ``voxface reconstruct`` subprocess over the whole bad-image corpus and the face variants."""
    d = tmp_path_factory.mktemp("images")
    corpus = make_corpus(d / "in")
    faces = _face_variants(d / "in")
    out = d / "out"
    stdout, stderr = d / "stdout.txt", d / "stderr.txt"
    cmd = [VOXFACE_BIN, "reconstruct", str(d / "in"), "-o", str(out), "-c", str(tiny_ckpt), "--device", "cpu",
           "--save-volume", "--batch-size", "4", "--workers", "2"]
    peak = d / "peak_rss_kib.txt"
    with open(stdout, "w") as so, open(stderr, "w") as se:
        # through a small launcher: a child forked from this (large) pytest process would report
        # pytest's own peak as its ru_maxrss (Linux carries the old image's high-water mark over exec)
        proc = subprocess.Popen([sys.executable, "-c", _PEAK_RSS_LAUNCHER, str(peak), *cmd],
                                stdout=so, stderr=se, env=_env(), start_new_session=True)
        try:
            proc.wait()
        except BaseException:  # interrupted (a timeout): leave no batch running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return {"corpus": corpus, "faces": faces, "out": out, "code": proc.returncode, "stdout": stdout.read_text(),
            "stderr": stderr.read_text(), "maxrss_mb": int(peak.read_text()) / 1024}


#: ``python -c LAUNCHER PEAK_FILE CMD...``: runs CMD in a child of this small process, writes the
#: peak resident set size (KiB) of CMD and its waited-for descendants to PEAK_FILE, exits with CMD's code
_PEAK_RSS_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


#: corpus entries a batch must report as failed (unreadable ones, and pictures without a face)
NO_FACE = {"one_pixel", "huge_jpeg", "gray_png", "la_png", "rgba_png", "png16", "cmyk_jpeg", "exif_rotated_jpeg",
           "animated_gif", "palette_png", "no_face"}


#: side of each preview panel (``Reconstruction.preview``'s default)
PREVIEW_SIZE = 256


def assert_complete_outputs(out: Path, stems: list[str], fmt: str = "ply", logits: bool = True) -> None:
    """Each stem has its mesh (watertight, loadable), preview PNG and NPZ (codes and pose; the occupancy
    logits too with ``logits``: ``--save-volume``); nothing else."""
    import trimesh

    expected = {"summary.json"}
    pad = inspect.signature(image_grid).parameters["pad"].default  # the preview's layout
    for stem in stems:
        mesh = trimesh.load(out / f"{stem}.{fmt}", force="mesh")
        assert len(mesh.faces) > 0 and mesh.is_watertight and np.isfinite(mesh.vertices).all(), stem
        with Image.open(out / f"{stem}_preview.png") as im:
            im.load()
            # four square panels (crop, overlay, front view, side view at yaw 60) in one row, ``pad`` px between
            # and around them: (256 + 2 pad) x (4 * 256 + 5 pad)
            panel = im.size[1] - 2 * pad
            assert panel == PREVIEW_SIZE and im.size[0] == 4 * panel + 5 * pad, (stem, im.size)
            assert np.asarray(im.convert("RGB"))[pad:-pad, pad:-pad].std() > 0, stem  # not blank
        expected |= {f"{stem}.{fmt}", f"{stem}_preview.png", f"{stem}.npz"}
        with np.load(out / f"{stem}.npz") as z:  # written by default: what interpolate / walk / transfer read
            assert z["z_id"].shape[0] == 1 and np.isfinite(z["z_id"]).all() and "pose_rotation" in z.files
            assert "crop_box" in z.files and "grid_side_mm" in z.files
            assert ("logits" in z.files) == logits, stem
            if logits:
                assert z["logits"].ndim == 3 and np.isfinite(z["logits"]).all()
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)  # no temp files, no strays


def test_bad_image_batch_through_the_cli(image_batch) -> None:
    corpus, faces, out = image_batch["corpus"], image_batch["faces"], image_batch["out"]
    inputs = {str(p) for p in [*corpus.values(), *faces.values()]}
    summary = json.loads((out / "summary.json").read_text())
    assert image_batch["code"] == 1  # some inputs failed
    assert set(summary["ok"]) | set(summary["failed"]) == inputs
    assert not set(summary["ok"]) & set(summary["failed"])

    expected_failed = {str(corpus[k]) for k in EXPECT_ERROR | NO_FACE}
    assert set(summary["failed"]) == expected_failed, summary["failed"]
    assert set(summary["ok"]) == {str(p) for p in faces.values()} | {str(corpus["two_faces"])}
    assert summary["faces"] == len(summary["ok"])  # one face each: the largest of two_faces

    # each failure: exactly one stderr line "error: <file>: <problem>", the one in summary.json
    lines = error_lines(image_batch["stderr"])
    assert "Traceback" not in image_batch["stderr"]
    assert sorted(lines) == sorted(f"error: {msg}" for msg in summary["failed"].values())
    for path, msg in summary["failed"].items():
        assert msg.startswith(f"{path}: ") and "\n" not in msg
    for name in EXPECT_ERROR:
        assert "no face found" not in summary["failed"][str(corpus[name])], name
    for name in NO_FACE:
        assert "no face found" in summary["failed"][str(corpus[name])], name
    assert "empty (0 bytes)" in summary["failed"][str(corpus["zero_bytes"])]
    assert "truncated" in summary["failed"][str(corpus["truncated_jpeg"])]
    assert "truncated" in summary["failed"][str(corpus["truncated_png"])]
    assert "megapixel limit" in summary["failed"][str(corpus["absurd_size_png"])]

    stems = sorted(Path(p).stem for p in summary["ok"])
    assert_complete_outputs(out, stems)
    assert f"{len(summary['ok'])} image(s)" in image_batch["stdout"]


def test_huge_image_in_the_batch_keeps_memory_bounded(image_batch) -> None:
    """The 10000x10000 JPEG (300 MB decoded) is read at reduced scale: the batch's peak stays low."""
    assert image_batch["maxrss_mb"] < 1200, image_batch["maxrss_mb"]


def test_all_faces_writes_one_result_per_face(image_batch, tiny_ckpt, tmp_path) -> None:
    src = image_batch["corpus"]["two_faces"]
    out = tmp_path / "out"
    r = subprocess.run([VOXFACE_BIN, "reconstruct", str(src), "-o", str(out), "-c", str(tiny_ckpt), "--device",
                        "cpu", "--all-faces", "--format", "obj"], capture_output=True, text=True, env=_env(),
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces"] == 2 and not summary["failed"]
    assert_complete_outputs(out, ["two_faces_0", "two_faces_1"], fmt="obj", logits=False)


def test_no_detect_on_a_face_crop(tiny_ckpt, tmp_path) -> None:
    """``--no-detect``: a ready crop (and a tiny 1x1 picture) is reconstructed as it is."""
    from skimage import data

    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(data.astronaut()[40:260, 120:340]).save(d / "crop.jpg", quality=95)
    Image.new("RGB", (1, 1), (200, 150, 120)).save(d / "dot.png")
    out = tmp_path / "out"
    r = subprocess.run([VOXFACE_BIN, "reconstruct", str(d), "-o", str(out), "-c", str(tiny_ckpt), "--device", "cpu",
                        "--no-detect", "--format", "stl"], capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not error_lines(r.stderr)
    assert_complete_outputs(out, ["crop", "dot"], fmt="stl", logits=False)
    # --no-latents: no .npz (mesh and preview only)
    r = subprocess.run([VOXFACE_BIN, "reconstruct", str(d / "crop.jpg"), "-o", str(tmp_path / "bare"), "-c",
                        str(tiny_ckpt), "--device", "cpu", "--no-detect", "--no-latents"], capture_output=True,
                       text=True, env=_env(), timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["crop.ply", "crop_preview.png", "summary.json"]


# ------------------------------------------------------------------------- no partial outputs


def _failing(exc: BaseException):
    def f(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return f


def _disk_full_on(monkeypatch, suffix: str, times: int = 1) -> None:
    """The first ``times`` writes of a file whose name ends with ``suffix`` fail as on a full disk
    (where ``atomic_write_files`` creates their temporaries)."""
    import voxface.mesh as mesh_mod

    real, left = mesh_mod._temporary, {"n": times}

    def temporary(path: Path):
        if path.name.endswith(suffix) and left["n"] > 0:
            left["n"] -= 1
            raise OSError(28, "No space left on device")
        return real(path)

    monkeypatch.setattr(mesh_mod, "_temporary", temporary)


@pytest.mark.parametrize("where", ["preview", "png-write", "npz-write", "mesh-write"])
def test_a_failing_write_leaves_no_partial_outputs(tiny_ckpt, face_photo, tmp_path, monkeypatch, where) -> None:
    """When writing one face fails (rendering, a full disk), none of its files remain and the
    batch records the failure and goes on."""
    import voxface.viz as viz
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    other = tmp_path / "other.png"
    other.write_bytes(face_photo.read_bytes())
    calls = {"n": 0}

    def fail_first(real):
        def f(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        return f

    if where == "preview":
        monkeypatch.setattr(viz, "render_mesh", fail_first(viz.render_mesh))
    else:
        _disk_full_on(monkeypatch, {"png-write": "_preview.png", "npz-write": ".npz", "mesh-write": ".ply"}[where])
    out = tmp_path / "out"
    s = reconstruct_files(model, [face_photo, other], out, save_volume=True, preview=True, workers=1,
                          progress=False)
    assert len(s.failed) == 1 and len(s.ok) == 1, (s.failed, s.ok)
    failed_stem = Path(next(iter(s.failed))).stem
    msg = next(iter(s.failed.values()))
    assert "\n" not in msg and "No space left" in msg
    ok_stem = Path(next(iter(s.ok))).stem
    assert_complete_outputs(out, [ok_stem])
    assert not list(out.glob(f"{failed_stem}.*"))



def test_preview_renders_only_the_views_it_shows(monkeypatch) -> None:
    """A photo's preview is crop, overlay, front view (yaw 0), side view (yaw 60): two mesh renders,
    not three (the yaw -60 one was rendered and dropped). Without a pose the crop is followed by
    three views (yaw 0, 60, -60); without a crop, the three views alone."""
    import trimesh

    import voxface.viz as viz
    from voxface.frame import FRONTAL_ROTATION, HEAD_RMS_RADIUS_MM
    from voxface.reconstruct import Reconstruction

    size = 40
    pad = inspect.signature(image_grid).parameters["pad"].default
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=HEAD_RMS_RADIUS_MM)
    mesh = trimesh.util.concatenate([mesh, trimesh.creation.icosphere(2, 20.0).apply_translation([80.0, 0, 0])])
    crop = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    pose = SimpleNamespace(rotation=torch.from_numpy(FRONTAL_ROTATION)[None].float(), scale=torch.tensor([0.5]),
                           translation=torch.zeros(1, 2))
    yaws: list[float] = []
    real = viz.render_mesh

    def spy(m: Any, **kw: Any) -> np.ndarray:
        yaws.append(kw["yaw"])
        return real(m, **kw)

    monkeypatch.setattr(viz, "render_mesh", spy)

    def panels(rec: Reconstruction) -> list[np.ndarray]:
        img = rec.preview(size)
        n = (img.shape[1] - pad) // (size + pad)
        assert img.shape == (size + 2 * pad, n * size + (n + 1) * pad, 3)
        return [img[pad:-pad, pad + j * (size + pad) : pad + j * (size + pad) + size] for j in range(n)]

    rec = Reconstruction(mesh=mesh, logits=np.zeros((2, 2, 2), np.float32), latents=None, pose=pose, grid=None,
                         crop=crop)
    row = panels(rec)
    assert yaws == [0.0, 60.0] and len(row) == 4
    assert (row[1] != row[0]).any()  # the overlay covers the crop
    np.testing.assert_array_equal(row[2], real(mesh, yaw=0.0, size=size))  # front
    np.testing.assert_array_equal(row[3], real(mesh, yaw=60.0, size=size))  # side, the subject's left
    assert not np.array_equal(row[3], real(mesh, yaw=-60.0, size=size))
    yaws.clear()
    rec.pose = None
    row = panels(rec)
    assert yaws == [0.0, 60.0, -60.0] and len(row) == 4
    np.testing.assert_array_equal(row[3], real(mesh, yaw=-60.0, size=size))
    yaws.clear()
    rec.crop = None
    assert yaws == [] and len(panels(rec)) == 3 and yaws == [0.0, 60.0, -60.0]


def test_missing_input_stops_before_the_model_is_loaded(face_photo, tmp_path, monkeypatch, capsys) -> None:
    """A missing photo or a pattern matching nothing: one line naming it, exit 1, nothing written,
    and the checkpoint is never read (it does not even exist here)."""
    missing = tmp_path / "missing.jpg"
    pattern = str(tmp_path / "*.tiff")
    no_ckpt = tmp_path / "no-such-model.pth.tar"
    for bad, words in ((missing, "no such file or directory"), (pattern, "no file matches this pattern")):
        out = tmp_path / "out"
        line = assert_one_error_line(*run_cli(monkeypatch, capsys, "reconstruct", face_photo, bad, "-o", out,
                                              "-c", no_ckpt, "--device", "cpu"), bad)
        assert line == f"error: {bad}: {words}", line
        assert not out.exists()


def test_same_stem_in_two_folders_never_overwrite_each_other(tiny_ckpt, face_photo, tmp_path) -> None:
    """``a/x.png``, ``b/x.png`` and ``c/x_1.png`` get three distinct output stems."""
    from voxface.reconstruct import reconstruct_files, unique_stems

    paths = []
    for sub, name in (("c", "x_1.png"), ("a", "x.png"), ("b", "x.png")):
        (tmp_path / sub).mkdir()
        paths.append(tmp_path / sub / name)
        paths[-1].write_bytes(face_photo.read_bytes())
    stems = unique_stems(paths)
    assert len(set(stems)) == 3 and stems[:2] == ["x_1", "x"], stems
    s = reconstruct_files(load_model(tiny_ckpt, device="cpu"), paths, tmp_path / "out", preview=True,
                          progress=False)
    assert len(s.ok) == 3 and not s.failed
    written = [f for files in s.ok.values() for f in files]
    assert len(written) == len(set(written)) == 6


def test_reconstruct_into_the_photos_own_folder_keeps_the_photos(tiny_ckpt, face_photo, tmp_path, monkeypatch,
                                                                  capsys) -> None:
    """``voxface reconstruct x.png -o <x.png's folder>`` writes ``x_preview.png`` beside the photo
    (the preview was ``x.png`` and overwrote it); a photo that *is* named like another input's
    preview is refused with one line, untouched, while the others go on."""
    photos = tmp_path / "photos"
    photos.mkdir()
    data = face_photo.read_bytes()
    for name in ("x.png", "y.jpg", "y_preview.png"):  # y.jpg's preview would be y_preview.png
        (photos / name).write_bytes(data if name != "y.jpg" else _as_jpeg(face_photo))
    before = {f.name: f.read_bytes() for f in photos.iterdir()}
    code, out, err = run_cli(monkeypatch, capsys, "reconstruct", photos, "-o", photos, "-c", tiny_ckpt,
                             "--no-detect", "--device", "cpu")
    assert code == 1, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == (f"error: {photos / 'y.jpg'}: its outputs would overwrite the input "
                        f"{photos / 'y_preview.png'}; write into another folder (-o)"), lines
    assert {n: (photos / n).read_bytes() for n in before} == before  # every photo as it was
    # the others were reconstructed beside them: x.ply, x_preview.png, and y_preview's own outputs
    assert {"x.ply", "x_preview.png", "y_preview.ply", "y_preview_preview.png"} <= {f.name for f in photos.iterdir()}
    assert not (photos / "y.ply").exists()


def test_rerunning_a_folder_into_itself_never_takes_its_previews_for_photos(tiny_ckpt, face_photo, tmp_path,
                                                                            monkeypatch, capsys) -> None:
    """``voxface reconstruct photos -o photos`` a second time (and with --skip-existing, and a
    ``**`` pattern over an output folder) leaves out the previews it wrote: no clash errors, no
    ``x_preview_preview.png``, the photos untouched; a preview named as a file is still taken."""
    from voxface.image import list_images
    from voxface.reconstruct import is_preview_output

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "x.png").write_bytes(face_photo.read_bytes())
    (photos / "y.jpg").write_bytes(_as_jpeg(face_photo))
    photo_bytes = {n: (photos / n).read_bytes() for n in ("x.png", "y.jpg")}
    args = ("reconstruct", photos, "-o", photos, "-c", tiny_ckpt, "--no-detect", "--device", "cpu")
    first = run_cli(monkeypatch, capsys, *args)
    assert first[0] == 0, first
    names = {f.name for f in photos.iterdir()}
    assert {"x.ply", "x_preview.png", "y.ply", "y_preview.png", "summary.json"} <= names
    for extra in ((), ("--skip-existing",)):
        code, out, err = run_cli(monkeypatch, capsys, *args, *extra)
        assert code == 0 and "error" not in err, (out, err)
        assert ("2 skipped" in out) == bool(extra), out
        assert {f.name for f in photos.iterdir()} == names
    assert {n: (photos / n).read_bytes() for n in photo_bytes} == photo_bytes
    assert is_preview_output(photos / "x_preview.png") and not is_preview_output(photos / "x.png")
    assert [p.name for p in list_images(str(tmp_path / "**" / "*.png"), exclude=is_preview_output)] == ["x.png"]
    # a preview without its mesh is someone's photo; one named on the command line is taken
    (photos / "x.ply").unlink()
    assert not is_preview_output(photos / "x_preview.png")
    (photos / "x.ply").write_bytes(b"")
    assert list_images([photos / "y_preview.png"], exclude=is_preview_output) == [photos / "y_preview.png"]


def test_an_interrupt_beside_pipeline_processes_keeps_what_they_finished(tiny_ckpt, face_photo, tmp_path,
                                                                        monkeypatch) -> None:
    """Ctrl-C while pipeline processes (the CPU default) run: the batches they finished, also while
    the running ones end, are in summary.json's ``ok`` (it listed none), each with its mesh."""
    import json

    import tqdm.auto

    from voxface.reconstruct import reconstruct_files

    class Bar:  # the progress bar the interrupt comes through, after the first batch
        def __init__(self, *args, **kwargs):
            self.calls = 0

        def update(self, k):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    paths = []
    for k in range(6):
        paths.append(tmp_path / f"f{k}.png")
        paths[-1].write_bytes(face_photo.read_bytes())
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        reconstruct_files(load_model(tiny_ckpt, device="cpu"), paths, out, detect=False, batch_size=1, workers=2,
                          progress=False)
    record = json.loads((out / "summary.json").read_text())
    assert record["stopped"] == "interrupted" and len(record["ok"]) >= 2, record
    assert sorted(record["ok"]) == [str(p) for p in paths if (out / f"{p.stem}.ply").exists()]


def test_skip_existing_tells_two_photos_of_one_name_apart(tiny_ckpt, face_photo, tmp_path, monkeypatch) -> None:
    """``a/x.png`` reconstructed into ``out``, then ``b/x.png`` (another photo, the same stem) with
    --skip-existing, from another working folder: summary.json's ``owners`` (absolute paths) gives
    ``x.ply`` to ``a/x.png``, so ``b/x.png`` is neither skipped nor allowed to replace a's files (one
    line); ``a/x.png`` again, spelled another way, is skipped; a rerun without --skip-existing replaces
    the files and their owner; without any summary (a run killed before writing one) the mesh is proof."""
    import json

    from voxface.image import load_image
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    for p, img in ((a, load_image(face_photo)), (b, load_image(face_photo)[:, ::-1])):
        p.parent.mkdir()
        Image.fromarray(np.ascontiguousarray(img)).save(p)
    monkeypatch.chdir(tmp_path / "a")
    assert list(reconstruct_files(model, [Path("x.png")], Path("../out"), detect=False, progress=False).ok) == ["x.png"]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.name != "summary.json"}
    assert json.loads((out / "summary.json").read_text())["owners"] == {"x.ply": str(a)}
    s = reconstruct_files(model, [Path("b/x.png")], out, detect=False, skip_existing=True, progress=False)
    assert not s.ok and not s.skipped and s.failed == {"b/x.png": (
        f"b/x.png: its outputs would replace those an earlier run made from {a}, another photo (x.ply: the same "
        "file name); rename it or write into another folder (-o)")}, s
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.name != "summary.json"} == before
    assert json.loads((out / "summary.json").read_text())["owners"] == {"x.ply": str(a)}  # carried on
    s = reconstruct_files(model, [Path("a/../a/x.png")], out, detect=False, skip_existing=True, progress=False)
    assert s.skipped == ["a/../a/x.png"] and not s.ok
    s = reconstruct_files(model, [b], out, detect=False, progress=False)  # no --skip-existing: b replaces a
    assert list(s.ok) == [str(b)] and (out / "x.ply").read_bytes() != before["x.ply"]
    assert json.loads((out / "summary.json").read_text())["owners"] == {"x.ply": str(b)}
    (out / "summary.json").unlink()
    s = reconstruct_files(model, [a], out, detect=False, skip_existing=True, progress=False)
    assert s.skipped == [str(a)]


def test_an_interrupted_batch_still_writes_its_summary(tiny_ckpt, face_photo, tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C (or a crash) part-way: summary.json records the inputs done so far and what stopped
    the run, and --skip-existing then resumes after them."""
    import json

    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"p{k}.png")
        paths[-1].write_bytes(face_photo.read_bytes())
    real, calls = rec_mod._collect, {"n": 0}

    def collect(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(rec_mod, "_collect", collect)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        reconstruct_files(model, paths, out, detect=False, batch_size=1, workers=1, progress=False)
    record = json.loads((out / "summary.json").read_text())
    # every face written is on record: the one the interrupt came through and the ones finished
    # while the writers ended too (they were left out, and a later run could take their files)
    written = [str(p) for p in paths if (out / f"{p.stem}.ply").exists()]
    assert sorted(record["ok"]) == written and record["stopped"] == "interrupted", record
    assert str(paths[0]) in written and str(paths[1]) in written
    monkeypatch.setattr(rec_mod, "_collect", real)
    s = reconstruct_files(model, paths, out, detect=False, workers=1, skip_existing=True, progress=False)
    # p0 on record; the faces being written when the interrupt came were finished whole (their meshes
    # are the proof); the rest is reconstructed now
    assert str(paths[0]) in s.skipped and not s.failed and sorted([*s.skipped, *s.ok]) == sorted(map(str, paths))
    record = json.loads((out / "summary.json").read_text())
    assert "stopped" not in record and record["ok_earlier"][str(paths[0])] == [str(out / "p0.ply")]
    # the command line: one line saying where the record is, exit 130
    calls["n"] = 0
    monkeypatch.setattr(rec_mod, "_collect", collect)
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", *paths, "-o", tmp_path / "cli", "-c", tiny_ckpt,
                           "--no-detect", "--workers", "1", "--batch-size", "1", "--device", "cpu")
    assert code == 130 and "Traceback" not in err, err
    record_path = tmp_path / "cli" / "summary.json"
    assert err.strip().splitlines()[-1] == (f"interrupted; what is done is listed in {record_path} "
                                            "(resume with --skip-existing)"), err
    assert (tmp_path / "cli" / "summary.json").exists()


def _batch_with_a_first_mesh(tiny_ckpt: Path, face_photo: Path, tmp_path: Path, n: int,
                             reap: Any) -> tuple[subprocess.Popen, Path, Path]:
    """``voxface reconstruct`` of ``n`` crops with two pipeline processes, in a session (process
    group) of its own, once its first mesh is on disk: ``(process, input folder, output folder)``."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for k in range(n):
        (src / f"f{k:02d}.png").write_bytes(face_photo.read_bytes())
    proc = subprocess.Popen([VOXFACE_BIN, "reconstruct", str(src), "-o", str(out), "-c", str(tiny_ckpt), "--no-detect",
                             "--no-preview", "--workers", "2", "--batch-size", "1", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    reap(proc)
    deadline = time.monotonic() + TIMEOUT
    while not list(out.glob("*.ply")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, src, out


def test_sigterm_stops_a_batch_as_ctrl_c_does_and_every_written_face_is_on_record(tiny_ckpt, face_photo, tmp_path,
                                                                                   reap) -> None:
    """SIGTERM to the process group of ``voxface reconstruct`` with pipeline processes (as timeout,
    systemd and Slurm send it): the processes stop at once, summary.json lists exactly the meshes
    on disk (those the stopped processes had written whole too), no partial file stays, one line,
    exit 143 (it was an exit with no summary while the processes went on writing)."""
    import json

    proc, src, out = _batch_with_a_first_mesh(tiny_ckpt, face_photo, tmp_path, 16, reap)
    os.killpg(proc.pid, signal.SIGTERM)  # as timeout, systemd and Slurm send it: to every process of the group
    _, err = proc.communicate(timeout=TIMEOUT)
    record = json.loads((out / "summary.json").read_text())
    meshes = sorted(str(src / f"{f.stem}.png") for f in out.glob("*.ply"))
    assert sorted(record["ok"]) == meshes, (record, meshes)
    if proc.returncode != 0:  # the signal may land after the last face
        assert proc.returncode == 143 and record["stopped"] == "interrupted", err[-2000:]
        assert err.strip().splitlines()[-1].startswith("terminated; what is done is listed in"), err[-2000:]
        assert len(meshes) < 16
    assert not list(out.glob(".*.tmp"))


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_the_commands_pipeline_processes_die_when_it_is_killed(tiny_ckpt, face_photo, tmp_path, reap) -> None:
    """``kill -9`` of ``voxface reconstruct``: its pipeline processes stop too (they inherited the
    command's SIGTERM handler and outlived it, writing on, with PDEATHSIG's SIGTERM caught)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    proc, _, _ = _batch_with_a_first_mesh(tiny_ckpt, face_photo, tmp_path, 24, reap)
    kids = _children(proc.pid)
    assert len(kids) >= 2, kids  # the two pipeline processes
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    alive = kids
    while alive:
        alive = [k for k in alive if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]]
        if alive and time.monotonic() > deadline:
            for k in alive:
                os.kill(k, signal.SIGKILL)
            pytest.fail(f"pipeline processes {alive} outlived the killed command")
        time.sleep(0.1)


def test_workers_die_with_their_parent(tmp_path) -> None:
    """A pipeline process whose parent is killed outright (``kill -9``) stops too, instead of
    holding a model's memory and writing on as an orphan."""
    from voxface.data.workers import die_with_parent

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    code = (
        "import multiprocessing as mp, os, sys, time\n"
        "from voxface.data.workers import die_with_parent\n"
        "def work():\n"
        "    print(os.getpid(), flush=True); time.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    from concurrent.futures import ProcessPoolExecutor\n"
        "    pool = ProcessPoolExecutor(1, mp_context=mp.get_context('fork'), initializer=die_with_parent)\n"
        "    pool.submit(work)\n"
        "    time.sleep(600)\n"
    )
    script = tmp_path / "parent.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=_env())
    child = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the worker outlived its parent"
        time.sleep(0.05)


def test_skip_existing_knows_a_photo_moved_since_and_keeps_each_photos_stem(tiny_ckpt, face_photo, tmp_path) -> None:
    """A folder of done photos moved elsewhere resumes as done (their bytes are on record), instead
    of every input failing as "another photo"; a photo of the same name added beside a done one gets
    the suffixed stem, instead of the done one being reconstructed again under it."""
    import json
    import shutil

    from voxface.image import load_image
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    one = tmp_path / "mv1" / "c00.png"
    one.parent.mkdir()
    one.write_bytes(face_photo.read_bytes())
    out = tmp_path / "out"
    assert list(reconstruct_files(model, [one], out, detect=False, progress=False).ok) == [str(one)]
    shutil.move(tmp_path / "mv1", tmp_path / "mv2")
    moved = tmp_path / "mv2" / "c00.png"
    s = reconstruct_files(model, [moved], out, detect=False, skip_existing=True, progress=False)
    assert s.skipped == [str(moved)] and not s.failed and not s.ok
    record = json.loads((out / "summary.json").read_text())
    assert record["owners"]["c00.ply"] == str(moved) and str(moved) in record["digests"]

    b = tmp_path / "b" / "x.png"
    a = tmp_path / "a" / "x.png"
    for p, img in ((b, load_image(face_photo)), (a, load_image(face_photo)[:, ::-1])):
        p.parent.mkdir()
        Image.fromarray(np.ascontiguousarray(img)).save(p)
    reconstruct_files(model, [b], out, detect=False, progress=False)
    before = (out / "x.ply").read_bytes()
    s = reconstruct_files(model, [a, b], out, detect=False, skip_existing=True, progress=False)
    assert s.skipped == [str(b)] and list(s.ok) == [str(a)], s
    assert (out / "x.ply").read_bytes() == before and (out / "x_1.ply").exists()
    record = json.loads((out / "summary.json").read_text())
    assert record["owners"]["x.ply"] == str(b) and record["owners"]["x_1.ply"] == str(a)

    # a done photo moved beside a new one of its name that sorts first: the moved one keeps its stem
    out2 = tmp_path / "out2"
    first = tmp_path / "m" / "x.png"
    first.parent.mkdir()
    first.write_bytes(b.read_bytes())
    reconstruct_files(model, [first], out2, detect=False, progress=False)
    moved_to = tmp_path / "z" / "x.png"
    moved_to.parent.mkdir()
    shutil.move(first, moved_to)
    s = reconstruct_files(model, [a, moved_to], out2, detect=False, skip_existing=True, progress=False)
    assert s.skipped == [str(moved_to)] and list(s.ok) == [str(a)] and not s.failed, s
    assert json.loads((out2 / "summary.json").read_text())["owners"]["x_1.ply"] == str(a)


def test_a_plain_run_after_an_all_faces_run_keeps_the_plain_names(tiny_ckpt, face_photo, tmp_path) -> None:
    """``--all-faces`` writes ``x_0.ply``; a later plain run of the same photo writes ``x.ply`` (it
    took the earlier file name ``x_0`` as the photo's stem)."""
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    x = tmp_path / "x.png"
    x.write_bytes(face_photo.read_bytes())
    out = tmp_path / "out"
    s = reconstruct_files(model, [x], out, all_faces=True, progress=False)
    assert (out / "x_0.ply").exists(), s
    s = reconstruct_files(model, [x], out, progress=False)
    assert (out / "x.ply").exists() and s.ok[str(x)] == [str(out / "x.ply")], s


def test_a_face_rewritten_keeps_no_files_of_the_earlier_one(tiny_ckpt, face_photo, tmp_path) -> None:
    """``a/x.png`` with --save-volume and a preview, then another photo ``c/x.png`` without them:
    x.ply is c's, and a's x.npz and x_preview.png go (they stayed, beside c's mesh: two faces'
    outputs under one name); a file no summary records is never removed."""
    import json

    from voxface.image import load_image
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    a, c = tmp_path / "a" / "x.png", tmp_path / "c" / "x.png"
    for p, img in ((a, load_image(face_photo)), (c, load_image(face_photo)[:, ::-1])):
        p.parent.mkdir()
        Image.fromarray(np.ascontiguousarray(img)).save(p)
    out = tmp_path / "out"
    reconstruct_files(model, [a], out, detect=False, save_volume=True, preview=True, progress=False)
    assert {"x.ply", "x.npz", "x_preview.png"} <= {f.name for f in out.iterdir()}
    (out / "y.npz").write_bytes(b"mine")  # the user's own file
    reconstruct_files(model, [c], out, detect=False, progress=False)
    assert sorted(f.name for f in out.iterdir()) == ["summary.json", "x.ply", "y.npz"]
    assert json.loads((out / "summary.json").read_text())["owners"] == {"x.ply": str(c)}


def test_a_read_only_output_folder_fails_before_any_face(tiny_ckpt, face_photo, tmp_path) -> None:
    """A folder that exists but cannot be written (a read-only mount: permission bits do not stop
    root) is refused before any face is read, not after the whole batch at summary.json."""
    from voxface.reconstruct import reconstruct_files

    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "none", str(ro)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here ({r.stderr.strip() or r.returncode})")
    try:
        with pytest.raises(VoxfaceError, match="cannot write into this output folder .*Read-only"):
            reconstruct_files(load_model(tiny_ckpt, device="cpu"), [tmp_path / "never-read.png"], ro,
                              detect=False, progress=False)
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_batch_inputs_paths_links_and_folders(tiny_ckpt, face_photo, tmp_path) -> None:
    """The batch API takes paths as strings; a link in the output folder that is an input is not
    replaced by another input's output; an input
    skipped on its mesh alone (a run killed before its summary) is recorded as that mesh's owner,
    so a later photo of the same name is refused rather than skipped."""
    import json

    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    one = tmp_path / "one.png"
    one.write_bytes(face_photo.read_bytes())
    s = reconstruct_files(model, [str(one)], tmp_path / "str", detect=False, progress=False)
    assert list(s.ok) == [str(one)] and (tmp_path / "str" / "one.ply").exists()

    here = tmp_path / "here"
    here.mkdir()
    (here / "y.png").write_bytes(face_photo.read_bytes())
    (here / "y_preview.png").symlink_to(one)  # an input that y.png's preview would replace
    s = reconstruct_files(model, [here / "y.png", here / "y_preview.png"], here, detect=False, preview=True,
                          progress=False)
    assert "would overwrite the input" in s.failed[str(here / "y.png")]
    assert (here / "y_preview.png").is_symlink()

    out = tmp_path / "out"
    reconstruct_files(model, [one], out, detect=False, progress=False)
    (out / "summary.json").unlink()  # as a run killed before it wrote one
    s = reconstruct_files(model, [one], out, detect=False, skip_existing=True, progress=False)
    assert s.skipped == [str(one)]
    assert json.loads((out / "summary.json").read_text())["owners"]["one.ply"] == str(one)
    other = tmp_path / "other" / "one.png"
    other.parent.mkdir()
    Image.fromarray(np.asarray(Image.open(face_photo))[:, ::-1].copy()).save(other)
    s = reconstruct_files(model, [other], out, detect=False, skip_existing=True, progress=False)
    assert not s.skipped and "would replace those an earlier run made from" in s.failed[str(other)]


def _as_jpeg(png: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(png).convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_skip_existing_needs_the_inputs_own_mesh(tiny_ckpt, face_photo, tmp_path) -> None:
    """``--skip-existing`` skips ``x`` only for ``x.<fmt>`` (``x_0.<fmt>`` with ``--all-faces``):
    another input's mesh ``x_0.ply`` is no proof that ``x`` is done. A resumed run's summary.json
    keeps what the earlier run wrote for the inputs it skips."""
    import json

    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    (tmp_path / "in").mkdir()
    first, second = tmp_path / "in" / "x_0.png", tmp_path / "in" / "x.png"
    for p in (first, second):
        p.write_bytes(face_photo.read_bytes())
    out = tmp_path / "out"
    s1 = reconstruct_files(model, [first], out, detect=False, progress=False)
    assert list(s1.ok) == [str(first)] and (out / "x_0.ply").exists()
    s2 = reconstruct_files(model, [first, second], out, detect=False, skip_existing=True, progress=False)
    assert s2.skipped == [str(first)] and list(s2.ok) == [str(second)], s2
    assert (out / "x.ply").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == {str(second): s2.ok[str(second)]}
    assert summary["ok_earlier"] == {str(first): s1.ok[str(first)]}  # the resumed run forgets nothing
    s3 = reconstruct_files(model, [first, second], out, detect=False, skip_existing=True, progress=False)
    assert sorted(s3.skipped) == sorted([str(first), str(second)]) and not s3.ok
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok_earlier"] == {str(first): s1.ok[str(first)], str(second): s2.ok[str(second)]}
    # --all-faces: x's proof is x_0.ply, which is there (first's mesh): documented, and the case
    # where modes are mixed in one folder; without --all-faces it is x.ply alone
    s4 = reconstruct_files(model, [second], tmp_path / "out4", detect=False, all_faces=True, progress=False)
    assert s4.ok and (tmp_path / "out4" / "x_0.ply").exists()
    s5 = reconstruct_files(model, [second], tmp_path / "out4", detect=False, all_faces=True, skip_existing=True,
                           progress=False)
    assert s5.skipped == [str(second)]


def test_batch_schedules_write_the_same_files(tiny_ckpt, face_photo, tmp_path, monkeypatch) -> None:
    """With the network on the CPU the batch pipeline extracts meshes in the calling thread, between
    batches (the network runs alone); on an accelerator, in the writer threads beside it. Both write
    the same files, and unreadable inputs (more of them in a row than a batch) are reported without
    holding up the others."""
    import threading

    import voxface.mesh as vm
    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    photo = np.asarray(Image.open(face_photo))
    paths, bad = [], {0, 1, 3, 5, 6}
    for i in range(9):
        paths.append(tmp_path / "in" / f"p{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        if i in bad:
            paths[-1].write_bytes(b"not an image")
        else:
            Image.fromarray(np.roll(photo, 3 * i, axis=1)).save(paths[-1])
    threads: list[int] = []
    real = vm.extract_mesh
    monkeypatch.setattr(vm, "extract_mesh", lambda *a, **k: threads.append(threading.get_ident()) or real(*a, **k))
    written = {}
    for on_cpu in (True, False):
        threads.clear()
        monkeypatch.setattr(rec_mod, "_network_on_cpu", lambda m, on_cpu=on_cpu: on_cpu)
        s = reconstruct_files(model, paths, tmp_path / f"out-{on_cpu}", detect=False, batch_size=2, workers=1,
                              progress=False)
        assert sorted(s.failed) == sorted(str(paths[i]) for i in bad) and s.faces == 4, (s.failed, s.ok)
        assert len(threads) == 4 and (set(threads) == {threading.get_ident()}) == on_cpu
        written[on_cpu] = {Path(f).name: Path(f).read_bytes() for files in s.ok.values() for f in files}
    assert written[True] == written[False] and len(written[True]) == 4


def _batch_inputs(face_photo: Path, d: Path, n: int, bad: set[int]) -> list[Path]:
    photo = np.asarray(Image.open(face_photo))
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(d / f"p{i}.png")
        if i in bad:
            paths[-1].write_bytes(b"not an image")
        else:
            Image.fromarray(np.roll(photo, 3 * i, axis=1)).save(paths[-1])
    return paths


def test_pipeline_processes_write_what_one_process_writes(tiny_ckpt, face_photo, tmp_path) -> None:
    """On the CPU, ``workers`` pipeline processes take the inputs a batch at a time: the same files,
    the same failures, and a summary in input order. The meshes are the same surfaces: byte for byte, or
    up to float rounding (a process's network runs on fewer threads and its batches are cut at
    other files, so its sums run in another order: here, hundredths of a millimetre on the tiny
    model's nearly flat random logits, a thousandth of a cell)."""
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    bad = {1, 6, 7, 8}
    paths = _batch_inputs(face_photo, tmp_path / "in", 11, bad)
    sums, written = {}, {}
    for w in (1, 2):
        sums[w] = reconstruct_files(model, paths, tmp_path / f"out-{w}", detect=False, batch_size=2, workers=w,
                                    progress=False)
        written[w] = {f.name: f.read_bytes() for f in (tmp_path / f"out-{w}").iterdir() if f.name != "summary.json"}
    for w in (1, 2):
        s = sums[w]
        assert list(s.failed) == [str(paths[i]) for i in sorted(bad)], s.failed
        assert list(s.ok) == [str(p) for i, p in enumerate(paths) if i not in bad] and s.faces == 7
        summary = json.loads((tmp_path / f"out-{w}" / "summary.json").read_text())
        assert summary["failed"] == s.failed and list(summary["ok"]) == list(s.ok)
    assert sums[1].failed == sums[2].failed
    assert written[1].keys() == written[2].keys() and len(written[1]) == 7
    for name in written[1]:
        if written[1][name] != written[2][name]:
            import trimesh

            a, b = (trimesh.load(tmp_path / f"out-{w}" / name) for w in (1, 2))
            assert a.vertices.shape == b.vertices.shape and np.abs(a.vertices - b.vertices).max() < 0.005 * model.grid.voxel_size, name
    assert sorted(written[2]) == sorted(f"{Path(p).stem}.ply" for p in sums[2].ok)  # no temp files


def test_a_pipeline_process_that_dies_fails_its_files_not_the_batch(tiny_ckpt, face_photo, tmp_path,
                                                                     monkeypatch) -> None:
    """A pipeline process killed mid-batch (here: it exits while loading one input) ends neither the
    call nor the other inputs' outputs: the files it and the unfinished batches held are reported
    failed, one line each; every mesh written is whole; the call returns and writes its summary."""
    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    paths = _batch_inputs(face_photo, tmp_path / "in", 12, set())
    real = rec_mod.prepare_crops

    def dying(image, *a, **k):  # forked pipeline processes inherit this
        if Path(image).name == "p9.png":
            os._exit(3)
        return real(image, *a, **k)

    monkeypatch.setattr(rec_mod, "prepare_crops", dying)
    out = tmp_path / "out"
    s = reconstruct_files(model, paths, out, detect=False, batch_size=2, workers=2, progress=False)
    assert set(s.ok) | set(s.failed) == {str(p) for p in paths} and not set(s.ok) & set(s.failed)
    assert str(paths[9]) in s.failed and "pipeline process stopped" in s.failed[str(paths[9])]
    for msg in s.failed.values():
        assert "\n" not in msg and "not reconstructed" in msg
    assert s.faces == len(s.ok)
    meshes = sorted(f.name for f in out.iterdir() if f.suffix == ".ply")
    assert {f"{Path(p).stem}.ply" for p in s.ok} <= set(meshes)  # each ok input has its mesh ...
    for name in meshes:  # ... and every mesh on disk is whole (a failed batch may have written some)
        import trimesh

        assert trimesh.load(out / name).is_watertight, name
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # no temporary files
    assert json.loads((out / "summary.json").read_text())["failed"] == s.failed


# ===================================================================== 3. crash-safe training

TRAIN_CFG: dict[str, Any] = {
    "model": {
        "encoder": {"image_size": 32, "widths": [8, 16, 32], "blocks": [1, 1, 1], "z_id": 8, "z_exp": 4},
        "decoder": {"resolution": 16, "widths": [32, 16]},
        "frame": {"side_mm": 300.0, "center_mm": [0.0, -10.0, 20.0]},
    },
    "data": {"kind": "toy", "num_train": 48, "num_val": 8, "cache": True},
    "train": {"batch_size": 8, "lr": 0.003, "total_steps": 10, "warmup_steps": 2, "val_every": 0,
              "ckpt_every": 1, "log_every": 1, "num_val": 8, "prior_samples": 16, "threads": 1},
}

#: Run inside the trainer process: the K-th checkpoint write stops after FRACTION of its bytes and
#: the process SIGKILLs itself there (the moment a real crash does the most harm).
_KILL_DURING_WRITE = r"""
import io, os, signal, sys
import torch
import voxface.checkpoint as ck
K, FRACTION = int(sys.argv[1]), float(sys.argv[2])
real_save, n = torch.save, [0]
def save(obj, f, *a, **kw):
    n[0] += 1
    if n[0] < K or not hasattr(f, "write"):
        return real_save(obj, f, *a, **kw)
    buf = io.BytesIO()
    real_save(obj, buf, *a, **kw)
    data = buf.getvalue()
    f.write(data[: int(len(data) * FRACTION)])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
ck.torch.save = save
sys.argv = ["voxface", *sys.argv[3:]]
from voxface.cli import main
main()
"""


def _log_steps(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from voxface.train import train

    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    try:
        train(copy.deepcopy(TRAIN_CFG), out, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(out / "last.pth.tar")


def test_kill_during_checkpoint_write_then_sigint_then_resume_is_exact(tmp_path, reference_run, reap) -> None:
    """SIGKILL in the middle of a checkpoint write (a seeded-random write and cut), resume, Ctrl-C at a
    random step (exit 130), resume again through the CLI: the final loss history and every weight
    equal those of the uninterrupted run; no corrupt ``last.pth.tar`` ever exists."""
    rng = random.Random(20240611)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps(TRAIN_CFG))
    run = tmp_path / "run"
    last = run / "last.pth.tar"
    k, frac = rng.randint(2, 6), rng.uniform(0.05, 0.95)  # checkpoints are written after every step

    r = subprocess.run([sys.executable, "-c", _KILL_DURING_WRITE, str(k), str(frac), "train", "--config", str(cfg),
                        "--out", str(run), "--device", "cpu", "--no-progress"],
                       capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    ck = load_checkpoint(last)  # the previous checkpoint, whole
    assert ck["step"] == k - 1 and len(ck["loss_history"]) == k - 1
    assert ck["loss_history"] == reference_run["loss_history"][: k - 1]

    # resume; Ctrl-C once a later step is logged
    proc = subprocess.Popen([VOXFACE_BIN, "train", "--resume", str(last), "--device", "cpu", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    reap(proc)
    target = rng.randint(k + 1, 8)

    def reached() -> bool:  # a step >= target logged by *this* (resumed) process
        log = _log_steps(run / "log.jsonl")
        starts = [i for i, e in enumerate(log) if e.get("event") == "start" and e.get("resumed")]
        return bool(starts) and any(e.get("event") == "train" and e["step"] >= target for e in log[starts[-1]:])

    deadline = time.monotonic() + TIMEOUT
    while not reached():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "resumed run made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode == 0:  # it finished before the signal landed: nothing left to resume
        assert load_checkpoint(last)["step"] == TRAIN_CFG["train"]["total_steps"]
    else:
        assert proc.returncode == 130, err[-2000:]
        assert "resume with --resume" in err and "Traceback" not in err
        stopped = load_checkpoint(last)["step"]
        # a signal after the last step lands in the run's wrap-up (prior, plots): exit 130 at the
        # last step, and the resume below only wraps up
        assert target <= stopped <= TRAIN_CFG["train"]["total_steps"]
        r = subprocess.run([VOXFACE_BIN, "train", "--resume", str(last), "--device", "cpu", "--no-progress"],
                           capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr[-2000:]

    final = load_checkpoint(last)
    assert final["step"] == reference_run["step"]
    assert final["loss_history"] == reference_run["loss_history"]
    for key, value in reference_run["state_dict"].items():
        assert torch.equal(value, final["state_dict"][key]), key
    steps = [e["step"] for e in _log_steps(run / "log.jsonl") if e.get("event") == "train"]
    assert steps == sorted(set(steps)) == list(range(1, reference_run["step"] + 1))


def test_sigterm_stops_cleanly_after_writing_a_checkpoint(tmp_path, reap) -> None:
    """SIGTERM (what ``kill``, systemd and job schedulers send) is handled like Ctrl-C: the step
    finishes, ``last.pth.tar`` is written, one line says how to resume, exit 143 (128 + SIGTERM, as
    every command; Ctrl-C exits 130), no traceback."""
    cfg = copy.deepcopy(TRAIN_CFG)
    cfg["train"].update(total_steps=100_000, ckpt_every=0)
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(json.dumps(cfg))
    run = tmp_path / "run"
    proc = subprocess.Popen([VOXFACE_BIN, "train", "--config", str(cfg_path), "--out", str(run), "--device", "cpu",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    reap(proc)
    deadline = time.monotonic() + TIMEOUT
    while not any(e.get("event") == "train" and e["step"] >= 2 for e in _log_steps(run / "log.jsonl")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    last = run / "last.pth.tar"
    assert f"resume with --resume {last}" in err, err[-2000:]
    ck = load_checkpoint(last)
    assert 2 <= ck["step"] < 100_000 and len(ck["loss_history"]) == ck["step"]
    assert _log_steps(run / "log.jsonl")[-1]["event"] == "end"
    assert not list(run.glob(".*.tmp"))


def test_resume_state_that_cannot_be_restored_is_one_line(reference_run, tmp_path, monkeypatch, capsys) -> None:
    """Weights that fit but optimizer state that does not (another parameter grouping): a
    ``CheckpointError`` ``cannot resume from it: ...`` naming the file, exit 1, nothing written."""
    ck = copy.deepcopy(reference_run)
    ck["optimizer"]["param_groups"] = ck["optimizer"]["param_groups"][:1]
    path = tmp_path / "odd-optimizer.pth.tar"
    torch.save(ck, path)
    out = tmp_path / "run"
    line = assert_one_error_line(*run_cli(monkeypatch, capsys, "train", "--resume", path, "--out", out,
                                          "--device", "cpu", "--no-progress"), path)
    assert line.startswith(f"error: {path}: cannot resume from it: "), line
    assert not out.exists()


def test_a_failed_save_keeps_the_earlier_outputs_whole(tiny_ckpt, face_photo, tmp_path, monkeypatch) -> None:
    """Saving again over earlier outputs and failing (an unknown extension; a full disk at any of
    the three files) leaves every earlier file byte for byte and no temporary: nothing is renamed
    into place before all are written (the earlier npz and preview were deleted)."""
    from voxface.image import load_image

    model = load_model(tiny_ckpt, device="cpu")
    written = model.reconstruct(face_photo, detect=False).save(tmp_path / "x.ply", save_volume=True, preview=True)
    assert [p.name for p in written] == ["x.ply", "x.npz", "x_preview.png"]
    before = {p.name: p.read_bytes() for p in written}
    rec = model.reconstruct(load_image(face_photo)[::-1].copy(), detect=False)  # other bytes in all three
    with pytest.raises(VoxfaceError, match=r"x\.off: unknown mesh format 'off'"):
        rec.save(tmp_path / "x.off", save_volume=True, preview=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    for suffix in (".npz", "_preview.png", ".ply"):
        _disk_full_on(monkeypatch, suffix)
        with pytest.raises(VoxfaceError, match=r"cannot write file \(No space left on device\)"):
            rec.save(tmp_path / "x.ply", save_volume=True, preview=True)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, suffix
    assert rec.save(tmp_path / "x.ply", save_volume=True, preview=True) == written
    assert all(p.read_bytes() != before[p.name] for p in written)


def test_save_whose_volume_path_is_a_folder_is_one_voxface_error(tiny_ckpt, face_photo, tmp_path) -> None:
    """rec.save(x.ply, save_volume=True) where x.npz is a folder: a VoxfaceError naming x.npz (it was
    a raw IsADirectoryError naming the temporary file), and no file of the face is left."""
    rec = load_model(tiny_ckpt, device="cpu").reconstruct(face_photo, detect=False)
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(VoxfaceError, match=r"x\.npz: cannot write file \(is a folder"):
        rec.save(tmp_path / "x.ply", save_volume=True, preview=True)
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]


def test_mesh_processes_beside_an_accelerator_write_what_one_process_writes(tiny_ckpt, face_photo, tmp_path,
                                                                           monkeypatch) -> None:
    """With the network on an accelerator (simulated: ``_network_on_cpu`` says no), a long batch is meshed
    and written by ``workers`` spawned mesh processes (threads of one process mesh on one core: measured
    7% of an H100's network throughput, BENCHMARKS.md): the same files byte for byte as the in-process
    writer threads (the network runs in this process either way), the same failures, input order kept."""
    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    bad = {2, 9}
    paths = _batch_inputs(face_photo, tmp_path / "in", 18, bad)
    monkeypatch.setattr(rec_mod, "_network_on_cpu", lambda m: False)
    started = []
    real_start = rec_mod._start_mesh_processes
    monkeypatch.setattr(rec_mod, "_start_mesh_processes", lambda n: started.append(n) or real_start(n))
    sums, written = {}, {}
    for w in (1, 3):
        sums[w] = reconstruct_files(model, paths, tmp_path / f"out-{w}", detect=False, batch_size=4, workers=w,
                                    progress=False)
        written[w] = {f.name: f.read_bytes() for f in (tmp_path / f"out-{w}").iterdir() if f.name != "summary.json"}
    assert started == [3]  # workers=1: writer threads; workers=3 and 18 >= 4 batches: three mesh processes
    for s in sums.values():
        assert list(s.failed) == [str(paths[i]) for i in sorted(bad)] and s.faces == 16
        assert list(s.ok) == [str(p) for i, p in enumerate(paths) if i not in bad]
    assert written[1] == written[3] and len(written[3]) == 16


def test_a_mesh_process_that_dies_fails_its_faces_not_the_batch(tiny_ckpt, face_photo, tmp_path, monkeypatch) -> None:
    """A mesh process killed mid-run (beside an accelerator): the faces it and the later ones held are
    reported failed with one line each, the call returns with its summary, every mesh on disk is whole."""
    import signal

    import trimesh

    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    paths = _batch_inputs(face_photo, tmp_path / "in", 16, set())
    monkeypatch.setattr(rec_mod, "_network_on_cpu", lambda m: False)
    real_start = rec_mod._start_mesh_processes

    class KillsOne:
        """The real pool; before the 6th face is handed over, one of its processes is killed."""

        def __init__(self, n):
            self.pool, self.n = real_start(n), 0

        def submit(self, *a, **k):
            self.n += 1
            if self.n == 6:
                self.pool.submit(int).result()  # the processes exist
                os.kill(next(iter(self.pool._processes)), signal.SIGKILL)
            return self.pool.submit(*a, **k)

        def shutdown(self, *a, **k):
            return self.pool.shutdown(*a, **k)

    monkeypatch.setattr(rec_mod, "_start_mesh_processes", KillsOne)
    out = tmp_path / "out"
    s = reconstruct_files(model, paths, out, detect=False, batch_size=2, workers=2, progress=False)
    assert set(s.ok) | set(s.failed) == {str(p) for p in paths} and not set(s.ok) & set(s.failed)
    assert s.failed and s.faces == len(s.ok)
    for msg in s.failed.values():
        assert "\n" not in msg and "a mesh process stopped" in msg, msg
    for f in out.iterdir():
        if f.suffix == ".ply":
            assert trimesh.load(f).is_watertight, f.name
    assert not [f for f in out.iterdir() if f.name.startswith(".")]
    assert json.loads((out / "summary.json").read_text())["failed"] == s.failed


def _hang_mid_write(item: tuple, job) -> None:
    """Stands in for ``voxface.reconstruct._mesh_and_write`` in a mesh process: opens the face's mesh
    file atomically (its hidden temporary file now exists), writes part of it, records this process's
    id beside the output folder, and never finishes."""
    from voxface.mesh import atomic_open
    from voxface.reconstruct import output_paths

    with atomic_open(output_paths(job.out, item[1], job.fmt)["mesh"]) as f:
        f.write(b"ply\n")
        f.flush()
        (job.out.parent / "writing.pid").write_text(str(os.getpid()))
        time.sleep(600)


def test_a_mesh_process_killed_beside_one_mid_write_leaves_no_temporary_file(tiny_ckpt, face_photo, tmp_path,
                                                                            monkeypatch) -> None:
    """The race CI met: one mesh process dies while another is writing. The pool fails every future,
    then terminates the writer mid-write, leaving its hidden temporary file; that file goes once the
    pool has stopped, and the face it was writing is reported failed."""
    import signal

    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    paths = _batch_inputs(face_photo, tmp_path / "in", 16, set())
    monkeypatch.setattr(rec_mod, "_network_on_cpu", lambda m: False)
    real_start = rec_mod._start_mesh_processes
    marker = tmp_path / "writing.pid"

    class KillsTheOther:
        """The real pool; the 6th face goes to a write that hangs, and once it is mid-write, the other
        process is killed."""

        def __init__(self, n):
            self.pool, self.n = real_start(n), 0

        def submit(self, fn, *a, **k):
            self.n += 1
            if self.n != 6:
                return self.pool.submit(fn, *a, **k)
            fut = self.pool.submit(_hang_mid_write, *a, **k)
            deadline = time.monotonic() + TIMEOUT
            while not marker.exists():
                assert time.monotonic() < deadline, "the hanging write never started"
                time.sleep(0.02)
            writer = int(marker.read_text())
            os.kill(next(p for p in self.pool._processes if p != writer), signal.SIGKILL)
            return fut

        def shutdown(self, *a, **k):
            return self.pool.shutdown(*a, **k)

    monkeypatch.setattr(rec_mod, "_start_mesh_processes", KillsTheOther)
    out = tmp_path / "out"
    s = reconstruct_files(model, paths, out, detect=False, batch_size=2, workers=2, progress=False)
    assert str(paths[5]) in s.failed and "a mesh process stopped" in s.failed[str(paths[5])]
    assert set(s.ok) | set(s.failed) == {str(p) for p in paths}
    assert not [f.name for f in out.iterdir() if f.name.startswith(".")]
    assert not (out / "p5.ply").exists()


def test_partial_writes_of_a_killed_process_go_and_nothing_else(tmp_path) -> None:
    """What a process killed mid-write leaves (``atomic_open``'s hidden temporaries) is removed for
    the failed stem and its ``all_faces`` stems only: finished outputs and other stems' files stay."""
    from voxface.reconstruct import _remove_partial_writes

    names = ["a.ply", "a.npz", ".a.ply.1234abcd.tmp", ".a.npz.0badf00d.tmp", ".a_preview.png.deadbeef.tmp",
             ".a_0.ply.00000000.tmp", ".ab.ply.11111111.tmp", ".b.ply.22222222.tmp", ".a.ply"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    _remove_partial_writes(tmp_path, "a")
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        ["a.ply", "a.npz", ".ab.ply.11111111.tmp", ".b.ply.22222222.tmp", ".a.ply"])
    _remove_partial_writes(tmp_path, "[b]")  # a stem is matched literally, never as a pattern
    assert (tmp_path / ".b.ply.22222222.tmp").exists()


def test_default_workers_follow_where_the_network_runs(tiny_ckpt, monkeypatch) -> None:
    """``workers=None`` (the CLI's default): two pipeline processes with the network on the CPU; beside
    an accelerator every usable core but two as mesh processes, never fewer than two."""
    import voxface.device
    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import default_workers

    model = load_model(tiny_ckpt, device="cpu")
    assert default_workers(model) == 2
    monkeypatch.setattr(rec_mod, "_network_on_cpu", lambda m: False)
    for cores, want in ((16, 14), (4, 2), (1, 2)):
        monkeypatch.setattr(voxface.device, "usable_cores", lambda cores=cores: cores)
        assert default_workers(model) == want

"""Concurrent writers: two ``voxface reconstruct`` processes on one output folder never corrupt a file.

Every output file is written to a hidden temporary file in the same folder and renamed over its
name (:func:`voxface.mesh.atomic_open`), so a reader sees a file whole, from one writer or the
other, never a mix. These tests run two real processes on overlapping inputs with *different*
models (so their files for the same photo differ) and check that each file afterwards is exactly
one writer's file, as that writer alone writes it (recorded first by running each writer alone with
the same command and thread settings: the numbers of an in-process run with other thread counts
differ in the last bits, enough to change a mesh); a threaded test hammers one path with two
writers and a reader.
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from voxface.checkpoint import load_model, save_checkpoint
from voxface.models import create_model
from voxface.reconstruct import reconstruct_image

from .conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[1]
VOXFACE_BIN = str(Path(sys.executable).with_name("voxface"))
#: Generous: a subprocess needs seconds of CPU, but the shared cores may give it little.
TIMEOUT = 1800
#: What ``reconstruct`` writes for a stem: the mesh, its preview and its codes.
ENDINGS = {"ply": ".ply", "png": "_preview.png", "npz": ".npz"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from skimage import data

    d = tmp_path_factory.mktemp("concurrency")
    ckpts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ckpts.append(save_checkpoint(d / f"seed{seed}.pth.tar", create_model(copy.deepcopy(TINY_CONFIG)).eval()))
    astro = data.astronaut()
    photos = []
    for i in range(6):  # six different face crops
        crop = astro[30 + 6 * i: 250 + 6 * i, 110 + 4 * i: 330 + 4 * i]
        photos.append(d / "in" / f"face{i}.png")
        photos[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(crop).save(photos[-1])
    return {"dir": d, "ckpts": ckpts, "photos": photos}


def _reconstruct_cmd(ck: Path, inputs: list[Path], out: Path) -> list[str]:
    return [VOXFACE_BIN, "reconstruct", *map(str, inputs), "-o", str(out), "-c", str(ck), "--device", "cpu",
            "--no-detect", "--save-volume", "--batch-size", "1", "--workers", "2"]


def _run_all(cmds: dict[str, list[str]]) -> None:
    """Start every command at once, wait for all; each must succeed."""
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in cmds.items():
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for name, p in procs.items():
            _, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, (name, err[-2000:])
    finally:  # a timeout or an interrupted test leaves no writer running
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_two_processes_on_one_output_folder(setup) -> None:
    """Writers A and B (different models) reconstruct overlapping photos into one folder at once.

    What each writer writes is first recorded by running it alone, in the same way (same
    command, same thread settings, so the same numbers), into a folder of its own; afterwards each
    file of the shared folder must be exactly one writer's file (bytes for the mesh and preview,
    arrays for the ``.npz``, whose zip entries carry the time of writing): whole, never a mix, and
    from a writer that had that photo."""
    import trimesh

    d, (ck_a, ck_b), photos = setup["dir"], setup["ckpts"], setup["photos"]
    jobs = {"a": (ck_a, photos[:4]), "b": (ck_b, photos[2:])}  # face2 and face3 written by both
    # references: each writer alone (the two run side by side, into separate folders)
    _run_all({name: _reconstruct_cmd(ck, inputs, d / f"ref-{name}") for name, (ck, inputs) in jobs.items()})
    # the test: both writers into one folder at the same time
    out = d / "out"
    _run_all({name: _reconstruct_cmd(ck, inputs, out) for name, (ck, inputs) in jobs.items()})

    stems = [p.stem for p in photos]
    names = sorted(p.name for p in out.iterdir())  # no temporary files, no strays
    assert names == sorted(["summary.json"] + [f"{s}{end}" for s in stems for end in (".ply", "_preview.png", ".npz")])
    for stem in stems:
        writers = [name for name, (_, inputs) in jobs.items() if stem in {p.stem for p in inputs}]
        refs = {name: {ext: (d / f"ref-{name}" / f"{stem}{end}").read_bytes() for ext, end in ENDINGS.items()}
                for name in writers}
        if len(refs) == 2:  # the models differ, so a file tells its writer
            assert refs["a"]["ply"] != refs["b"]["ply"], stem
            assert not _same_arrays(_npz_arrays(refs["a"]["npz"]), _npz_arrays(refs["b"]["npz"])), stem
        for ext in ("ply", "png"):
            data = (out / f"{stem}{ENDINGS[ext]}").read_bytes()
            assert [w for w in refs if refs[w][ext] == data], (stem, ext, len(data))  # one writer's, whole
        arrays = _npz_arrays((out / f"{stem}.npz").read_bytes())
        assert [w for w in refs if _same_arrays(_npz_arrays(refs[w]["npz"]), arrays)], (stem, "npz")
        mesh = trimesh.load(out / f"{stem}.ply", force="mesh")
        assert mesh.is_watertight and len(mesh.faces) > 0, stem
        with Image.open(out / f"{stem}_preview.png") as im:
            im.load()
    summary = json.loads((out / "summary.json").read_text())  # valid JSON, one writer's whole file
    assert not summary["failed"]
    assert set(summary["ok"]) in ({str(p) for p in jobs["a"][1]}, {str(p) for p in jobs["b"][1]})


def test_threads_writing_one_path_never_show_a_partial_file(setup, tmp_path) -> None:
    """Two writers save different reconstructions to the same path, a reader reads all along:
    every read is one writer's complete file (the mesh byte for byte; the ``.npz`` array for array,
    as its zip entries carry the time of writing)."""
    d, (ck_a, ck_b), photos = setup["dir"], setup["ckpts"], setup["photos"]
    recs = [reconstruct_image(load_model(ck, device="cpu"), photos[0], detect=False) for ck in (ck_a, ck_b)]
    target = tmp_path / "face.ply"
    meshes, volumes = [], []
    for i, rec in enumerate(recs):
        rec.save(tmp_path / f"ref{i}.ply", save_volume=True)
        meshes.append((tmp_path / f"ref{i}.ply").read_bytes())
        volumes.append(_npz_arrays((tmp_path / f"ref{i}.npz").read_bytes()))
    assert meshes[0] != meshes[1] and not _same_arrays(*volumes)

    stop = threading.Event()
    errors: list[BaseException] = []
    reads = {".ply": 0, ".npz": 0}

    def writer(rec) -> None:
        try:
            for _ in range(15):
                rec.save(target, save_volume=True)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def read_once() -> None:
        for ext in (".ply", ".npz"):
            try:
                data = target.with_suffix(ext).read_bytes()
            except FileNotFoundError:  # before the first rename
                continue
            if ext == ".ply":
                whole = data in meshes
            else:
                try:
                    whole = any(_same_arrays(_npz_arrays(data), v) for v in volumes)
                except Exception:  # noqa: BLE001 - a partial zip does not even open
                    whole = False
            if not whole:
                errors.append(AssertionError(f"partial or mixed {ext} file ({len(data)} bytes)"))
            reads[ext] += 1

    def reader() -> None:
        while True:
            done = stop.is_set()  # one more pass after the writers finish: every file is read
            read_once()
            if done:
                return

    threads = [threading.Thread(target=writer, args=(r,)) for r in recs]
    rd = threading.Thread(target=reader)
    rd.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    rd.join()
    assert not errors, errors[:3]
    assert reads[".ply"] > 0 and reads[".npz"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.npz", "face.ply", "ref0.npz", "ref0.ply",
                                                          "ref1.npz", "ref1.ply"]  # no temp files left

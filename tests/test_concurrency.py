"""Concurrent writers: two ``voxface reconstruct`` processes on one output folder never corrupt a file.

Every output file is written to a hidden temporary file in the same folder and renamed over its
name (:func:`voxface.mesh.atomic_open`), so a reader sees a file whole, from one writer or the
other, never a mix. These tests run two real processes on overlapping inputs with *different*
models (so their files for the same photo differ) and check that each file afterwards is complete,
loadable and wholly one writer's; a threaded test hammers one path with two writers and a reader.
"""

from __future__ import annotations

import copy
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


def test_two_processes_on_one_output_folder(setup) -> None:
    import trimesh

    d, (ck_a, ck_b), photos = setup["dir"], setup["ckpts"], setup["photos"]
    out = d / "out"
    jobs = {"a": (ck_a, photos[:4]), "b": (ck_b, photos[2:])}  # face2 and face3 written by both
    procs = {}
    for name, (ck, inputs) in jobs.items():
        cmd = [VOXFACE_BIN, "reconstruct", *map(str, inputs), "-o", str(out), "-c", str(ck), "--device", "cpu",
               "--no-detect", "--save-volume", "--batch-size", "1", "--workers", "2"]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    for name, p in procs.items():
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, (name, err[-2000:])

    # what each writer would have written, per photo (computed here, in this process)
    expected = {}
    for name, (ck, inputs) in jobs.items():
        model = load_model(ck, device="cpu")
        for photo in inputs:
            rec = reconstruct_image(model, photo, detect=False)
            expected.setdefault(photo.stem, {})[name] = (rec.logits, len(rec.mesh.vertices))

    stems = [p.stem for p in photos]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["summary.json"] + [f"{s}.{ext}" for s in stems for ext in ("ply", "png", "npz")])
    for stem in stems:
        with np.load(out / f"{stem}.npz") as z:
            logits = z["logits"]
        writers = [w for w, (ref, _) in expected[stem].items() if np.allclose(logits, ref, atol=1e-4)]
        assert len(writers) == 1, (stem, writers)  # wholly one writer's (the models differ)
        mesh = trimesh.load(out / f"{stem}.ply", force="mesh")
        assert mesh.is_watertight and len(mesh.vertices) in {n for _, n in expected[stem].values()}, stem
        with Image.open(out / f"{stem}.png") as im:
            im.load()
    summary = json.loads((out / "summary.json").read_text())  # valid JSON, one writer's whole file
    assert not summary["failed"]
    assert set(summary["ok"]) in ({str(p) for p in jobs["a"][1]}, {str(p) for p in jobs["b"][1]})


def test_threads_writing_one_path_never_show_a_partial_file(setup, tmp_path) -> None:
    """Two writers save different reconstructions to the same path, a reader reads all along:
    every read is byte-for-byte one writer's complete file."""
    d, (ck_a, ck_b), photos = setup["dir"], setup["ckpts"], setup["photos"]
    recs = [reconstruct_image(load_model(ck, device="cpu"), photos[0], detect=False) for ck in (ck_a, ck_b)]
    target = tmp_path / "face.ply"
    complete = {}
    for i, rec in enumerate(recs):
        rec.save(tmp_path / f"ref{i}.ply", save_volume=True)
        complete[".ply"] = complete.get(".ply", set()) | {(tmp_path / f"ref{i}.ply").read_bytes()}
        complete[".npz"] = complete.get(".npz", set()) | {(tmp_path / f"ref{i}.npz").read_bytes()}
    assert all(len(v) == 2 for v in complete.values())

    stop = threading.Event()
    errors: list[BaseException] = []
    reads = {".ply": 0, ".npz": 0}

    def writer(rec) -> None:
        try:
            for _ in range(15):
                rec.save(target, save_volume=True)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            for ext in (".ply", ".npz"):
                try:
                    data = target.with_suffix(ext).read_bytes()
                except FileNotFoundError:
                    continue
                if data not in complete[ext]:
                    errors.append(AssertionError(f"partial or mixed {ext} file ({len(data)} bytes)"))
                reads[ext] += 1

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

"""Review 32: the data cache (``voxface data cache``, :mod:`voxface.data.cache`) and export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxface.data.cache import _KEYS, CachedDataset, write_cache
from voxface.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _many_chunks(out: Path, toy_root: Path, chunks: int) -> None:
    """A cache of ``chunks`` chunks of 4 samples: two rendered, the others copies of the first two."""
    write_cache(out, 8, seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False,
                ict_root=str(toy_root))
    for c in range(2, chunks):
        shutil.copytree(out / f"chunk_{c % 2:06d}", out / f"chunk_{c:06d}")
    meta = json.loads((out / "meta.json").read_text())
    meta["n"] = 4 * chunks
    (out / "meta.json").write_text(json.dumps(meta))


def test_reading_a_cache_of_many_chunks_holds_no_file_open(tmp_path, toy_root, cache_env):
    """Every chunk file was read through a memory map, which holds a file descriptor until the
    dataset goes: 14 a chunk, so a loader reading an epoch of a cache of more than 73 chunks (18,688
    samples at the writer's 256 a chunk; the README trains on 81,920) hit the usual limit of 1024
    open files and stopped with 'cannot read this cache file (OSError: [Errno 24] Too many open
    files); remove its chunk folder ...', telling to delete a sound chunk. Rows are read and the
    file closed again; a process limited to 256 open files reads an 80-chunk cache whole."""
    out = tmp_path / "c"
    _many_chunks(out, toy_root, 80)
    ds = CachedDataset(out)
    ref = {k: np.load(out / "chunk_000001" / f"{k}.npy") for k in _KEYS}
    item = ds[4 * 79 + 2]  # chunk 79 is a copy of chunk 1
    assert np.array_equal(item["image"], ref["image"][2].transpose(2, 0, 1).astype(np.float32) / 255)
    assert np.array_equal(item["mask"], ref["mask"][2]) and item["mask"].flags.writeable
    assert np.array_equal(item["occ"].ravel(), np.unpackbits(ref["occ"][2])[: 32**3])
    assert np.array_equal(item["occ_swap"].ravel(), np.unpackbits(ref["occ_swap"][2])[: 32**3])
    assert item["index"] == ref["index"][2] and item["index"].dtype == np.int64
    assert item["identity"] == ref["identity"][2] and item["identity"].dtype == np.int64
    for k in ("id_coeffs", "exp_coeffs", "rotation", "scale", "translation", "euler", "landmarks_2d", "landmarks_3d"):
        assert item[k].dtype == np.float32 and np.array_equal(item[k], ref[k][2]), k
    if Path("/proc/self/fd").is_dir():
        before = len(os.listdir("/proc/self/fd"))
        for i in range(len(ds)):
            ds[i]
        assert len(os.listdir("/proc/self/fd")) <= before  # none left open (was 14 a chunk: 1120)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "from voxface.data.cache import CachedDataset\n"
            "ds = CachedDataset(sys.argv[1])\n"
            "print(sum(int(ds[i]['index']) for i in range(len(ds))))\n")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) == 40 * sum(range(8))  # 80 chunks: 40 copies of samples 0..7


def test_a_chunk_file_cut_short_after_opening_is_one_line_naming_it(tmp_path, toy_root, cache_env):
    """A chunk file truncated while a run reads the cache is a DataError naming it, not a short row."""
    out = tmp_path / "c"
    write_cache(out, 8, seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False,
                ict_root=str(toy_root))
    ds = CachedDataset(out)
    ds[0]
    f = out / "chunk_000000" / "occ.npy"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError) as ei:
        ds[3]
    msg = str(ei.value)
    assert len(msg.splitlines()) == 1 and str(f) in msg and "truncated" in msg, msg
    assert ds[2]["occ"].shape == (32, 32, 32)  # the rows before the cut still read


def _other_ict(src: Path, dst: Path) -> Path:
    """A copy of ``src``'s ICT-FaceKit folder with one identity file's bytes changed (another release)."""
    d = dst / "FaceXModel"
    d.mkdir(parents=True)
    for f in (src / "FaceXModel").iterdir():
        (d / f.name).symlink_to(f)
    f = d / "identity003.obj"
    text = f.read_text()
    f.unlink()
    f.write_text(text.replace("v ", "v  ", 1) + "# edited\n")
    return dst


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_data_export_refuses_to_grow_a_folder_exported_from_other_ict_files(tmp_path, toy_root, cache_env,
                                                                               monkeypatch, capsys):
    """``data export`` recorded seed, resolution, points and frame, not which ICT-FaceKit files it
    rendered: growing a folder with another --ict-root (another release, whose faces differ for
    the same seed and index) mixed both models' samples without a word, where ``data cache``
    refuses. The digest is recorded (``.export.json`` and each sample's JSON) and compared; an
    export by an older voxface, without it, is trusted."""
    from voxface.data.ict import load_ict

    from .conftest import run_cli

    other = _other_ict(toy_root, tmp_path / "ict2")
    key, other_key = load_ict(toy_root).key, load_ict(other).key
    assert key != other_key
    out = tmp_path / "x"
    opts = ("--resolution", 32, "--points", 16)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, "--ict-root", toy_root, *opts)
    assert code == 0, err
    assert json.loads((out / ".export.json").read_text())["ict"] == key
    assert json.loads((out / "000001.json").read_text())["ict"] == key
    before = _files(out)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 4, "-o", out, "--ict-root", other, *opts)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {out}: holds samples exported with "), err
    assert key in lines[0] and other_key in lines[0] and "another folder" in lines[0], err
    assert _files(out) == before
    # an export by an older voxface (no .export.json): the first sample's JSON tells the files
    (out / ".export.json").unlink()
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 4, "-o", out, "--ict-root", other, *opts)
    assert code == 1 and "000000.json" in err and other_key in err, err
    # ... and one without the digest anywhere is trusted: it grows
    for p in out.glob("*.json"):
        meta = json.loads(p.read_text())
        meta.pop("ict")
        p.write_text(json.dumps(meta))
    code, out_text, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 3, "-o", out, "--ict-root", toy_root,
                                  *opts)
    assert code == 0 and (out / "000002.json").exists(), err
    assert json.loads((out / "000002.json").read_text())["ict"] == key


def test_a_caches_meta_json_is_on_disk_before_it_counts_and_a_failed_write_names_it(tmp_path, toy_root, cache_env,
                                                                                     monkeypatch):
    """meta.json was written to ``.meta.json.tmp`` and renamed over the old one unsynced, while every
    chunk is fsynced before its rename: after a power loss the cache could keep its chunks and an
    empty meta.json, which the rerun refuses ('remove the folder'): hours of rendering lost. A full
    disk while writing it was an OSError naming the hidden temporary, which stayed. It is now
    written with atomic_open (fsynced before the rename, the folder after); a failed write is a
    DataError naming meta.json, the earlier one intact; a killed writer's temporary is removed."""
    kw = dict(seed=1, resolution=32, image_size=16, chunk=4, workers=0, progress=False, ict_root=str(toy_root))
    out = tmp_path / "c"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(f"replace {a} {b}") or real_replace(a, b))
    write_cache(out, 4, **kw)
    at = next(i for i, e in enumerate(events) if e.startswith("replace") and e.endswith(f" {out / 'meta.json'}"))
    tmp = events[at].split()[1]
    assert Path(tmp).parent == out and Path(tmp).name.startswith(".meta.json.")
    assert events[at - 1] == f"fsync {tmp}" and events[at + 1] == f"fsync {out}"
    assert json.loads((out / "meta.json").read_text())["n"] == 4
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(os, "replace", real_replace)

    before = (out / "meta.json").read_bytes()
    (out / ".meta.json.tmp").write_text("{")  # what a killed writer of an earlier version left
    (out / ".meta.json.0123abcd.tmp").write_text("{")  # ... and of this one
    import voxface.mesh

    def full(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(voxface.mesh, "atomic_open", full)
    with pytest.raises(DataError) as ei:
        write_cache(out, 8, **kw)
    assert str(ei.value) == (f"{out / 'meta.json'}: cannot write this cache file (No space left on device); run the "
                             "same command again once there is room")
    assert (out / "meta.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [".lock", "chunk_000000", "meta.json"]
    monkeypatch.undo()
    write_cache(out, 8, **kw)
    assert len(CachedDataset(out)) == 8


def test_data_cache_into_one_split_of_a_cache_is_refused(tmp_path, toy_root, cache_env, monkeypatch, capsys):
    """``data cache -o DIR/train -n 1000`` (the split folder, which a cache config's data.path and
    CachedDataset name one level apart) rendered a whole new cache inside that split (DIR/train/val,
    DIR/train/train) and said 'cache ready', the cache meant to grow untouched. Refused in one line
    naming the folder to give, before anything is read or written."""
    from .conftest import run_cli

    out = tmp_path / "c"
    opts = ("-n", 4, "--num-val", 4, "--resolution", 32, "--image-size", 16, "--workers", 0, "--ict-root", toy_root)
    code, _, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, *opts)
    assert code == 0, err
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out / "train", *opts[:1], 8, *opts[2:])
    lines = err.strip().splitlines()
    assert code == 1 and "cache ready" not in stdout and len(lines) == 1, err
    assert lines[0] == (f"error: {out / 'train'}: is one split of a data cache (its meta.json is here); -o is the "
                        f"folder holding train/ and val/ ({out})"), err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, *opts[:1], 8, *opts[2:])
    assert code == 0 and "cache ready" in stdout, err  # the folder of both grows
    assert len(CachedDataset(out / "train")) == 8


def test_a_cache_of_another_frame_than_the_models_is_refused(tmp_path, toy_root, cache_env):
    """A cache config checked the cache's resolution and crop size against the model, not the cube
    its grids cover: a model with model.frame side_mm 300 (configs/toy.yaml's) trained on the
    default 400 mm grids of `voxface data cache` read as its own, and every mesh it then made was
    scaled by 3/4 and shifted, without a word (kind: synthetic and folder render the model's
    frame). Refused in one line naming both cubes; the same cube written another way (ints) opens."""
    from voxface.config import FrameConfig
    from voxface.data import build_dataset

    kw = dict(seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False, ict_root=str(toy_root))
    for split in ("train", "val"):
        write_cache(tmp_path / "c" / split, 4, **kw)
    data = {"kind": "cache", "path": str(tmp_path / "c")}
    model = {"encoder": {"image_size": 32}, "decoder": {"resolution": 32},
             "frame": {"side_mm": 300.0, "center_mm": [0.0, -10.0, 20.0]}}
    for split in ("train", "val"):
        with pytest.raises(DataError) as ei:
            build_dataset(data, split, model)
        msg = str(ei.value)
        assert len(msg.splitlines()) == 1 and msg.startswith(f"{tmp_path / 'c' / split}: cache frame "), msg
        assert '"side_mm": 400.0' in msg and '"side_mm": 300.0' in msg and "model.frame" in msg, msg
    default = FrameConfig()
    same = {**model, "frame": {"side_mm": int(default.side_mm), "center_mm": [int(v) for v in default.center_mm]}}
    assert len(build_dataset(data, "train", same)) == 4
    assert len(build_dataset(data, "val", {k: v for k, v in model.items() if k != "frame"})) == 4
    # a cache written on the model's own cube is the model's
    other = FrameConfig(side_mm=300.0, center_mm=(0.0, -10.0, 20.0))
    for split in ("train", "val"):
        write_cache(tmp_path / "d" / split, 4, frame=other, **kw)
    assert len(build_dataset({**data, "path": str(tmp_path / "d")}, "train", model)) == 4


def test_a_cache_holding_fewer_samples_than_asked_says_so(tmp_path, toy_root, cache_env):
    """A cache whose 'voxface data cache' run was stopped part-way (Ctrl-C, a full disk, a killed
    job) opened with the chunks it had, and a config's data.num_train above what a finished cache
    holds read what was there: a run trained on a fraction of the data it was set up for, without
    a word (synthetic data makes as many items as asked). Each is a one-line warning saying how
    many are read and the command that completes or grows the cache; a whole cache, or one asked
    for fewer (or a count rounded down to the cache's), opens in silence."""
    import warnings

    from voxface.config import model_config
    from voxface.data import build_dataset

    kw = dict(seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False, ict_root=str(toy_root))
    root = tmp_path / "c"
    write_cache(root / "train", 12, **kw)
    write_cache(root / "val", 4, **kw)
    m = model_config({"encoder": {"image_size": 32}, "decoder": {"resolution": 32}})
    cfg = {"kind": "cache", "path": str(root)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(build_dataset(cfg, "train", m)) == 12
        assert len(build_dataset({**cfg, "num_train": 14}, "train", m)) == 12  # 14 keeps 12 (blocks of 4)
        assert len(build_dataset({**cfg, "num_val": 4}, "val", m)) == 4
    with pytest.warns(UserWarning) as got:
        assert len(build_dataset({**cfg, "num_train": 16}, "train", m)) == 12
        assert len(build_dataset({**cfg, "num_val": 8}, "val", m)) == 4
    assert [str(w.message) for w in got] == [
        f"{root / 'train'}: data.num_train 16 asks for more items than this cache holds (12); reading 12: grow it "
        f"with 'voxface data cache -o {root} -n 16' and the options that wrote it",
        f"{root / 'val'}: data.num_val 8 asks for more items than this cache holds (4); reading 4: grow it with "
        f"'voxface data cache -o {root} --num-val 8' and the options that wrote it"]
    shutil.rmtree(root / "train" / "chunk_000001")  # what a stopped writer leaves: chunks 0 and 2 of 3
    with pytest.warns(UserWarning) as got:
        assert len(build_dataset(cfg, "train", m)) == 4
    assert [str(w.message) for w in got] == [
        f"{root / 'train'}: holds 4 complete samples of the 12 its meta.json names (the 'voxface data cache' run "
        "writing them has not finished); reading 4: run that command again to complete it"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(build_dataset({**cfg, "num_train": 4}, "train", m)) == 4  # asked for what is there


def test_another_entry_named_as_a_chunk_does_not_cut_the_cache_short(tmp_path, toy_root, cache_env):
    """The chunks in use were counted along a sorted listing of chunk_*, stopping at the first name
    out of sequence: a backup copy 'chunk_000000.bak' (or 'chunk_000000 copy') sorts before
    chunk_000001, and a whole cache of 12 samples opened with 4, without a word, for good (rerunning
    'voxface data cache' finds every chunk there). Chunks are found by their own names."""
    import warnings

    out = tmp_path / "c"
    write_cache(out, 12, seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False,
                ict_root=str(toy_root))
    shutil.copytree(out / "chunk_000000", out / "chunk_000000.bak")
    (out / "chunk_000001 copy").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = CachedDataset(out)
    assert len(ds) == 12 and [int(ds[i]["index"]) for i in range(12)] == list(range(12))


def test_a_failed_data_cache_prints_its_error_on_a_line_of_its_own(tmp_path, toy_root, cache_env, monkeypatch,
                                                                   capsys):
    """The progress bar of a split was closed only when the split was written: a full disk's (or
    Ctrl-C's) message was printed on the end of the bar's line ('cache train:  50%|... 256/512
    [00:02<00:02, ...]error: ...'), the bar drawn again after it. The bar is closed however the
    run ends; the in-process sampler (the ICT model) is not kept after the call either."""
    from voxface.data import cache

    from .conftest import run_cli

    real_save = np.save

    def full(f, a, *args, **kwargs):
        if Path(f.name).parent.parent.name == "train" and Path(f.name).name == "occ.npy":
            raise OSError(28, "No space left on device")
        return real_save(f, a, *args, **kwargs)

    monkeypatch.setattr(cache.np, "save", full)
    out = tmp_path / "c"
    code, _, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, "-n", 8, "--num-val", 4, "--resolution",
                           32, "--image-size", 16, "--workers", 0, "--ict-root", toy_root)
    want = (f"error: {out / 'train' / 'chunk_000000' / 'occ.npy'}: cannot write this cache file (No space left on "
            "device); its chunk is not kept: run the same command again to go on once there is room")
    assert code == 1 and want in err.splitlines(), err  # a line of its own, not the end of the bar's
    assert err.count("error:") == 1 and err.rstrip("\n").endswith(want), err
    assert "sampler" not in cache._worker


def test_data_export_refuses_to_grow_an_export_from_before_the_closed_lips_fix(tmp_path, toy_root, cache_env,
                                                                               monkeypatch, capsys):
    """Growing a folder exported with the even-odd occupancy (before 1dc8cb8) mixed grids of both
    rules in one training folder, as a grown data cache would have: the rule is recorded
    (``occupancy``, in .export.json and each sample's JSON), and an export without it is refused."""
    from .conftest import run_cli

    out = tmp_path / "x"
    opts = ("--resolution", 32, "--points", 16, "--ict-root", toy_root)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 1, "-o", out, *opts)
    assert code == 0, err
    rule = json.loads((out / ".export.json").read_text())["occupancy"]
    assert rule in ("nonzero", "evenodd") and json.loads((out / "000000.json").read_text())["occupancy"] == rule
    for p in (out / ".export.json", out / "000000.json"):  # as an export before the fix wrote them
        meta = json.loads(p.read_text())
        meta.pop("occupancy")
        p.write_text(json.dumps(meta))
    before = _files(out)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, *opts)
    assert code == 1 and "holds samples exported before the closed-lips occupancy fix" in err, err
    assert _files(out) == before

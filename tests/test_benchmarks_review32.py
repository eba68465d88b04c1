"""The scripts under benchmarks/: bad arguments are argparse's one error line (not a traceback, a
KeyError after the run, or a table of nan), output files are checked before the work and written
atomically, and the scripts no test ran before (decoder_oracle.py, mirror_tta.py,
highres_views.py) run on a few faces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_data import needs_ict

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(*args: object, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.mark.parametrize("script, args, words", [
    # each was a traceback (or, for pose_offaxis.py --num 1 and identity_oracle.py --num 0, a table of nan)
    ("decoder_oracle.py", ["x.pth.tar", "--num", "2"], "--num: must be at least 4"),  # was KeyError after the run
    ("decoder_oracle.py", ["x.pth.tar", "--batch", "0"], "--batch: must be at least 1, not 0"),
    ("decoder_oracle.py", ["x.pth.tar", "--scales", "0,half"], "'half' in '0,half' is not a number"),
    ("decoder_oracle.py", ["x.pth.tar", "--scales", ","], "lists no values"),
    ("network_stages.py", ["--repeat", "0"], "--repeat: must be at least 1, not 0"),
    ("network_stages.py", ["--batch-sizes", "1,0"], "'0' in '1,0' must be at least 1"),
    ("network_stages.py", ["--batch-sizes", "1,x"], "is not a whole number"),
    ("mirror_tta.py", ["--num", "0"], "--num: must be at least 1 (faces), not 0"),
    ("jitter_tta.py", ["--num", "-1"], "--num: must be at least 1"),
    ("pose_offaxis.py", ["--num", "1"], "--num: must be at least 2"),
    ("error_regions.py", ["--num", "0"], "--num: must be at least 1"),
    ("code_length.py", ["--num", "0"], "--num: must be at least 1 (pairs)"),
    ("identity_oracle.py", ["--step", "0"], "--step: must be at least 1"),
    ("identity_oracle.py", ["--num", "0"], "--num: must be at least 1"),
    ("readout_probe.py", ["--num-train", "3"], "--num-train: must be at least 4"),
    ("readout_probe.py", ["--num", "0"], "--num: must be at least 1"),
    ("highres_views.py", ["--size", "0"], "--size: must be at least 1 (pixels), not 0"),  # was after the work
])
def test_bad_arguments_are_one_usage_error(script: str, args: list[str], words: str) -> None:
    r = _run(BENCH / script, *args)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()  # one line, as the voxface command refuses an option (no usage block)
    assert len(lines) == 1 and lines[0].startswith("error: argument ") and words in lines[0], r.stderr
    assert lines[0].endswith(f"; see '{script} -h'"), r.stderr


def test_network_stages_checks_its_json_before_timing_and_writes_it_atomically(tmp_path) -> None:
    """--json into a path that cannot be written was a FileNotFoundError traceback after every batch
    size had been timed (on a lent GPU, its minutes): now one ``error:`` line before any timing (the
    checkpoint is not even loaded); a good path gets the JSON, through a temporary file and rename."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = time.perf_counter()
    r = _run(BENCH / "network_stages.py", "--checkpoint", tmp_path / "missing.pth.tar", "--batch-sizes", "1",
             "--json", blocker / "stages.json")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: {blocker / 'stages.json'}: {blocker} is a file, where a folder is needed"], r.stderr
    assert "missing.pth.tar" not in r.stderr and not r.stdout  # refused before the checkpoint was read
    assert time.perf_counter() - t < 120
    r = _run(BENCH / "network_stages.py", "--batch-sizes", "1", "--json", f"{tmp_path}/out/")
    assert r.returncode == 1 and "names a folder" in r.stderr and not (tmp_path / "out").exists(), r.stderr

    out = tmp_path / "new" / "stages.json"
    r = _run(BENCH / "network_stages.py", "--batch-sizes", "1,2,1", "--repeat", "1", "--json", out)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["device"].startswith("cpu") and list(data["seconds"]) == ["1", "2"]  # 1 named twice: timed once
    assert all(v > 0 for t in data["seconds"].values() for v in t.values())
    assert sorted(os.listdir(out.parent)) == ["stages.json"]  # no temporary file left
    assert len(re.findall(r"^\| [12] \|", r.stdout, re.M)) == 2, r.stdout


def test_highres_views_checks_its_picture_name_before_the_work(tmp_path) -> None:
    """highres_views.py decoded both heads at 64^3 to 256^3 and rendered them (half a minute on two
    cores at --size 40, minutes at the default 300) before save_png refused a bad -o: the name and
    its folder are now checked first; nothing is written."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, size, words in ((blocker / "h.png", 40, f"{blocker} is a file, where a folder is needed"),
                             (tmp_path / "h.jpg", 40, "named as another picture format"),
                             (f"{tmp_path}/pics/", 40, "names a folder")):
        t = time.perf_counter()
        r = _run(BENCH / "highres_views.py", "-o", out, "--size", size,
                 "--checkpoint", tmp_path / "missing.pth.tar")  # refused before the checkpoint is read
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("error: ") and words in r.stderr and "missing.pth.tar" not in r.stderr, r.stderr
        assert time.perf_counter() - t < 60
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.ict
@needs_ict
def test_decoder_oracle_runs_on_a_small_cache(tmp_path) -> None:
    """decoder_oracle.py (the model card's "where the gap is", 0.9705 on 128 validation faces) had no
    run in the tests: on a 4-face validation split, the true coefficients decode better than the
    encoder's codes, --scales 1 equals the codes' own IoU, and a factor named twice is one column."""
    r = _run("-m", "voxface", "data", "cache", "-o", tmp_path / "c", "-n", "4", "--num-val", "4",
             "--workers", "0")
    assert r.returncode == 0, r.stderr
    r = _run(BENCH / "decoder_oracle.py", ROOT / "voxface" / "weights" / "vox-cpk.pth.tar", "--cache",
             tmp_path / "c", "--num", "6", "--batch", "3", "--scales", "0,1,1.0")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("4 val faces: "), out  # 6 rounded down to the cache's blocks of 4
    num = r"(\d\.\d+)"
    true, codes = (float(re.search(rf"{k} {num}", out)[1]) for k in (r"decoder\(true coefficients\)",
                                                                         r"decoder\(encoder codes\)"))
    assert 0.9 < true <= 1 and 0.5 < codes < true, out
    scaled = re.search(r"scaled: x0\.0 (\d\.\d+), x1\.0 (\d\.\d+)\)", out)
    assert scaled and float(scaled[2]) == codes and float(scaled[1]) < true, out
    assert "mode-weighted" in out  # ICT-FaceKit found: the latent loss's weights


@pytest.mark.ict
@needs_ict
def test_mirror_tta_runs_on_two_faces() -> None:
    """mirror_tta.py (the model card's test-time mirroring) had no run in the tests: its five rows,
    IoUs of real reconstructions, the average of the crop's and the mirror's codes between them."""
    r = _run(BENCH / "mirror_tta.py", "--num", "2")
    assert r.returncode == 0, r.stderr
    rows = {m[0]: (float(m[1]), float(m[2]))
            for m in re.findall(r"^\| ([^|]+?) \| (\d\.\d{4}) \| (\d+\.\d{3}) \|$", r.stdout, re.M)}
    assert list(rows) == ["mean identity, read expression", "the crop's codes",
                          "the mirrored crop's codes, mapped back", "average of the two",
                          "average identity, the crop's expression"], r.stdout
    assert all(0.5 < iou <= 1 and mse > 0 for iou, mse in rows.values()), r.stdout
    assert r.stdout.startswith("2 faces of seed 1000003"), r.stdout


def test_highres_views_draws_the_three_grids(tmp_path) -> None:
    """highres_views.py (docs/highres.png) had no run in the tests: a PNG of two rows of three
    grids, frontal and side views each (12 renders)."""
    from PIL import Image

    out = tmp_path / "h.png"
    r = _run(BENCH / "highres_views.py", "-o", out, "--size", "24")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    w, h = Image.open(out).size
    assert w >= 6 * 24 and h >= 2 * 24


NEEDS_ICT = ("code_length.py", "error_regions.py", "identity_oracle.py", "jitter_tta.py", "mirror_tta.py",
             "pose_offaxis.py", "readout_probe.py", "refine_ablation.py")


def test_every_script_needing_ict_takes_the_ict_root_its_error_names(tmp_path) -> None:
    """Without ICT-FaceKit the error says "set VOXFACE_ICT_ROOT ... or pass its path (--ict-root ...)",
    but mirror_tta.py, jitter_tta.py, pose_offaxis.py and refine_ablation.py had no --ict-root
    ("unrecognized arguments"): every script that needs the data takes it now."""
    env = {k: v for k, v in os.environ.items() if k != "VOXFACE_ICT_ROOT"}
    for script in NEEDS_ICT:
        r = _run(BENCH / script, "--help")
        assert r.returncode == 0 and "--ict-root" in r.stdout, (script, r.stdout)
    for script in ("mirror_tta.py", "pose_offaxis.py", "refine_ablation.py"):
        r = _run(BENCH / script, "--num", "2", "--ict-root", tmp_path / "nope", env=env)
        assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'nope'}: no such ICT-FaceKit folder", \
            (script, r.stderr)


@pytest.mark.ict
@needs_ict
def test_pose_offaxis_reads_ict_from_its_option() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOXFACE_ICT_ROOT"}
    r = _run(BENCH / "pose_offaxis.py", "--num", "2", "--ict-root", os.environ["VOXFACE_ICT_ROOT"], env=env)
    assert r.returncode == 0 and r.stdout.startswith("2 faces of seed 2000003"), r.stderr


@pytest.mark.ict
@needs_ict
def test_decoder_oracle_refuses_a_model_that_does_not_fit_the_cache(tmp_path, tiny_config) -> None:
    """A checkpoint whose grid is not the cache's (a 32^3 model against the default .data/cache-64)
    was a RuntimeError traceback (tensor sizes 32768 and 262144) after the first batch, one whose
    codes are not ICT coordinates a bare line with neither 'error:' nor the checkpoint: both are
    one 'error:' line naming the checkpoint, before the run."""
    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    r = _run("-m", "voxface", "data", "cache", "-o", tmp_path / "c", "-n", "4", "--num-val", "4", "--workers", "0")
    assert r.returncode == 0, r.stderr
    tiny_config["encoder"]["image_size"] = 128  # the cache's crops
    ckpt = tmp_path / "small-codes.pth.tar"
    save_checkpoint(ckpt, create_model(tiny_config))
    tiny_config["encoder"].update(z_id=100, z_exp=53)
    ict_ckpt = tmp_path / "ict-codes-32.pth.tar"
    save_checkpoint(ict_ckpt, create_model(tiny_config))
    for path, words in ((ckpt, "the model's codes are not ICT coordinates (z_id 16, z_exp 8; the cache's "
                               "coefficients: 100, 53)"),
                        (ict_ckpt, "the model's grid is 32^3, the cache's 64^3")):
        r = _run(BENCH / "decoder_oracle.py", path, "--cache", tmp_path / "c", "--num", "4")
        assert r.returncode == 1 and r.stderr.startswith(f"error: {path}: {words}"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout, r.stderr


@pytest.mark.ict
@needs_ict
def test_mirror_tta_and_code_length_refuse_codes_that_are_not_ict(tmp_path, tiny_config) -> None:
    """mirror_tta.py maps codes through the ICT modes' mirror and code_length.py decodes ICT
    coefficients: a checkpoint with other codes was a RuntimeError traceback (mat1 and mat2 shapes)
    and a line about tensor shapes; each is now one 'error:' line naming the checkpoint."""
    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    ckpt = tmp_path / "small-codes.pth.tar"
    save_checkpoint(ckpt, create_model(tiny_config))
    for args, words in ((["mirror_tta.py", "--checkpoint", ckpt, "--num", "1"],
                         "the model's codes are not ICT coordinates (z_id 16, z_exp 8; ICT-FaceKit's: 100, 53)"),
                        (["code_length.py", ckpt, "--num", "1"],
                         "the model's identity codes are not ICT coordinates (z_id 16; ICT-FaceKit's: 100)")):
        r = _run(BENCH / args[0], *args[1:])
        assert r.returncode == 1 and r.stderr.startswith(f"error: {ckpt}: {words}"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout, r.stderr

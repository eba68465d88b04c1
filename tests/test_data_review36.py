"""Review 36 of the synthetic training photos, their export and augmentation (voxface.data.render,
appearance, head, export, voxface.augment, ``voxface data``): defects found by running the commands as a
job runs them and by checking the renders against their own labels."""

from __future__ import annotations

import sys

import pytest

from .test_data import REAL_ICT, needs_ict


@pytest.mark.parametrize("command", ["preview", "export", "cache"])
def test_the_data_commands_draw_no_progress_bar_into_a_log(tmp_path, toy_root, cache_env, monkeypatch, capsys,
                                                           command):
    """``voxface data preview``, ``export`` and ``cache`` drew their tqdm bar whatever stderr was: an
    export or cache of tens of thousands of samples run by a job into a log file wrote a
    carriage-return bar update every 0.1 s for hours, where reconstruct, sample and export-onnx draw
    bars only on a terminal. A log gets the result line alone; a terminal still gets the bar."""
    from .conftest import run_cli

    args = {"preview": ["-n", 1, "-o", tmp_path / "p.png"],
            "export": ["-n", 1, "-o", tmp_path / "e", "--resolution", 32, "--points", 1],
            "cache": ["-o", tmp_path / "c", "-n", 4, "--num-val", 4, "--resolution", 32, "--image-size", 16,
                      "--workers", 0]}[command]
    bar = {"preview": "preview:", "export": "export:", "cache": "cache val:"}[command]
    code, out, err = run_cli(monkeypatch, capsys, "data", command, *args, "--ict-root", toy_root)
    assert code == 0, err
    assert bar not in err and "|" not in err and "\r" not in err, err  # captured: not a terminal
    assert out.startswith(("wrote", "cache ready")), out
    if command == "export":  # the terminal's bar, once (each command takes the same switch)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        code, out, err = run_cli(monkeypatch, capsys, "data", command, "-n", 2, *args[2:], "--ict-root", toy_root)
        assert code == 0 and bar in err and "2/2" in err and out == f"wrote 1 samples to {tmp_path / 'e'}\n", err


@needs_ict
def test_mirror_batch_takes_a_synthetic_batch_with_surface_points_and_keeps_their_face_flags() -> None:
    """A ``SyntheticDataset`` with ``n_points`` gives ``points``, ``normals`` and ``points_face`` (1 on
    the ICT narrow face); mirror_batch of its batch was 'ValueError: mirror_batch: do not know how to
    mirror ['points_face']'. The narrow face is its own mirror image, so the flag is kept: a mirrored
    point flagged 1 lies on the mirrored labels' narrow face, one flagged 0 off it."""
    import numpy as np
    import torch
    import trimesh
    from torch.utils.data import default_collate

    from voxface.augment import mirror_batch, mirror_maps
    from voxface.data.ict import load_ict
    from voxface.data.synthetic import SyntheticDataset

    ict = load_ict(REAL_ICT)
    ds = SyntheticDataset(4, 7, 32, ict_root=REAL_ICT, n_points=64)
    b = default_collate([ds[i] for i in range(4)])
    m = mirror_batch(b, torch.ones(4, dtype=torch.bool), mirror_maps(ict))
    assert torch.equal(m["points_face"], b["points_face"]) and 0 < int(b["points_face"].sum()) < 4 * 64
    assert torch.equal(m["points"], b["points"] * torch.tensor([-1.0, 1.0, 1.0]))
    head = ds.sampler.head
    for i in (0, 3):
        closed = head.person(m["id_coeffs"][i].numpy()).closed_head(m["exp_coeffs"][i].numpy())
        mesh = trimesh.Trimesh(closed, head.faces, process=False)
        _, dist, tri = trimesh.proximity.closest_point(mesh, m["points"][i].numpy())
        assert np.median(dist) < 1.0  # mm: the mirrored points lie on the mirrored labels' head
        near = dist < 1.0
        flags = m["points_face"][i].numpy().astype(bool)
        assert (head.face_region[tri][near] == flags[near]).mean() > 0.95


def test_check_folder_lists_an_unused_file_named_with_a_newline_or_escape_on_one_inert_line(tmp_path, monkeypatch,
                                                                                             capsys):
    """check-folder printed each 'unused file:' and its summary raw: a file in the data folder named
    with a newline split its line in two (a log's reader, or a script counting lines, saw a line
    'line.txt'), and one with an escape sequence drove the terminal (click strips only the colour
    codes it knows, and only off a terminal), where voxface's error lines escape them (errors.printable)."""
    import numpy as np
    import trimesh
    from PIL import Image

    from .conftest import run_cli

    d = tmp_path / "d"
    d.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(d / "a.png")
    trimesh.creation.icosphere(subdivisions=3, radius=80.0).export(d / "a.ply")
    (d / "new\nline.txt").write_text("x")
    (d / "bell\x07.txt").write_text("x")
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", d, "--resolution", 32, "--image-size", 32,
                             "--cache-dir", tmp_path / "c")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"{d}: 1 samples of 1 person (1 meshes, 0 grids only)"), out
    assert sorted(lines[1:]) == [f"unused file: {d}/bell\\x07.txt", f"unused file: {d}/new\\nline.txt"], out
    assert "\x07" not in out


@pytest.mark.parametrize("num", [-3, 2.5, True, "4"])
def test_export_samples_refuses_a_count_that_is_no_number_of_samples_before_anything_is_written(tmp_path, toy_root,
                                                                                                num):
    """export_samples checks resolution and points before anything is read or written, but not num:
    -3 made an empty folder and returned 0 without a word, 2.5 and '4' were range()'s TypeError (a
    traceback naming no argument) after the ICT model was read. Each is a DataError naming the folder."""
    import re

    from voxface.data.export import export_samples
    from voxface.errors import DataError

    out = tmp_path / "x"
    with pytest.raises(DataError, match=rf"^{re.escape(str(out))}: num must be a whole number of samples, 0 or more, "
                                        rf"not {re.escape(repr(num))}$"):
        export_samples(out, num, resolution=32, points=0, ict_root=str(toy_root), progress=False)
    assert not out.exists()

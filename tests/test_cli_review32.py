"""Review 32 of the checkpoint, evaluate and bench commands' CLI layer."""
from __future__ import annotations

import json

import pytest

from .conftest import run_cli


@pytest.mark.parametrize("which", ["md", "json"])
def test_bench_refuses_to_replace_a_file_that_is_no_bench_report(tmp_path, monkeypatch, capsys, which):
    """``voxface bench -o NOTES.md`` replaced the user's NOTES.md, and the NOTES.json beside it (a
    package.json, a config), without a word; evaluate --report and release refuse such files."""
    ran = []
    monkeypatch.setattr("voxface.bench.run_bench", lambda out, **k: ran.append(out))
    md, js = tmp_path / "NOTES.md", tmp_path / "NOTES.json"
    mine = md if which == "md" else js
    mine.write_text("# My notes\n\nimportant\n" if which == "md" else '{"name": "my-package"}')
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--only", "startup", "-o", md)
    lines = err.strip().splitlines()
    assert code == 1 and not ran and len(lines) == 1, err
    assert lines[0] == (f"error: {mine}: exists and is not a `voxface bench` report; the report would replace it: "
                        "name another -o, or remove this file first")
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]
    assert "important" in mine.read_text() or "my-package" in mine.read_text()


def test_bench_still_updates_its_own_report_and_an_empty_leftover(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr("voxface.bench.run_bench", lambda out, **k: ran.append(out) or out.write_text("# x\n"))
    md, js = tmp_path / "B.md", tmp_path / "B.json"
    md.write_text("# voxface benchmarks\n\nold\n")
    js.write_text(json.dumps({"machine": {"cpus": 2}, "date": "2026-01-01 00:00 UTC"}))
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--only", "startup", "-o", md)
    assert code == 0 and ran == [md], err
    md.write_text("")  # what a failed write leaves: nothing to keep
    js.write_text("")
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--only", "startup", "-o", md)
    assert code == 0 and ran == [md, md], err


def test_evaluate_refuses_a_points_count_no_machine_holds_before_any_work(tmp_path, monkeypatch, capsys):
    """``evaluate --points 1000000000`` (a typo of 100,000) was accepted: its samples alone need 24 GB
    (float64 x, y, z), and it sat on the first face for minutes before running out of memory."""
    loaded = []
    monkeypatch.setattr("voxface.checkpoint.load_model", lambda *a, **k: loaded.append(a))
    monkeypatch.setattr("voxface.checkpoint.load_model_and_checkpoint", lambda *a, **k: loaded.append(a))
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", "4", "--points", "1000000000",
                           "--report", tmp_path / "r.json")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "--points" in lines[0] and "10000000" in lines[0], err
    assert not loaded and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("report, words", [
    ({"num": 4, "seed": 1, "resolution": 64, "summary": {"model": {"iou": {"mean": float("nan")}}}}, "NaN or Infinity"),
    ({"num": 4, "seed": 1, "resolution": 64, "summary": {"x": [1.0, float("inf")]}}, "NaN or Infinity"),
    ({"num": -4, "seed": 1, "resolution": 0, "summary": {}}, "num is -4, resolution is 0"),
    ({"num": 4, "seed": -1, "resolution": 64, "summary": {}}, "seed is -1"),
])
def test_release_refuses_a_report_evaluate_never_writes(tmp_path, monkeypatch, capsys, report, words):
    """``release --report`` embedded a hand-edited or damaged report into the shipped checkpoint:
    ``inspect`` then showed "IoU nan" or "-4 unseen faces (seed 1, 0^3)"."""
    from voxface.checkpoint import DEFAULT_WEIGHTS

    rep = tmp_path / "rep.json"
    rep.write_text(json.dumps(report))  # NaN, Infinity: Python's json writes and reads them
    out = tmp_path / "rel.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "release", DEFAULT_WEIGHTS, "-o", out, "--report", rep)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {rep}: ") and words in lines[0], err
    assert not out.exists()


def test_release_still_embeds_a_finite_report(tmp_path, monkeypatch, capsys):
    from voxface.checkpoint import DEFAULT_WEIGHTS, inspect_checkpoint

    rep = tmp_path / "rep.json"
    summary = {"model": {"iou": {"mean": 0.9, "median": 0.91}}, "baseline": {"iou": {"mean": 0.8, "median": 0.8}},
               "iou_gap_closed": 0.5, "failed_meshes": 0}
    rep.write_text(json.dumps({"num": 4, "seed": 2000003, "resolution": 64, "summary": summary}))
    out = tmp_path / "rel.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "release", DEFAULT_WEIGHTS, "-o", out, "--report", rep)
    assert code == 0, err
    assert inspect_checkpoint(out).evaluation["summary"] == summary


@pytest.mark.parametrize("args, option", [
    (["inspect", ""], "'ckpt'"),
    (["release", "", "-o", "{tmp}/r.pth.tar"], "'ckpt'"),
    (["release", "{weights}", "-o", "{tmp}/r.pth.tar", "--report", " "], "'--report'"),
    (["init-checkpoint", "-c", "", "-o", "{tmp}/r.pth.tar"], "'--config' / '-c'"),
    (["evaluate", "-c", "", "--num", "4", "--report", "{tmp}/r.json"], "'--checkpoint' / '-c'"),
    (["evaluate", "--plots", "", "--num", "4", "--report", "{tmp}/r.json"], "'--plots'"),
    (["bench", "-c", "", "--only", "startup", "-o", "{tmp}/B.md"], "'--checkpoint' / '-c'"),
])
def test_an_empty_path_is_refused_as_empty_not_read_as_the_current_folder(tmp_path, monkeypatch, capsys, args,
                                                                        option):
    """``-c "$CKPT"`` with CKPT unset was Path("") (the current folder): ``error: .: is a directory, not a
    checkpoint file``; ``evaluate --plots ''`` wrote histograms.png and worst_cases.png where the user stood."""
    from voxface.checkpoint import DEFAULT_WEIGHTS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("voxface.bench.run_bench", lambda *a, **k: pytest.fail("bench ran"))
    monkeypatch.setattr("voxface.checkpoint.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr("voxface.checkpoint.load_model_and_checkpoint", lambda *a, **k: pytest.fail("a model was loaded"))
    code, _, err = run_cli(monkeypatch, capsys, *(a.format(tmp=tmp_path, weights=DEFAULT_WEIGHTS) for a in args))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"error: Invalid value for {option}: is empty (an unset variable?)"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["histograms.png", "worst_cases.png"])
def test_evaluate_refuses_a_plot_path_it_cannot_write_before_evaluating(tmp_path, monkeypatch, capsys, name):
    """``evaluate --plots pl`` where pl/histograms.png is a folder: the whole evaluation ran, the report
    was written, then ``error: pl/histograms.png: cannot write file`` and exit 1, the report never named."""
    monkeypatch.setattr("voxface.checkpoint.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr("voxface.checkpoint.load_model_and_checkpoint", lambda *a, **k: pytest.fail("a model was loaded"))
    (tmp_path / "pl" / name).mkdir(parents=True)
    report = tmp_path / "out" / "r.json"
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", "4", "--report", report, "--plots", tmp_path / "pl")
    lines = err.strip().splitlines()
    assert code == 1 and lines == [f"error: {tmp_path / 'pl' / name}: is a folder, where a file is to be written"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pl"]  # out/ made for the report, removed again


def test_decode_takes_the_checkpoint_as_c_too_and_the_grid_options(tmp_path, monkeypatch, capsys) -> None:
    """decode took its checkpoint only as a positional argument, where sample and the other latent
    commands use -c (and default to the bundled weights), and had no --resolution/--upsample."""
    import trimesh

    from .conftest import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "decode", "-o", tmp_path / "a.ply", "--seed", "3")
    assert code == 0, err
    from voxface.checkpoint import DEFAULT_WEIGHTS

    code, _, err = run_cli(monkeypatch, capsys, "decode", DEFAULT_WEIGHTS, "-o", tmp_path / "b.ply", "--seed", "3")
    assert code == 0, err
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()  # the default is the bundled weights
    code, _, err = run_cli(monkeypatch, capsys, "decode", "-c", DEFAULT_WEIGHTS, "-o", tmp_path / "c.ply", "--seed", "3",
                           "--resolution", "128")
    assert code == 0, err
    coarse, fine = trimesh.load(tmp_path / "a.ply"), trimesh.load(tmp_path / "c.ply")
    assert fine.is_watertight and len(fine.vertices) > 3 * len(coarse.vertices)
    code, _, err = run_cli(monkeypatch, capsys, "decode", DEFAULT_WEIGHTS, "-c", DEFAULT_WEIGHTS, "-o", tmp_path / "d.ply")
    assert code == 1 and "give the checkpoint once" in err and not (tmp_path / "d.ply").exists()
    code, _, err = run_cli(monkeypatch, capsys, "decode", "-o", tmp_path / "d.ply", "--resolution", "100")
    assert code == 1 and "--resolution must be one of 64, 128, 256" in err

"""Training review 39: regressions for the defects found in voxface/train.py and voxface/cli/_train.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from voxface.config import from_dict, load_yaml
from voxface.train import TrainConfig, WarmupCosine, warmup_warning

from .conftest import run_cli
from .test_train import tiny

ROOT = Path(__file__).resolve().parents[1]


def test_a_warmup_as_long_as_the_run_is_warned_with_the_peak_it_reaches() -> None:
    """``warmup_steps >= total_steps`` (``--steps 2`` on a config warming up over 100) was taken without a
    word: the rate only climbed, its peak short of train.lr, and never decayed. The warning says so with the
    peak; a warm-up that ends before the last update (it then takes train.lr) and a run of 0 steps get none."""
    t = TrainConfig(lr=0.003, warmup_steps=20, total_steps=12)
    assert warmup_warning(t) == (
        "train.warmup_steps 20 is not below train.total_steps 12: the learning rate only warms up, to 0.00171 at "
        "the last step, never train.lr 0.003, and does not decay; set train.warmup_steps below 12, or "
        "train.total_steps (--steps) above 20, for the full schedule")
    assert "to 0.00286 at the last step" in warmup_warning(TrainConfig(lr=0.003, warmup_steps=20, total_steps=20))
    # one step fewer of warm-up: the last update takes train.lr itself
    assert warmup_warning(TrainConfig(lr=0.003, warmup_steps=19, total_steps=20)) is None
    assert WarmupCosine(19, 20)(19) == 1.0
    assert warmup_warning(TrainConfig(warmup_steps=5, total_steps=0)) is None


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_no_shipped_config_warms_up_past_its_end(path: Path) -> None:
    """The configs the project ships reach their train.lr (their train: sections only: some start from a
    run's checkpoint that need not exist here)."""
    t = from_dict(TrainConfig, load_yaml(path).get("train") or {}, "train")
    assert t.warmup_steps < t.total_steps and warmup_warning(t) is None, path


def test_voxface_train_warns_of_a_warmup_past_the_end_in_the_run_and_the_dry_run(tmp_path: Path, monkeypatch,
                                                                                 capsys) -> None:
    """``voxface train --steps 2`` on a config with warmup_steps 3: one warning line (the dry run's too), and
    the run still trains, at the rates the warning gives; with --steps 5 no warning."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny(warmup_steps=3, val_every=0, ckpt_every=0, log_every=1, num_val=4)))
    line = ("warning: train.warmup_steps 3 is not below train.total_steps 2: the learning rate only warms up, to "
            "0.0015 at the last step, never train.lr 0.003, and does not decay; set train.warmup_steps below 2, or "
            "train.total_steps (--steps) above 3, for the full schedule\n")
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", tmp_path / "dry", "--steps", 2, "--dry-run")
    assert code == 0 and err.count("warning:") == 1 and line in err, err
    assert not (tmp_path / "dry").exists()
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", tmp_path / "run", "--steps", 2,
                             "--device", "cpu", "--no-progress")
    assert code == 0 and err == line, err
    assert out.startswith("step 2: ")
    recs = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in recs if r["event"] == "train"] == pytest.approx([0.00075, 0.0015])
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", tmp_path / "long", "--steps", 5,
                             "--dry-run")
    assert code == 0 and "warning" not in err, err


def test_overwrite_refuses_to_remove_the_checkpoint_init_from_starts_the_run_from(tmp_path: Path, monkeypatch,
                                                                                 capsys) -> None:
    """``train: {init_from: runs/a/best.pth.tar}`` with ``--out runs/a --overwrite``: the run loaded the earlier
    stage's weights, then removed that stage's files (its checkpoints among them) as --overwrite does, and wrote
    its own in their place: the weights it builds on were gone without a word, and init_from named the new
    run's file. Refused (the run and the dry run) in one line, the folder left as it was."""
    from voxface.errors import VoxfaceError
    from voxface.train import train

    run = tmp_path / "a"
    train(tiny(total_steps=2, warmup_steps=1, val_every=2, ckpt_every=0, num_val=4), run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for name in ("last.pth.tar", "best.pth.tar"):
        stage = tiny(total_steps=2, warmup_steps=1, val_every=0, ckpt_every=0, init_from=str(run / name))
        words = (f"{run}: holds {name}, the checkpoint train.init_from starts this run from, which --overwrite "
                 "would remove: copy it out of the folder and point train.init_from there, or write into another --out")
        with pytest.raises(VoxfaceError) as e:
            train(stage, run, progress=False, overwrite=True)
        assert str(e.value) == words
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(stage))
        code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", run, "--overwrite", "--dry-run")
        assert (code, out, err) == (1, "", f"error: {words}\n")
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # the same stage into another folder starts from those weights as before (shapes only: a dry run)
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", tmp_path / "b", "--dry-run")
    assert code == 0 and "init_from:" in out, err


def test_a_new_run_never_replaces_the_config_it_reads(tmp_path: Path, monkeypatch, capsys) -> None:
    """``voxface train -c config.yaml -o .`` replaced the user's config.yaml (its comments, its inherit_from)
    with the run's resolved copy without a word. A folder holding no run whose config.yaml is the config given
    is refused (the run and the dry run) in one line, the file left as it was; a run's own config.yaml given
    again for a fresh run there (--overwrite) is its resolved copy, and goes on as before."""
    from voxface.errors import VoxfaceError
    from voxface.train import train

    folder = tmp_path / "proj"
    folder.mkdir()
    cfg = folder / "config.yaml"
    text = "# my notes\n" + yaml.safe_dump(tiny(total_steps=2, warmup_steps=1, val_every=0, ckpt_every=0))
    cfg.write_text(text)
    monkeypatch.chdir(folder)
    words = ("its config.yaml is the config this run reads (config.yaml), which the run would replace with its "
             "resolved copy: write into another --out, or move the config out of the folder")
    for extra in (("--dry-run",), ("--no-progress",), ("--no-progress", "--overwrite")):
        code, out, err = run_cli(monkeypatch, capsys, "train", "-c", "config.yaml", "-o", ".", *extra)
        assert (code, out, err) == (1, "", f"error: .: {words}\n")
    with pytest.raises(VoxfaceError, match=r"its config\.yaml is the config this run reads"):
        train(cfg, folder, progress=False)
    assert cfg.read_text() == text and sorted(p.name for p in folder.iterdir()) == ["config.yaml"]
    # into another folder: trains; that run's own config.yaml, given for a fresh run in its folder, is no user's
    assert train(cfg, tmp_path / "run", progress=False).steps == 2
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", tmp_path / "run" / "config.yaml", "-o",
                             tmp_path / "run", "--overwrite", "--dry-run")
    assert code == 0, err


def test_a_new_run_never_replaces_the_parent_its_config_inherits(tmp_path: Path, monkeypatch, capsys) -> None:
    """The same for a parent of the config's inherit_from chain: ``-c child.yaml -o proj`` with child.yaml
    inheriting proj/config.yaml replaced that parent with the child's resolved copy. Refused, naming both."""
    folder = tmp_path / "proj"
    folder.mkdir()
    parent = folder / "config.yaml"
    text = "# shared settings\n" + yaml.safe_dump(tiny(total_steps=2, warmup_steps=1, val_every=0, ckpt_every=0))
    parent.write_text(text)
    child = tmp_path / "child.yaml"
    child.write_text("inherit_from: proj/config.yaml\ntrain: {total_steps: 3}\n")
    for extra in (("--dry-run",), ("--no-progress",)):
        code, out, err = run_cli(monkeypatch, capsys, "train", "-c", child, "-o", folder, *extra)
        assert (code, out) == (1, "") and err == (
            f"error: {folder}: its config.yaml is the config this run reads ({parent}, inherited by {child}), which "
            "the run would replace with its resolved copy: write into another --out, or move the config out of "
            "the folder\n"), err
    assert parent.read_text() == text and sorted(p.name for p in folder.iterdir()) == ["config.yaml"]
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", child, "-o", tmp_path / "run", "--dry-run")
    assert code == 0 and yaml.safe_load(out)["train"]["total_steps"] == 3, err

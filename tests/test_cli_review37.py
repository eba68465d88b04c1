"""Review 37, the command line as a user meets it: bad input, logs, interrupted runs."""

from __future__ import annotations

import json

import pytest

from .conftest import SMALL_CONFIG, TOY_DATA, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _checkpoint(path):
    import torch

    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    torch.manual_seed(0)
    return save_checkpoint(path, create_model(SMALL_CONFIG).eval(), extra={"run_config": {"data": TOY_DATA}})


def test_refine_train_draws_no_progress_bar_into_a_log_and_logs_json_lines_there(tmp_path, monkeypatch, capsys):
    """``voxface refine-train ... 2>log`` (a job: thousands of steps) drew its bar into the log, a
    carriage-return update at every step, and the log got none of the JSON lines that --no-progress
    prints, where train, evaluate and the data commands draw bars only on a terminal. Off a terminal
    (capsys) it logs what --no-progress logs: a JSON line every 25 steps and the validation's."""
    src = _checkpoint(tmp_path / "src.pth.tar")
    out = tmp_path / "out.pth.tar"
    code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, "--steps", "2",
                                "--batch-size", "2", "--points", "16", "--resolution", "32", "--num-val", "1")
    assert code == 0, err
    assert "\r" not in err and "refine-train:" not in err, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records if "step" in r] == [2], err  # the last step is logged
    assert [r["event"] for r in records if "event" in r] == ["val"], err
    assert json.loads(stdout.strip().splitlines()[-1])["checkpoint"] == str(out)


def test_a_latent_command_whose_write_fails_names_the_output_file_not_its_hidden_staging_copy(
        tmp_path, monkeypatch, capsys):
    """The latent commands write into a hidden folder inside -o and move the files in at the end; a
    write that failed there (a full disk) was reported as '<out>/.voxface-partial-<pid>-<random>/
    latents.npz: cannot write file (No space left on device)', a path that is gone when the line is
    read, and the output folder the run had made stayed behind, empty. The line names the output file
    (<out>/latents.npz), and the new folders are removed; an earlier run's folder keeps its files."""
    import errno
    import os

    src = _checkpoint(tmp_path / "src.pth.tar")
    replace = os.replace

    def full_disk(a, b, *args, **kwargs):  # every write inside the staging folder fails at its rename
        if ".voxface-partial-" in os.fspath(b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(a), None, os.fspath(b))
        return replace(a, b, *args, **kwargs)

    out = tmp_path / "new" / "samples"
    args = ("sample", "-n", "1", "--size", "32", "-c", src, "-o")
    monkeypatch.setattr(os, "replace", full_disk)
    code, stdout, err = run_cli(monkeypatch, capsys, *args, out)
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]  # (no prior: N(0, I))
    assert code == 1 and len(lines) == 1, err
    assert lines[0] == f"error: {out / 'latents.npz'}: cannot write file (No space left on device)", err
    assert not (tmp_path / "new").exists()  # the folders the run made, empty again
    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run_cli(monkeypatch, capsys, *args, out)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(os, "replace", full_disk)
    code, _, err = run_cli(monkeypatch, capsys, *args, out, "--seed", "1")
    assert code == 1 and ".voxface-partial" not in err and f"{out / 'latents.npz'}: cannot write" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_output_that_is_a_fifo_or_device_is_refused_not_replaced_by_a_file(tmp_path, monkeypatch, capsys):
    """Every voxface write makes a new file and renames it over the name, so an output that was a FIFO
    or a device node became a regular file: as root, 'voxface evaluate --report /dev/null' (no report
    wanted) replaced the null device, and 'decode -o pipe.ply' the named pipe a reader waited on. One
    line naming the file and what it is, exit 1, before the model is read; the node is left as it was."""
    import os
    import stat

    import voxface.checkpoint

    fifo = tmp_path / "pipe.ply"
    os.mkfifo(fifo)
    report = tmp_path / "report.json"
    os.mkfifo(report)
    monkeypatch.setattr(voxface.checkpoint, "load_model_and_checkpoint", lambda *a, **k: pytest.fail("model read"))
    monkeypatch.setattr(voxface.checkpoint, "load_model", lambda *a, **k: pytest.fail("model read"))
    for args, path in ((("decode", "-o", fifo), fifo), (("evaluate", "-n", "4", "--report", report), report),
                       (("evaluate", "-n", "4", "--report", tmp_path / "link.json"), tmp_path / "link.json")):
        if path.name == "link.json":
            path.symlink_to(report)  # through a link too (/dev/stdout is one)
        code, stdout, err = run_cli(monkeypatch, capsys, *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, err
        assert lines[0].startswith(f"error: {path}: is a FIFO (named pipe); voxface writes a new file"), err
        assert stat.S_ISFIFO(os.stat(path).st_mode)
    assert stat.S_ISLNK(os.lstat(tmp_path / "link.json").st_mode)


def test_a_checkpoint_or_bench_output_that_is_a_fifo_is_refused_not_replaced(tmp_path, monkeypatch, capsys):
    """The same for the commands that write a checkpoint or the bench report (which read an existing
    output first, to refuse replacing a file that is not theirs: a FIFO there is refused before)."""
    import os
    import stat

    src = _checkpoint(tmp_path / "src.pth.tar")
    config = tmp_path / "model.yaml"
    config.write_text(json.dumps({"model": SMALL_CONFIG}))  # JSON is YAML
    fifo, md = tmp_path / "pipe.pth.tar", tmp_path / "pipe.md"
    os.mkfifo(fifo)
    os.mkfifo(md)
    for args, path in ((("init-checkpoint", "-c", config, "-o", fifo), fifo), (("release", src, "-o", fifo), fifo),
                       (("refine-train", "-c", src, "-o", fifo, "--steps", "1"), fifo),
                       (("bench", "-o", md, "--only", "startup"), md)):
        code, stdout, err = run_cli(monkeypatch, capsys, *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, err
        assert lines[0].startswith(f"error: {path}: is a FIFO (named pipe); voxface writes a new file"), err
        assert stat.S_ISFIFO(os.stat(path).st_mode)

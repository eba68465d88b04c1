"""The command line as a whole: every subcommand refuses bad input the same way (one
``error: ...`` line on stderr, exit 1, no traceback), shares option names, and Ctrl-C says so."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from .conftest import run_cli


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "╭" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["sample", "-o", "x", "--seed", "-1"], "'--seed'"),
    (["release", "ck.pth.tar", "-o", "x.pth.tar", "--annotate", "-1"], "'--annotate'"),
    (["evaluate", "--num", "2"], "'--num'"),
    (["data", "preview", "-n", "0"], "'--num'"),
    (["decode", "ck.pth.tar", "-o", "m.ply", "--seed", "abc"], "'--seed'"),
    (["decode", "--no-such-option"], "No such option: --no-such-option"),
    (["reconstruct"], "Missing argument"),
    (["interpolate", "a.png", "b.png"], "Missing option '-o' / '--out'"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["evaluate", "--num"], "Option '--num' requires an argument; see 'voxface evaluate -h'"),  # had no hint
    (["data", "preview", "-n"], "Option '-n' requires an argument; see 'voxface data preview -h'"),
    # -o "$OUT" with OUT unset: Path("") is the current folder, where data cache wrote ./train and ./val
    (["data", "cache", "-o", "", "-n", "4"], "is empty (an unset variable?); name the folder"),
    (["data", "export", "-o", "", "-n", "1"], "is empty (an unset variable?); name the folder"),
    (["reconstruct", "x.png", "-o", " "], "is empty (an unset variable?); name the folder"),
    (["demo", "-o", ""], "is empty (an unset variable?); name the folder"),
    (["export-onnx", "-o", ""], "is empty (an unset variable?); name the folder"),
    (["train", "-c", "c.yaml", "-o", ""], "is empty (an unset variable?); name the folder"),
    (["data", "preview", "-o", ""], "is empty (an unset variable?); name the file"),
    (["data", "check-folder", ".", "--cache-dir", ""], "'--cache-dir': is empty (an unset variable?); name the folder"),
    # -c "$CKPT" with CKPT unset: '.: is a directory, not a checkpoint file'
    (["reconstruct", "x.png", "-o", "o", "-c", ""], "is empty (an unset variable?); name the file to read"),
    (["decode", "", "-o", "m.ply"], "is empty (an unset variable?); name the file to read"),
    (["sample", "-c", "", "-o", "s"], "is empty (an unset variable?); name the file to read"),
    (["export-onnx", "", "-o", "o"], "is empty (an unset variable?); name the file to read"),
    (["refine-train", "-c", "", "-o", "x.pth.tar"], "is empty (an unset variable?); name the file to read"),
    (["train", "--resume", ""], "is empty (an unset variable?); name the file to read"),
    (["data", "check-folder", ".", "-c", ""], "is empty (an unset variable?); name the file to read"),
    (["interpolate", "a.npz", "b.npz", "-o", ""], "is empty (an unset variable?); name the folder"),
    (["sample", "-o", ""], "is empty (an unset variable?); name the folder"),
])
def test_options_typer_refuses_are_one_error_line_and_exit_1(monkeypatch, capsys, tmp_path, args, words):
    """Typer's own refusals (a number out of its range, an unknown option, a missing argument)
    were a boxed panel of 4-5 lines with exit 2, where every check of voxface's is one line, exit 1."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    line = _one_error_line(err)
    assert code == 1, (code, err)
    assert words in line, line
    assert "-h'" in line  # names the help to read
    assert not list(tmp_path.iterdir())  # nothing written


def test_bare_command_and_version_and_help(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys)
    assert code == 2 and "reconstruct" in out  # the help, as before
    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("voxface ")
    code, out, _ = run_cli(monkeypatch, capsys, "data", "export", "-h")
    assert code == 0 and "--num" in out


def test_ctrl_c_prints_interrupted_and_exits_130(tmp_path):
    """A Ctrl-C in a command without its own handler (here `sample`) printed nothing at all: typer
    turned it into a silent exit 130; it now says `interrupted`."""
    proc = subprocess.Popen([sys.executable, "-m", "voxface", "sample", "-n", "1024", "-o", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # in the imports or the decoding: either way a KeyboardInterrupt
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.replace("\r", "\n").strip().splitlines()[-1] == "interrupted", err[-2000:]


@pytest.mark.parametrize("seed", [-2, 2**32 - 1])
def test_data_cache_refuses_a_seed_of_either_split_before_writing(monkeypatch, capsys, tmp_path, seed):
    """`data cache --seed -2` wrote val/ (seed -2 + 1000003 is a valid seed) and only then failed on
    train/; `--seed 2**32 - 1` was blamed as 'data seed 4295967298', a seed never typed."""
    out = tmp_path / "c"
    code, _, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, "-n", 4, "--num-val", 4,
                           "--seed", seed, "--workers", 0, "--ict-root", tmp_path / "no-ict")
    line = _one_error_line(err)
    assert code == 1 and line.startswith(f"error: --seed must be a whole number from 0 to {2**32 - 1 - 1_000_003}, "
                                         f"not {seed}"), line
    assert not out.exists()


@pytest.mark.parametrize("option", ["--resolution", "--image-size"])
@pytest.mark.parametrize("value", [0, -5])
def test_data_check_folder_refuses_sizes_below_one(monkeypatch, capsys, tmp_path, option, value):
    """A zero or negative --resolution / --image-size was a ZeroDivisionError or PIL ValueError traceback."""
    (tmp_path / "d").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "data", "check-folder", tmp_path / "d", option, value)
    line = _one_error_line(err)
    assert code == 1 and line.startswith(f"error: {option} must be at least 1"), line


def test_data_cache_workers_below_zero_is_refused(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", tmp_path / "c", "--workers", -1)
    assert code == 1 and "'--workers'" in _one_error_line(err)
    assert not (tmp_path / "c").exists()


#: options without help in modules this test's author does not own (voxface/cli/_reconstruct.py)
_HELP_LEFT_TO_OTHERS: set[tuple[str, str]] = set()


def test_shared_options_have_the_same_names_everywhere():
    """-o/--out names every output (init-checkpoint and release took only --output), -n/--num every
    count (evaluate took only --num), and every option says what it is (evaluate's --device,
    refine-train's --progress had no help)."""
    import typer.main

    from voxface.cli import app

    root = typer.main.get_command(app)

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, path + (name,))
            else:
                yield " ".join(path + (name,)), cmd

    seen = set()
    for name, cmd in commands(root):
        for p in cmd.params:
            opts = set(p.opts) | set(getattr(p, "secondary_opts", []))
            if p.param_type_name != "option" or "--help" in opts:
                continue
            seen.add(name)
            if (name, p.opts[0]) not in _HELP_LEFT_TO_OTHERS:
                assert p.help, f"voxface {name} {'/'.join(p.opts)} has no help"
            if "-o" in opts:
                assert "--out" in opts, f"voxface {name}: -o is {p.opts}"
            if "--out" in opts:
                assert "-o" in opts, f"voxface {name}: --out without -o"
            if "--num" in opts:
                assert "-n" in opts, f"voxface {name}: --num without -n"
            if "--device" in opts:
                assert p.default == "auto" and "auto" in p.help and "cuda:N" in p.help, (name, p.help)
    assert {"init-checkpoint", "release", "evaluate", "data export", "refine-train"} <= seen


def test_bench_refuses_a_report_folder_it_cannot_write_before_any_section(monkeypatch, capsys, tmp_path):
    """`bench -o` in a folder that cannot be written into (no permission, read-only) ran every
    section (minutes) and failed only on writing the report."""
    import errno

    import voxface.bench
    import voxface.mesh

    def refuse(folder):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    def no_section(*a, **k):
        raise AssertionError("a section ran")

    monkeypatch.setattr(voxface.mesh, "probe_write", refuse)
    monkeypatch.setattr(voxface.bench, "run_bench", no_section)
    out = tmp_path / "ro" / "B.md"
    (tmp_path / "ro").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--only", "startup", "-o", out)
    assert code == 1 and _one_error_line(err) == f"error: {out}: cannot write into {tmp_path / 'ro'} (Permission denied)"
    assert not list((tmp_path / "ro").iterdir())


def _refuse_writes(monkeypatch):
    """Make every folder unwritable to ``voxface.mesh.probe_write`` (as root, permissions cannot)."""
    import errno

    import voxface.mesh

    def refuse(folder):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(voxface.mesh, "probe_write", refuse)


def _no_model(monkeypatch):
    import voxface.checkpoint

    def load_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(voxface.checkpoint, "load_model", load_model)
    monkeypatch.setattr(voxface.checkpoint, "load_model_and_checkpoint", load_model)  # (evaluate's read)


@pytest.mark.parametrize("args", [
    ["sample", "-n", "4"], ["walk"], ["interpolate", "{face}", "{face}"], ["transfer", "{face}", "{face}"],
])
def test_latent_commands_refuse_an_unwritable_output_before_the_model(monkeypatch, capsys, tmp_path, args):
    """sample/walk/interpolate/transfer -o in a folder that cannot be written into decoded and
    rendered every face (minutes for -n 1024) before failing on the first write; a file where the
    folder is to be likewise."""
    face = tmp_path / "face.png"
    face.write_bytes(b"")  # never read: refused before
    args = [a.format(face=face) for a in args]
    _no_model(monkeypatch)
    (tmp_path / "afile").write_text("x")
    for out, words in ((tmp_path / "afile", "is a file, where a folder is needed"),
                       (tmp_path / "afile" / "sub", f"{tmp_path / 'afile'} is a file, where a folder is needed")):
        code, _, err = run_cli(monkeypatch, capsys, *args, "-o", out)
        assert code == 1 and _one_error_line(err) == f"error: {out}: {words}", err
    _refuse_writes(monkeypatch)
    out = tmp_path / "new" / "out"
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", out)
    assert code == 1 and _one_error_line(err) == f"error: {out}: cannot write into {tmp_path} (Permission denied)", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "face.png"]


def test_data_preview_refuses_an_unwritable_output_or_a_folder_before_rendering(monkeypatch, capsys, tmp_path):
    """`data preview -o` in an unwritable folder rendered every sample first; `-o DIR` (a folder)
    wrote DIR.png and DIR_meshes.png beside it."""
    import voxface.data.ict
    import voxface.data.synthetic  # noqa: F401  (imported first, it binds the real load_ict, not the patch below)

    def no_ict(*a, **k):
        raise AssertionError("ICT-FaceKit was loaded")

    monkeypatch.setattr(voxface.data.ict, "load_ict", no_ict)
    (tmp_path / "d").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 2, "-o", tmp_path / "d")
    assert code == 1 and "is a folder; name the preview file" in _one_error_line(err)
    _refuse_writes(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 2, "-o", tmp_path / "d" / "g.png")
    assert code == 1 and _one_error_line(err) == (f"error: {tmp_path / 'd' / 'g.png'}: cannot write into "
                                                  f"{tmp_path / 'd'} (Permission denied)"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and not list((tmp_path / "d").iterdir())


def test_release_checks_its_output_before_annotating(monkeypatch, capsys, tmp_path):
    """release --annotate N into a folder that cannot be written, or in place, rendered and
    correlated N faces (minutes) before the refusal."""
    import voxface.cli._checkpoint as ck

    def no_annotation(*a, **k):
        raise AssertionError("annotated")

    monkeypatch.setattr(ck, "_annotated_prior", no_annotation)
    src = tmp_path / "run.pth.tar"
    src.write_bytes(b"x")  # never read: refused before
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", src, "--annotate", 8)
    assert code == 1 and "releasing in place would overwrite it" in _one_error_line(err)
    _refuse_writes(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "rel.pth.tar", "--annotate", 8)
    assert code == 1 and "cannot write file (Permission denied)" in _one_error_line(err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pth.tar"]


def test_train_dry_run_refuses_what_the_run_refuses(monkeypatch, capsys, tmp_path, repo_root):
    """`train --resume best.pth.tar --dry-run` (or an init-checkpoint file) printed a config and
    exited 0 for a run that `train` then refuses: --dry-run checks the resume as the run does."""
    toy = repo_root / "configs" / "toy.yaml"
    ck = tmp_path / "init.pth.tar"
    assert run_cli(monkeypatch, capsys, "init-checkpoint", "--config", toy, "-o", ck)[0] == 0
    for extra in ([], ["--config", toy]):
        code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", ck, *extra, "--dry-run")
        assert code == 1 and not out, out
        line = _one_error_line(err)
        assert line.startswith(f"error: {ck}: holds weights only") and "cannot resume" in line, line
        code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", ck, *extra, "--out", tmp_path / "run")
        assert code == 1 and _one_error_line(err) == line  # the run's own refusal, word for word
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init.pth.tar"]


def test_refine_train_names_the_latents_option(monkeypatch, capsys, tmp_path):
    """An unknown --latents was refused as `refine: latents must be ...` after the checkpoint was
    read; now as the option, before anything is read (as evaluate's --latents)."""
    code, _, err = run_cli(monkeypatch, capsys, "refine-train", "-c", tmp_path / "missing.pth.tar", "-o",
                           tmp_path / "r.pth.tar", "--latents", "foo")
    assert code == 1 and _one_error_line(err) == "error: --latents must be encoder, true or both, not 'foo'"


def test_data_check_folder_names_the_default_kind_of_a_config_without_one(monkeypatch, capsys, tmp_path):
    """A config without data.kind trains on synthetic data; check-folder -c called its kind None."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  decoder:\n    resolution: 64\n")
    code, _, err = run_cli(monkeypatch, capsys, "data", "check-folder", "-c", cfg)
    line = _one_error_line(err)
    assert code == 1 and line.startswith(f"error: {cfg}: data.kind is 'synthetic', not 'folder'"), line


@pytest.mark.parametrize("command", ["preview", "export"])
@pytest.mark.parametrize("seed", [-1, 2**32])
def test_data_preview_and_export_name_the_seed_option(monkeypatch, capsys, tmp_path, command, seed):
    """`data preview/export --seed -1` was blamed on a 'data seed' (the sampler's word), where
    `data cache` names --seed; now all three name the option, before anything is read or written."""
    out = tmp_path / ("p.png" if command == "preview" else "e")
    code, _, err = run_cli(monkeypatch, capsys, "data", command, "-n", 1, "-o", out, "--seed", seed,
                           "--ict-root", tmp_path / "no-ict")
    line = _one_error_line(err)
    assert code == 1 and line == f"error: --seed must be a whole number from 0 to {2**32 - 1}, not {seed}", line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 10240000000000 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total capacity)\nmore text"),
])
def test_running_out_of_memory_is_one_error_line(error, monkeypatch, capsys, tmp_path):
    """A batch, grid or model too large for the machine ended any command in a traceback (the
    allocator's RuntimeError or MemoryError); it is one line saying so and how to need less."""
    def too_big(*a, **k):
        raise error

    monkeypatch.setattr("voxface.checkpoint.load_model", too_big)
    code, _, err = run_cli(monkeypatch, capsys, "decode", tmp_path / "m.pth.tar", "-o", tmp_path / "x.ply")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: out of memory ("), err
    assert "smaller batches or a coarser grid" in lines[0]
    monkeypatch.setattr("voxface.checkpoint.load_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):  # any other RuntimeError is a bug: its traceback stays
        run_cli(monkeypatch, capsys, "decode", tmp_path / "m.pth.tar", "-o", tmp_path / "x.ply")


@pytest.mark.parametrize("args", [
    ["data", "export", "-n", "1", "-o", "{bad}/sub"],          # voxface's own check (fail)
    ["data", "preview", "-n", "1", "-o", "{bad}/p.png"],
    ["evaluate", "--report", "{bad}/r.json"],                   # the file system's refusal (OSError)
    ["inspect", "{bad}"],                                       # a VoxfaceError naming the file
])
def test_a_file_name_with_a_newline_or_escape_stays_one_error_line(monkeypatch, capsys, tmp_path, args):
    """A file name holding a newline broke `error: <file>: <problem>` over two lines (and an escape
    sequence in one reached the terminal) wherever the command line, not VoxfaceError, printed the
    path; every error line now writes such characters as Python does (`\\n`, `\\x1b`)."""
    bad = tmp_path / "a\nb\x1b[31m"
    bad.write_bytes(b"")
    _no_model(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, *[a.format(bad=bad) for a in args])
    line = _one_error_line(err)
    assert code == 1 and f"{tmp_path}/a\\nb\\x1b[31m" in line and "\x1b" not in line, line


def test_data_check_folder_says_when_its_cache_cannot_be_written(monkeypatch, capsys, tmp_path):
    """`data check-folder --cache-dir X` with X a file (or a folder that cannot be written into)
    voxelised every mesh, cached none and reported `cache X` with exit 0, as if training would read
    the meshes from there; it says so in one warning and the report, and still checks the folder."""
    import numpy as np
    import trimesh
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(data / "a.png")
    head = trimesh.creation.icosphere(subdivisions=2, radius=80.0)
    head.apply_translation([0.0, -30.0, -55.0])  # inside the canonical grid
    head.export(data / "a.ply")
    (tmp_path / "afile").write_text("x")
    for cache, problem in ((tmp_path / "afile", "is a file, where a folder is needed"),
                           (tmp_path / "afile" / "sub", f"{tmp_path / 'afile'} is a file, where a folder is needed")):
        code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", data, "--resolution", 32,
                                 "--image-size", 32, "--cache-dir", cache)
        warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
        assert code == 0 and warnings == [f"warning: {cache}: {problem}; the meshes not cached there before are "
                                          "voxelised but not cached (training voxelises them again)"], err
        assert out.splitlines()[0].endswith(f"cache {cache} (not written)"), out
    cache = tmp_path / "cache"
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", data, "--resolution", 32,
                             "--image-size", 32, "--cache-dir", cache)
    assert code == 0 and "warning" not in err and out.splitlines()[0].endswith(f"cache {cache}"), (out, err)
    assert list(cache.rglob("*.npz"))  # the check filled the cache


@pytest.mark.parametrize("args", [
    ["init-checkpoint", "-c", "{cfg}", "-o", "{out}"],
    ["release", "{ckpt}", "-o", "{out}"],
    ["evaluate", "--report", "{out}"],
    ["data", "preview", "-n", "1", "-o", "{out}"],
    ["decode", "{ckpt}", "-o", "{out}"],
    ["refine-train", "-c", "{ckpt}", "-o", "{out}"],
    ["bench", "--only", "startup", "-o", "{out}"],
])
def test_an_output_file_ending_in_a_slash_is_refused_not_written_beside(monkeypatch, capsys, tmp_path, args):
    """`init-checkpoint -o runs/new/` wrote a file named runs/new, `release -o` and `evaluate --report`
    likewise, and `data preview -o grids/` wrote grids.png and grids_meshes.png: the option's Path
    dropped the slash that said a folder (save_checkpoint refuses one, but never saw it)."""
    (tmp_path / "c.yaml").write_text("model: {}\n")
    (tmp_path / "ck.pth.tar").write_bytes(b"")  # never read: refused before
    _no_model(monkeypatch)
    out = f"{tmp_path / 'new'}/"
    values = {"cfg": tmp_path / "c.yaml", "ckpt": tmp_path / "ck.pth.tar", "out": out}
    code, _, err = run_cli(monkeypatch, capsys, *[a.format(**values) for a in args])
    line = _one_error_line(err)
    assert code == 1 and f": {out} names a folder (it ends in a slash); name the file to write in it" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "ck.pth.tar"]


def test_release_names_an_unreadable_report_and_why_once(monkeypatch, capsys, tmp_path):
    """`release --report` of a missing file or a folder said `r.json: cannot read the evaluation
    report ([Errno 2] No such file or directory: 'r.json')` (the path twice, Python's errno), and of
    a picture a codec's message; now the file and the system's reason, as every other error."""
    ckpt = tmp_path / "ck.pth.tar"
    assert run_cli(monkeypatch, capsys, "init-checkpoint", "-c", _tiny_config(tmp_path), "-o", ckpt)[0] == 0
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for report, problem in ((tmp_path / "missing.json", "cannot read the evaluation report (No such file or directory)"),
                            (tmp_path, "cannot read the evaluation report (Is a directory)"),
                            (tmp_path / "pic.png", "is not UTF-8 text (byte 0: 0x89), not a `voxface evaluate "
                                                   "--report` JSON file")):
        code, _, err = run_cli(monkeypatch, capsys, "release", ckpt, "-o", tmp_path / "rel.pth.tar", "--report", report)
        assert code == 1 and _one_error_line(err) == f"error: {report}: {problem}", err
    assert not (tmp_path / "rel.pth.tar").exists()


def _tiny_config(tmp_path):
    from .conftest import TINY_CONFIG

    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_CONFIG}))
    return cfg


def test_data_export_refuses_a_folder_of_files_named_as_its_samples(monkeypatch, capsys, tmp_path):
    """`data export -o frames` into a folder of a video's frames (000001.png, ... as ffmpeg names
    them) overwrote them with synthetic crops, and a failed export deleted them as half-written
    samples; it is refused before anything is read or written. What a killed export leaves (part of
    its first sample, 000000) is still taken as its own."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(1, 6):
        (frames / f"{i:06d}.png").write_bytes(b"frame %d" % i)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 3, "-o", frames, "--ict-root", tmp_path / "no")
    assert code == 1 and _one_error_line(err) == (
        f"error: {frames}: holds 000001.png, 000002.png, 000003.png and 2 more, named as exported samples but not "
        "written by `voxface data export` (no .export.json, no sample's .json): the export would overwrite them; "
        "export into another folder (-o)"), err
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:06d}.png" for i in range(1, 6)]
    assert all((frames / f"{i:06d}.png").read_bytes() == b"frame %d" % i for i in range(1, 6))
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "000000.png").write_bytes(b"part")
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 3, "-o", killed, "--ict-root", tmp_path / "no")
    assert code == 1 and "no such ICT-FaceKit folder" in _one_error_line(err), err  # went on to the export


def test_release_and_init_checkpoint_never_replace_a_file_that_is_not_a_voxface_checkpoint(monkeypatch, capsys,
                                                                                             tmp_path):
    """`release -o vox-cpk.pth.tar` (the README's name) replaced First Order Motion Model's
    vox-cpk.pth.tar beside it, and `init-checkpoint -c cfg.yaml -o cfg.yaml` the config it had just
    read: only a run's resume state was kept. Anything but a voxface checkpoint, or what a failed
    write left (empty, truncated), is now refused before any work, the file kept byte for byte."""
    import torch

    cfg = _tiny_config(tmp_path)
    ckpt = tmp_path / "ck.pth.tar"
    assert run_cli(monkeypatch, capsys, "init-checkpoint", "-c", cfg, "-o", ckpt)[0] == 0
    fomm = tmp_path / "vox-cpk.pth.tar"
    torch.save({"generator": {"w": torch.zeros(3)}, "kp_detector": {"w": torch.zeros(2)},
                "optimizer_generator": {"state": {}, "param_groups": []}, "epoch": 99}, fomm)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    toy = tmp_path / "toy.yaml"
    toy.write_text("data: {kind: toy}\n")
    for args, out, words in (
        (["release", ckpt], fomm, "is not a voxface checkpoint (no 'config' and 'state_dict'): it looks like a First "
                                  "Order Motion Model checkpoint (vox-cpk.pth.tar) with networks generator, "
                                  "kp_detector; the release would replace it"),
        (["init-checkpoint", "-c", cfg], cfg, "is a text file (starts "),
        (["init-checkpoint", "-c", cfg], photo, "is a PNG image, not a torch checkpoint; the initialised checkpoint "
                                                "would replace it"),
        # refine-train checked only for resume state, after loading: it trained, then replaced the file
        (["refine-train", "-c", ckpt, "--config", toy, "--steps", "1"], cfg, "is a text file (starts "),
    ):
        before = out.read_bytes()
        code, _, err = run_cli(monkeypatch, capsys, *args, "-o", out)
        line = _one_error_line(err)
        assert code == 1 and line.startswith(f"error: {out}: exists and {words}"), line
        assert line.endswith("write to another file, or remove this one first"), line
        assert out.read_bytes() == before
    from voxface.checkpoint import release_checkpoint
    from voxface.errors import CheckpointError

    with pytest.raises(CheckpointError, match="exists and is a PNG image, not a torch checkpoint; the release would"):
        release_checkpoint(ckpt, photo)  # the API as the command
    # replaced as before: a voxface checkpoint, and a failed write's empty or truncated file
    for out, data in ((tmp_path / "empty.pth.tar", b""), (tmp_path / "cut.pth.tar", ckpt.read_bytes()[:1000]),
                      (tmp_path / "old.pth.tar", ckpt.read_bytes())):
        out.write_bytes(data)
        assert run_cli(monkeypatch, capsys, "release", ckpt, "-o", out)[0] == 0
        assert torch.load(out, weights_only=True)["state_dict"]


def test_evaluate_never_replaces_a_file_that_is_not_a_report(monkeypatch, capsys, tmp_path):
    """`evaluate -c run/best.pth.tar --report run/last.pth.tar` (a slip of the finger) evaluated and
    then replaced the run's resume checkpoint with the JSON report (only the checkpoint being
    evaluated was guarded); an existing --report that is not a report is refused before the model
    is loaded, and an earlier report (or an empty file) is replaced as before."""
    import voxface.checkpoint
    from voxface.errors import VoxfaceError

    _no_model(monkeypatch)
    last = tmp_path / "last.pth.tar"
    last.write_bytes(b"PK\x03\x04" + bytes(200))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {}\n")
    for out in (last, cfg):
        before = out.read_bytes()
        code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--report", out)
        assert code == 1 and _one_error_line(err) == (
            f"error: --report {out} exists and is not a `voxface evaluate` report (a JSON object with num and "
            "summary): the report would replace it; name another file, or remove this one first"), err
        assert out.read_bytes() == before

    def reached(*a, **k):
        raise VoxfaceError("the model is loaded")

    monkeypatch.setattr(voxface.checkpoint, "load_model_and_checkpoint", reached)  # evaluate's one read
    earlier, empty = tmp_path / "r.json", tmp_path / "e.json"
    earlier.write_text('{"num": 4, "seed": 1, "resolution": 64, "summary": {}}')
    empty.write_bytes(b"")
    for out in (earlier, empty):
        code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--report", out)
        assert code == 1 and _one_error_line(err) == "error: the model is loaded", err


def test_data_preview_replaces_its_two_grids_together(monkeypatch, capsys, tmp_path):
    """A write failing after the crops' grid (a full disk) left the new crops' grid beside an earlier
    run's meshes grid: a pair of other samples. Both are written, or neither is replaced."""
    import errno

    import voxface.mesh

    from .toy_ict import write_toy_ict

    ict = write_toy_ict(tmp_path / "ict").parent
    out, meshes = tmp_path / "g.png", tmp_path / "g_meshes.png"
    out.write_bytes(b"earlier crops")
    meshes.write_bytes(b"earlier meshes")
    real, calls = voxface.mesh._temporary, []

    def full_on_the_second(path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path)

    monkeypatch.setattr(voxface.mesh, "_temporary", full_on_the_second)
    code, _, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 1, "-o", out, "--ict-root", ict)
    assert code == 1 and "No space left on device" in _one_error_line(err.replace("\r", "\n").splitlines()[-1]), err
    assert len(calls) == 2 and out.read_bytes() == b"earlier crops" and meshes.read_bytes() == b"earlier meshes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "g_meshes.png", "ict"]  # no temporary left
    monkeypatch.setattr(voxface.mesh, "_temporary", real)
    code, out_text, _ = run_cli(monkeypatch, capsys, "data", "preview", "-n", 1, "-o", out, "--ict-root", ict)
    assert code == 0 and out_text.strip() == f"wrote {out} and {meshes}"
    assert out.read_bytes()[:4] == meshes.read_bytes()[:4] == b"\x89PNG"


def test_release_annotate_shows_its_progress(monkeypatch, capsys, tmp_path):
    """`release --annotate 256` (as `make weights` runs it) rendered and encoded its faces for
    minutes without a word; a progress bar counts them on a terminal, and the directions are named as
    before."""
    import torch

    from voxface.checkpoint import DEFAULT_WEIGHTS, load_checkpoint

    from .toy_ict import write_toy_ict

    ict = write_toy_ict(tmp_path / "ict").parent
    out = tmp_path / "rel.pth.tar"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is shown there
    code, _, err = run_cli(monkeypatch, capsys, "release", DEFAULT_WEIGHTS, "-o", out, "--annotate", 4,
                           "--ict-root", ict)
    assert code == 0, err
    bar = err.replace("\r", "\n")
    assert "annotate: 100%" in bar and "4/4" in bar, err
    prior = load_checkpoint(out)["prior"]
    corr = prior["z_exp_pca"]["coeff_correlation"]
    assert prior["z_exp_pca"]["coeff_correlation_n"] == 4 and corr.shape[0] > 0 and torch.isfinite(corr.float()).all()

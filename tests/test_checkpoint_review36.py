"""Checkpoints, review 36: what `inspect` prints of a file from elsewhere, which report a release takes
as the file's, and paths or zip headers the checks could not read."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import torch

from voxface.checkpoint import inspect_checkpoint, load_checkpoint, save_checkpoint

from .conftest import run_cli

_EVIL = "\x1b]0;owned\x07\x1b[2J\nresume       optimizer yes"  # a terminal title, a cleared screen, a forged line


def test_inspect_escapes_the_control_characters_a_checkpoint_holds(tmp_path, tiny_model, monkeypatch, capsys):
    """`voxface inspect` is how one looks at a checkpoint from elsewhere without running it, but its table
    printed the file's own strings raw (top-level keys, network names, loss names, ``released_from``):
    a key holding an escape sequence set the terminal's title or cleared the screen, and one holding a
    newline added a line of its own to the table. Each line is escaped as the ``error:`` lines are."""
    foreign = tmp_path / "foreign.pth"
    torch.save({f"model{_EVIL}": {"w": torch.zeros(3)}, "epoch": 1}, foreign)
    ours = save_checkpoint(tmp_path / "ours.pth.tar", tiny_model, loss_history=[{f"loss{_EVIL}": 1.0}],
                           extra={"released_from": f"x{_EVIL}"})
    clean = save_checkpoint(tmp_path / "clean.pth.tar", tiny_model, loss_history=[{"loss": 1.0}],
                            extra={"released_from": "x"})
    for path in (foreign, ours):
        table = inspect_checkpoint(path).format()
        assert "\x1b" not in table and "\x07" not in table, table
        assert "\\x1b]0;owned\\x07\\x1b[2J\\nresume" in table  # shown, escaped
        assert not [line for line in table.splitlines() if line.startswith("resume") and "yes" in line], table
    assert len(inspect_checkpoint(ours).format().splitlines()) == len(inspect_checkpoint(clean).format().splitlines())
    code, out, err = run_cli(monkeypatch, capsys, "inspect", foreign)
    assert code == 0 and err == "" and "\x1b" not in out and "\x07" not in out, out
    assert len(out.splitlines()) == len(inspect_checkpoint(foreign).format().splitlines())
    code, out, _ = run_cli(monkeypatch, capsys, "inspect", foreign, "--json")
    assert code == 0 and f"model{_EVIL}" in json.loads(out)["keys"]  # the JSON keeps the strings as they are


def _report(checkpoint: str, provenance: dict | None = None) -> str:
    data = {"num": 4, "seed": 7, "resolution": 32, "summary": {"model": {"iou": {"mean": 0.5}}},
            "checkpoint": checkpoint}
    return json.dumps(data if provenance is None else {**data, "provenance": provenance})


def test_release_takes_a_report_of_the_files_bytes_whatever_name_it_gave_them(tmp_path, tiny_model, monkeypatch,
                                                                             capsys):
    """The report's ``checkpoint`` is the path evaluate was given, relative to the folder it ran in, and
    release read it from its own folder: `cd runs/b; voxface release ../a/best.pth.tar --report ../a/r.json`
    found runs/b's best.pth.tar under the report's 'best.pth.tar' and refused the report of the very file
    it released ('evaluates best.pth.tar, not ../a/best.pth.tar'), as it refused a byte-identical copy
    (a file moved to ship it), though the SHA-256 the report records of the bytes it scored is checked on
    the release's own read. Where that SHA-256 is recorded it decides; a report of another file is still
    refused, naming it by the absolute path its provenance records."""
    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    torch.manual_seed(1)
    scored = save_checkpoint(a / "best.pth.tar", tiny_model, epoch=3)
    other = save_checkpoint(b / "best.pth.tar", tiny_model, epoch=4)  # another file of the same name
    sha = hashlib.sha256(scored.read_bytes()).hexdigest()
    provenance = {"checkpoint": str(scored.resolve()), "checkpoint_sha256": sha, "checkpoint_epoch": 3}
    (a / "r.json").write_text(_report("best.pth.tar", provenance))  # evaluate run in runs/a
    monkeypatch.chdir(b)
    code, _, err = run_cli(monkeypatch, capsys, "release", "../a/best.pth.tar", "--report", "../a/r.json",
                           "-o", "rel.pth.tar")
    assert code == 0, err
    assert load_checkpoint(b / "rel.pth.tar")["extra"]["evaluation"]["provenance"] == provenance
    copy = tmp_path / "ship" / "model.pth.tar"
    copy.parent.mkdir()
    copy.write_bytes(scored.read_bytes())
    report = tmp_path / "r.json"
    report.write_text(_report(str(scored), provenance))
    code, _, err = run_cli(monkeypatch, capsys, "release", copy, "--report", report, "-o",
                           tmp_path / "ship" / "r.pth.tar")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "release", other, "--report", report, "-o", tmp_path / "x.pth.tar")
    assert code == 1 and err.startswith(f"error: {report}: evaluates {scored.resolve()}, not {other} (SHA-256 "), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.pth.tar").exists()
    report.write_text(_report(str(scored)))  # a report without the SHA-256: the file it names decides, as before
    code, _, err = run_cli(monkeypatch, capsys, "release", other, "--report", report, "-o", tmp_path / "x.pth.tar")
    assert code == 1 and f"evaluates {scored}, not {other}; embed a report of this checkpoint" in err, err
    report.write_text(_report("x" * 5000))  # a name no file can have is no other file, not a traceback
    code, _, err = run_cli(monkeypatch, capsys, "release", other, "--report", report, "-o", tmp_path / "x.pth.tar")
    assert code == 0, err


def test_a_checkpoint_path_the_system_cannot_look_at_is_one_checkpoint_error(tmp_path, monkeypatch):
    """A file in a folder this user may not search (``chmod 600``: stat fails with EACCES), or a name the
    file system cannot hold, raised the bare ``PermissionError`` / ``OSError`` of pathlib's first look
    (``exists()``) from load_checkpoint, load_model, inspect and ``CheckpointSource.of_file``, not the
    ``CheckpointError`` (reason ``"unreadable"``) an unreadable file gives; a folder this user may not list
    raised ``PermissionError`` while its ``.pth`` files were listed for the message."""
    import pathlib

    from voxface.checkpoint import CheckpointSource, load_model
    from voxface.errors import CheckpointError

    too_long = tmp_path / ("x" * 300) / "m.pth.tar"  # ENAMETOOLONG from stat, as root too
    for read in (load_checkpoint, load_model, inspect_checkpoint, lambda p: CheckpointSource.of_file(p, "0" * 64)):
        with pytest.raises(CheckpointError) as e:
            read(too_long)
        assert e.value.reason == "unreadable"
        assert str(e.value) == f"{too_long}: cannot read checkpoint (File name too long)"
    folder = tmp_path / "runs"
    folder.mkdir()

    def unlistable(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "iterdir", unlistable)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder)
    assert e.value.reason == "directory" and str(e.value) == f"{folder}: is a directory, not a checkpoint file"


def _garble(data: bytes, damage: str) -> bytes:
    """``data`` (a torch.save zip archive) with one header field changed as a flipped byte changes it."""
    out = bytearray(data)
    entry = data.find(b"PK\x01\x02")  # the central directory's first record (archive/data.pkl)
    if damage == "compression":  # a compression method no zip reader has
        out[entry + 10:entry + 12] = (99).to_bytes(2, "little")
    elif damage == "encryption":  # the 'encrypted' flag bit
        out[entry + 8] |= 1
    elif damage == "version":  # 'version needed to extract' 6.4
        out[entry + 6:entry + 8] = (64).to_bytes(2, "little")
    else:  # the zip64 end locator's disk count: 'spans multiple disks'
        locator = data.rfind(b"PK\x06\x07")
        out[locator + 16:locator + 20] = (2).to_bytes(4, "little")
    return bytes(out)


@pytest.mark.parametrize("damage", ["compression", "encryption", "version", "disks"])
def test_a_checkpoint_whose_zip_headers_a_changed_byte_garbled_is_one_line(tmp_path, tiny_model, monkeypatch, capsys,
                                                                           damage):
    """A changed byte in a checkpoint's zip headers (a copy or a download gone wrong: what the CRC-32 check
    is there for) reached the checks' own zipfile calls as Python's NotImplementedError ('That compression
    method is not supported', 'zip file version 6.4'), RuntimeError ('... is encrypted, password required
    for extraction'), zlib.error or BadZipFile ('zipfiles that span multiple disks', from is_zipfile): a
    traceback from load_checkpoint, load_model, inspect and every command, where torch.load itself refuses
    the file (all but the version, which no zip writer sets past 6.3). Each is the one-line 'is a corrupt
    zip archive (...)' CheckpointError (reason 'corrupt')."""
    from voxface.checkpoint import load_model
    from voxface.errors import CheckpointError

    good = save_checkpoint(tmp_path / "good.pth.tar", tiny_model)
    path = tmp_path / "m.pth.tar"
    path.write_bytes(_garble(good.read_bytes(), damage))
    if damage != "version":  # torch refuses these too (its reader does not look at the version a record needs)
        with pytest.raises(RuntimeError):
            torch.load(path, weights_only=True)
    for read in (load_checkpoint, lambda p: load_model(p, device="cpu"), inspect_checkpoint):
        with pytest.raises(CheckpointError) as e:
            read(path)
        assert e.value.reason == "corrupt" and str(e.value).startswith(f"{path}: is a corrupt zip archive ("), e.value
        assert "\n" not in str(e.value)
    code, out, err = run_cli(monkeypatch, capsys, "inspect", path)
    assert code == 1 and out == "" and err.startswith(f"error: {path}: is a corrupt zip archive (") and \
        len(err.splitlines()) == 1, err



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc/self/status")
def test_checking_an_existing_output_reads_no_tensor_data_into_memory(tmp_path, tiny_model):
    """check_output_checkpoint (release, init-checkpoint and refine-train -o, before any work) loaded the
    existing file whole onto the CPU to look at its keys: `voxface release X -o vox-cpk.pth.tar` over First
    Order Motion Model's (the README's example of a file it refuses) held its 700 MB to say no, and a
    1 GB foreign file peaked at 960 MB more. It reads the file without its tensors' data (meta tensors);
    what it refuses and replaces is unchanged."""
    import subprocess

    from voxface.checkpoint import check_output_checkpoint
    from voxface.errors import CheckpointError

    big = tmp_path / "vox-cpk.pth.tar"
    torch.save({"generator": {f"w{i}": torch.zeros(4_000_000) for i in range(6)}, "kp_detector": {}}, big)  # 96 MB
    probe = ("import re, sys\n"  # VmHWM: this process's peak RSS (ru_maxrss keeps the forking parent's, pytest's)
             "from voxface.checkpoint import check_output_checkpoint\n"
             "from voxface.errors import CheckpointError\n"
             "peak = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\n"
             "before = peak()\n"
             "try:\n    check_output_checkpoint(sys.argv[1], 'release')\n"
             "except CheckpointError as e:\n    print(e.reason)\n"
             "print((peak() - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True, check=True).stdout
    reason, grown_mb = out.split()
    assert reason == "output" and int(grown_mb) < 40, out  # 92 MB more before
    with pytest.raises(CheckpointError, match="First Order Motion Model checkpoint.*the release would replace it"):
        check_output_checkpoint(big, "release")
    opt = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="resume state"):
        check_output_checkpoint(save_checkpoint(tmp_path / "last.pth.tar", tiny_model, opt), "release")
    check_output_checkpoint(save_checkpoint(tmp_path / "rel.pth.tar", tiny_model, half=True), "release")  # replaced
    (tmp_path / "cut.pth.tar").write_bytes((tmp_path / "rel.pth.tar").read_bytes()[:5000])  # a failed write's
    check_output_checkpoint(tmp_path / "cut.pth.tar", "release")

"""Session 34, lead: the file record :func:`voxface.load_model` keeps (``model.source``) and the one
:func:`voxface.reconstruct.model_provenance` reads for an explicit checkpoint are one construction."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from voxface.checkpoint import CheckpointSource, load_model, save_checkpoint
from voxface.errors import CheckpointError
from voxface.models import create_model
from voxface.reconstruct import model_digest, model_provenance

from .conftest import TINY_CONFIG


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "run" / "last.pth.tar", create_model(copy.deepcopy(TINY_CONFIG)).eval(), epoch=7)


def test_of_file_is_the_record_load_model_keeps(ckpt: Path, tmp_path: Path) -> None:
    link = tmp_path / "latest.pth.tar"
    os.symlink(ckpt, link)
    model = load_model(link, device="cpu")
    src = CheckpointSource.of_file(link, model_digest(model))
    assert src == model.source
    assert src.path == ckpt.resolve() and src.epoch == 7 and len(src.sha256) == 64


def test_explicit_checkpoint_and_recorded_source_give_the_same_keys(ckpt: Path) -> None:
    model = load_model(ckpt, device="cpu")
    recorded, explicit = model_provenance(model), model_provenance(model, ckpt)
    assert recorded.keys() == explicit.keys() >= {"checkpoint", "checkpoint_sha256", "checkpoint_epoch"}
    for k in recorded:
        assert recorded[k] == explicit[k] and recorded[k].dtype == explicit[k].dtype, k
    assert explicit["checkpoint_epoch"] == np.int64(7)


def test_changed_weights_drop_the_file_unless_named(ckpt: Path) -> None:
    model = load_model(ckpt, device="cpu")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert "checkpoint" not in model_provenance(model)
    assert str(model_provenance(model, ckpt)["checkpoint"]) == str(ckpt.resolve())


def test_of_file_names_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth.tar"):
        CheckpointSource.of_file(bad, "0" * 64)


def test_release_refuses_a_report_of_the_same_path_written_again(ckpt: Path, tmp_path: Path, monkeypatch,
                                                                  capsys) -> None:
    """A report of ``last.pth.tar`` made before the trainer wrote that file again names the same path:
    ``release --report`` checked the name only and embedded it into the new weights. The report's
    provenance records the SHA-256 of the bytes it scored (evaluate, 4bad21f); release compares it with
    the file it releases, and embeds the provenance with the report."""
    import hashlib
    import json

    from voxface.checkpoint import load_checkpoint

    from .conftest import run_cli

    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    report = tmp_path / "r.json"
    data = {"num": 4, "seed": 7, "resolution": 32, "summary": {"model": {}}, "checkpoint": str(ckpt),
            "provenance": {"voxface_version": "x", "model_sha256": "0" * 64, "checkpoint": str(ckpt),
                           "checkpoint_sha256": sha, "checkpoint_epoch": 7}}
    report.write_text(json.dumps(data))
    dst = tmp_path / "rel.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "release", ckpt, "-o", dst, "--report", report)
    assert code == 0, err
    assert load_checkpoint(dst)["extra"]["evaluation"]["provenance"] == data["provenance"]
    torch.manual_seed(1)  # the same path, other bytes
    save_checkpoint(ckpt, create_model(copy.deepcopy(TINY_CONFIG)).eval(), epoch=8)
    dst.unlink()
    code, out, err = run_cli(monkeypatch, capsys, "release", ckpt, "-o", dst, "--report", report)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {report}: scored a file of SHA-256 "), err
    assert f"but {ckpt} is" in lines[0] and "evaluate it again" in lines[0] and not dst.exists()


def test_check_folder_warns_of_a_folder_without_identity_pairs(tmp_path: Path, monkeypatch, capsys) -> None:
    """FolderDataset.pairing_warning (be21f17) was printed by nothing: `voxface data check-folder` of a
    folder where no crop names its person said 'N samples of N persons' and no more, though every crop
    pairs with itself and the identity-consistency term learns nothing. It warns now, of the training
    split; a folder with a person of two crops does not."""
    from .conftest import run_cli
    from .test_input_review34 import _folder_sample

    plain = tmp_path / "plain"
    for stem in ("a", "b", "c", "d"):
        _folder_sample(plain, stem)
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", plain, "--resolution", "8",
                             "--image-size", "16", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    warn = [line for line in err.splitlines() if line.startswith(f"warning: {plain}: ")]
    assert len(warn) == 1 and "no sample names its person" in warn[0], err
    paired = tmp_path / "paired"
    for stem, person in (("a", "anna"), ("b", "anna"), ("c", "bo"), ("d", "bo")):
        _folder_sample(paired, stem, {"person": person})
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", paired, "--resolution", "8",
                             "--image-size", "16", "--cache-dir", tmp_path / "cache")
    assert code == 0 and "paired with itself" not in err, err


def test_an_export_into_a_folder_whose_first_sample_npz_is_empty_is_no_traceback(tmp_path: Path, monkeypatch,
                                                                                   capsys) -> None:
    """An export by an older voxface (no .export.json) whose first sample's .npz is empty or damaged:
    np.load raised EOFError / BadZipFile, which _earlier_settings did not catch (a traceback, or the
    root's unnamed 'a file read was empty'). The unreadable values are left out of the comparison."""
    from voxface.data.export import _earlier_settings

    out = tmp_path / "old"
    out.mkdir()
    for i, payload in enumerate((b"", b"PK\x03\x04garbage")):
        (out / "000000.json").write_text(json.dumps({"seed": 3, "resolution": 32}))
        for ext in (".png", ".ply"):
            (out / f"000000{ext}").write_bytes(b"x")
        (out / "000000.npz").write_bytes(payload)
        found = _earlier_settings(out)
        assert found is not None and found[0] == {"seed": 3, "resolution": 32}, (i, found)


def test_a_synthetic_dataset_pickles_without_its_sampler_and_gives_the_same_items(tmp_path: Path) -> None:
    """The trainer reads ``train_ds[0]`` in the main process, so each spawn / forkserver DataLoader
    worker was sent the parsed ICT model with the dataset (53 MB pickled with the toy ICT, more with
    the real one). The dataset pickles without it; a copy rebuilds it and gives the same items."""
    import pickle

    from voxface.data.synthetic import SyntheticDataset

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    ds = SyntheticDataset(8, 5, 16, ict_root=root)
    first = ds[3]
    assert ds._sampler is not None
    blob = pickle.dumps(ds)
    assert len(blob) < 100_000, len(blob)
    copy_ = pickle.loads(blob)
    assert copy_._sampler is None and ds._sampler is not None  # the original keeps its own
    again = copy_[3]
    assert first.keys() == again.keys()
    for k in first:
        a, b = first[k], again[k]
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k
        elif isinstance(a, np.ndarray):
            assert np.array_equal(a, b), k
        else:
            assert a == b, k


def test_refine_logits_waits_for_mps_as_for_cuda(monkeypatch) -> None:
    """refine_logits synchronised CUDA only before reading its timers: on Apple GPUs (MPS) the decode
    and per-face seconds timed kernel launches, and the bench's coarse-to-fine rows with them. It
    waits through device.synchronize, as the bench does (for every device: a no-op on the CPU)."""
    import voxface.device
    from voxface.refine import refine_logits

    torch.manual_seed(0)
    model = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    seen: list[str] = []
    real = voxface.device.synchronize
    monkeypatch.setattr(voxface.device, "synchronize", lambda dev: (seen.append(dev.type), real(dev))[1])
    lat = model.encode(torch.rand(2, 3, model.config.encoder.image_size, model.config.encoder.image_size))
    out = refine_logits(model, lat.z_id, lat.z_exp, resolution=2 * model.grid.resolution, upsample="decoder")
    assert len(out) == 2 and seen == ["cpu"] * 3  # the decoder once, then each face
    calls: list[str] = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append("cuda"))
    real(torch.device("mps")), real(torch.device("cuda")), real(torch.device("cpu"))
    assert calls == ["mps", "cuda"]


def test_sigterm_stops_a_latent_command_as_ctrl_c_does(tmp_path: Path) -> None:
    """`voxface sample` (and interpolate, transfer, walk) died of SIGTERM without a word and left its
    staging folder for the next run to remove, where every other long command says ``terminated``
    and cleans up. They stop as Ctrl-C does: one line, exit 143, no ``.voxface-partial-*`` folder."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "s"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("voxface")), "sample", "-n", "200", "--size", "32",
                             "-o", str(out), "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".voxface-partial-*")):  # in its staging folder: writing
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "sample never began writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err, err[-2000:]
    assert not list(out.glob(".voxface-partial-*"))

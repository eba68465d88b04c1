"""Which file a loaded model came from: :func:`voxface.load_model` records it (``model.source``) as it
reads the file, and every ``.npz`` the model writes says so, without reading the file again."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from voxface.models import create_model

from .conftest import TINY_CONFIG


def _tiny(seed: int):
    torch.manual_seed(seed)
    return create_model(copy.deepcopy(TINY_CONFIG)).eval()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("face") / "face.png"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS).save(p)
    return p


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    from voxface.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / "run" / "last.pth.tar", _tiny(0), epoch=3)


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of a checkpoint file voxface.checkpoint makes (its open(), its _read)."""
    import builtins

    import voxface.checkpoint as vc

    reads: list[str] = []
    real_open, real_read = builtins.open, vc._read
    monkeypatch.setattr(vc, "open", lambda f, *a, **k: reads.append(f"open {f}") or real_open(f, *a, **k),
                        raising=False)
    monkeypatch.setattr(vc, "_read", lambda p, *a, **k: reads.append(f"_read {p}") or real_read(p, *a, **k))
    return reads


def test_load_model_records_the_file_it_read_once(ckpt, tmp_path, monkeypatch) -> None:
    """``model.source``: the path through the link, the SHA-256 of the bytes loaded (``sha256sum``'s)
    and the epoch, from one opening of the file (the CLI hashed it in a second read, after loading)."""
    from voxface.checkpoint import CheckpointSource, load_model

    link = tmp_path / "latest.pth.tar"
    link.symlink_to(ckpt)
    reads = _count_reads(monkeypatch)
    model = load_model(link, device="cpu")
    assert reads == [f"_read {link}", f"open {ckpt.resolve()}"]  # opened once: sniffed, checked, hashed, loaded
    assert isinstance(model.source, CheckpointSource)
    assert model.source.path == ckpt.resolve() and model.source.path.is_absolute()
    assert model.source.sha256 == _sha256(ckpt)
    assert model.source.epoch == 3


def test_a_file_replaced_after_loading_is_not_recorded(ckpt, photo, tmp_path, monkeypatch) -> None:
    """A training saves ``last.pth.tar`` again after the model was loaded from it: the ``.npz`` of
    ``reconstruct_files`` (no ``checkpoint=`` needed) and of ``model.reconstruct(...).save`` record
    the file loaded, its hash and epoch, and nothing reads the file again (the CLI re-read it and
    recorded the new file's hash and epoch beside the old weights' digest)."""
    from voxface.checkpoint import load_model, save_checkpoint
    from voxface.latent import as_latents
    from voxface.reconstruct import model_digest, reconstruct_files

    want_sha = _sha256(ckpt)
    model = load_model(ckpt, device="cpu")
    save_checkpoint(ckpt, _tiny(1), epoch=4)  # replaced (atomically, as a training does)
    assert _sha256(ckpt) != want_sha
    reads = _count_reads(monkeypatch)
    s = reconstruct_files(model, [photo], tmp_path / "out", detect=False, latents=True, progress=False, workers=1)
    rec = model.reconstruct(photo, detect=False)
    files = rec.save(tmp_path / "one" / "face.ply", latents=True)
    assert reads == []
    assert len(s.ok) == 1
    for npz in (tmp_path / "out" / "face.npz", next(Path(f) for f in files if str(f).endswith(".npz"))):
        with np.load(npz) as z:
            assert str(z["checkpoint"]) == str(ckpt.resolve())
            assert str(z["checkpoint_sha256"]) == want_sha
            assert z["checkpoint_epoch"].item() == 3 and z["checkpoint_epoch"].dtype == np.int64
            assert str(z["model_sha256"]) == model_digest(model)
        assert as_latents(model, npz).z_id.shape == (1, TINY_CONFIG["encoder"]["z_id"])


def test_an_explicit_checkpoint_wins(ckpt, tmp_path, monkeypatch) -> None:
    """``reconstruct_files(checkpoint=...)`` records the file given, read then from one opening
    (its epoch and its hash were two reads, which a file replaced between them made disagree); a
    wrapped model (DataParallel) still records the file it was loaded from."""
    from voxface.checkpoint import load_model, save_checkpoint
    from voxface.reconstruct import model_provenance

    model = load_model(ckpt, device="cpu")
    assert str(model_provenance(torch.nn.DataParallel(model))["checkpoint_sha256"]) == _sha256(ckpt)
    other = save_checkpoint(tmp_path / "other.pth.tar", model, epoch=11)
    link = tmp_path / "other-link.pth.tar"
    link.symlink_to(other)
    reads = _count_reads(monkeypatch)
    got = model_provenance(model, link)
    assert reads == [f"_read {link}", f"open {other.resolve()}"]
    assert str(got["checkpoint"]) == str(other.resolve()) and got["checkpoint_epoch"] == 11
    assert str(got["checkpoint_sha256"]) == _sha256(other)


def test_the_source_survives_moves_and_copies_but_not_saving(ckpt, tmp_path) -> None:
    """``model.source`` stays through ``.to`` / ``deepcopy``; ``state_dict`` and a saved checkpoint
    leave it out (the file saved is recorded when that file is loaded)."""
    from voxface.checkpoint import load_checkpoint, load_model, save_checkpoint
    from voxface.reconstruct import model_provenance

    model = load_model(ckpt, device="cpu")
    src = model.source
    assert model.to("cpu").source == src and model.to(torch.float32).source == src
    twin = copy.deepcopy(model)
    assert twin.source == src and str(model_provenance(twin)["checkpoint_sha256"]) == src.sha256
    assert not any("source" in k for k in model.state_dict())
    saved = save_checkpoint(tmp_path / "again.pth.tar", model, epoch=5)
    raw = load_checkpoint(saved)
    assert "source" not in raw and not any("source" in str(k) for k in raw["meta"])
    again = load_model(saved, device="cpu")
    assert again.source.path == saved.resolve() and again.source.epoch == 5


def test_changed_weights_no_longer_claim_the_file(ckpt) -> None:
    """Weights changed after loading (fine-tuned in place) are not the file's: the ``.npz`` records
    their new digest and no checkpoint; the cached digest follows an in-place change."""
    from voxface.checkpoint import load_model
    from voxface.reconstruct import model_digest, model_provenance

    model = load_model(ckpt, device="cpu")
    before = model_digest(model)
    assert "checkpoint" in model_provenance(model)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    after = model_digest(model)
    assert after != before and after == model_digest(copy.deepcopy(model))  # the cache was not stale
    got = model_provenance(model)
    assert str(got["model_sha256"]) == after and "checkpoint" not in got


def test_a_model_made_in_code_records_no_file(photo, tmp_path, monkeypatch) -> None:
    """A model not loaded from a file: the version and the weights' digest, no checkpoint keys. The
    weights are hashed once, not once a photo (the digest is cached until a weight changes)."""
    import hashlib

    from voxface import __version__
    from voxface.reconstruct import model_digest

    model = _tiny(0)
    assert getattr(model, "source", None) is None
    model.reconstruct(photo, detect=False)
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: hashed.append(a) or real(*a))
    rec = model.reconstruct(photo, detect=False)
    assert hashed == []
    rec.save(tmp_path / "face.ply", latents=True)
    with np.load(tmp_path / "face.npz") as z:
        assert str(z["voxface_version"]) == __version__ and str(z["model_sha256"]) == model_digest(model)
        assert "checkpoint" not in z.files

"""Checkpoints and evaluation, review 39: the paths a user gives load_model and inspect (~, URLs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import run_cli
from voxface.checkpoint import CheckpointSource, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
from voxface.errors import CheckpointError


def test_a_checkpoint_path_under_the_home_folder_written_with_a_tilde_loads(tmp_path, tiny_model, monkeypatch):
    """voxface.load_model('~/models/m.pth.tar') said 'checkpoint file not found' of a file that was
    there: the ``~`` was taken literally, while init_from, inherit_from and the ONNX export expand it."""
    monkeypatch.setenv("HOME", str(tmp_path))
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model, epoch=5)
    model = load_model("~/m.pth.tar", device="cpu")
    assert model.source.path == path.resolve()
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert load_checkpoint("~/m.pth.tar")["epoch"] == 5
    assert inspect_checkpoint("~/m.pth.tar").path == str(path)
    assert CheckpointSource.of_file("~/m.pth.tar", "x").epoch == 5
    with pytest.raises(CheckpointError, match=r"^.*/gone\.pth: checkpoint file not found$"):
        load_model("~/gone.pth", device="cpu")  # the expanded path is the one named


def test_a_literal_tilde_folder_that_exists_is_still_read(tmp_path, tiny_model, monkeypatch):
    """A folder named ``~`` in the working directory wins over the home folder, as the shell's quoted '~'."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    save_checkpoint(tmp_path / "~" / "m.pth.tar", tiny_model, epoch=2)
    assert load_checkpoint("~/m.pth.tar")["epoch"] == 2


@pytest.mark.parametrize("url", ["https://example.com/vox-cpk.pth.tar", "file:///tmp/m.pth.tar",
                                 "https:/example.com/vox-cpk.pth.tar"])
def test_a_url_is_refused_saying_nothing_is_downloaded(url):
    """load_model('https://host/vox-cpk.pth.tar') said 'https:/host/vox-cpk.pth.tar: checkpoint file not
    found' (Path collapsed the '//'): it now says it is a URL and that the file must be downloaded first.
    The collapsed form is what the CLI's Path argument hands on."""
    for read in (lambda: load_model(url, device="cpu"), lambda: inspect_checkpoint(url),
                 lambda: load_checkpoint(url)):
        with pytest.raises(CheckpointError) as e:
            read()
        assert str(e.value) == (f"{url}: is a URL: voxface reads checkpoint files on this machine and downloads "
                                "nothing; download it first (e.g. torch.hub.download_url_to_file) and pass the "
                                "file's path")
        assert e.value.reason == "missing"


def test_inspect_of_a_url_is_one_line(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "inspect", "https://example.com/vox-cpk.pth.tar")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "error: https:/example.com/vox-cpk.pth.tar: is a URL: voxface reads checkpoint files on this machine and "
        "downloads nothing; download it first (e.g. torch.hub.download_url_to_file) and pass the file's path"]


def test_saving_and_releasing_to_a_tilde_path_writes_under_the_home_folder(tmp_path, tiny_model, monkeypatch):
    """save_checkpoint('~/models/m.pth.tar', model) made a folder named '~' in the working directory
    (and the file in it), which load_model('~/...') from elsewhere did not find and `rm -r ~` would
    'clean up'; release_checkpoint's src and dst took '~' literally as well."""
    from voxface.checkpoint import release_checkpoint

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert save_checkpoint("~/models/m.pth.tar", tiny_model, epoch=4) == home / "models" / "m.pth.tar"
    assert release_checkpoint("~/models/m.pth.tar", "~/models/r.pth.tar") == home / "models" / "r.pth.tar"
    assert list(work.iterdir()) == []  # no folder named '~' here
    assert load_checkpoint(home / "models" / "r.pth.tar")["epoch"] == 4
    (work / "~").mkdir()  # a folder of that literal name that exists is the one written into
    assert save_checkpoint("~/m.pth.tar", tiny_model) == Path("~/m.pth.tar")
    assert (work / "~" / "m.pth.tar").is_file() and not (home / "m.pth.tar").exists()

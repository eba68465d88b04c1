"""Checkpoints, review 38: reads under torch's own load settings, and what `inspect` holds in memory."""

from __future__ import annotations

import sys

import pytest
import torch

from voxface.checkpoint import CheckpointSource, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint


def test_a_program_that_sets_torchs_mmap_default_still_loads_checkpoints(tmp_path, tiny_model, monkeypatch):
    """torch.utils.serialization.config.load.mmap = True (a documented torch setting a program may make
    to map big files) made load_model read every good file as 'could not be read as a torch checkpoint
    (ValueError: f must be a file path in order to use the mmap argument)': the file is unpickled from
    the handle it was hashed through, and torch maps only paths."""
    serialization_config = pytest.importorskip("torch.utils.serialization").config
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model, epoch=3)
    # set and put back by assignment: monkeypatch's undo deleted the config entry (it was no attribute
    # of the object), after which every torch.load in the session failed ('load.mmap does not exist')
    before = serialization_config.load.mmap
    serialization_config.load.mmap = True
    try:
        model = load_model(path, device="cpu")
        for k, v in tiny_model.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        assert model.source.epoch == 3
        assert CheckpointSource.of_file(path, "x").epoch == 3
        assert load_checkpoint(path)["epoch"] == 3
        assert inspect_checkpoint(path).epoch == 3
    finally:
        serialization_config.load.mmap = before
    assert torch.load(path, weights_only=True)["epoch"] == 3  # torch's own loads work afterwards


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc/self/status")
def test_inspect_maps_the_tensors_of_a_large_file_instead_of_reading_them_into_memory(tmp_path):
    """inspect (`voxface inspect`, a look at a file from elsewhere) loaded every tensor onto the CPU to
    count its elements: a 96 MB foreign file held 96 MB more, a 7 GB one (a diffusion model's) 7 GB. A zip
    archive's tensors are mapped from the file; the counts and the scalars read (a 0-d tensor epoch) are
    as before, and a legacy (pre-zip) file is still read as it was."""
    import subprocess

    big = tmp_path / "vox-cpk.pth.tar"
    state = {f"w{i}": torch.zeros(4_000_000) for i in range(6)}
    torch.save({"generator": state, "kp_detector": {"k": torch.ones(3)}, "epoch": torch.tensor(41)}, big)  # 96 MB
    probe = ("import re, sys\n"  # VmHWM: this process's peak RSS (ru_maxrss keeps the forking parent's, pytest's)
             "from voxface.checkpoint import inspect_checkpoint\n"
             "peak = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\n"
             "before = peak()\n"
             "info = inspect_checkpoint(sys.argv[1])\n"
             "print(info.epoch, info.networks['generator']['parameters'], (peak() - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True, check=True).stdout
    epoch, parameters, grown_mb = map(int, out.split())
    assert (epoch, parameters) == (41, 24_000_000) and grown_mb < 40, out  # 96 MB more before
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.zeros(3)}, "epoch_it": torch.tensor(7)}, legacy,
               _use_new_zipfile_serialization=False)
    info = inspect_checkpoint(legacy)
    assert info.epoch == 7 and info.networks == {"model": {"parameters": 3, "tensors": 1, "dtype": "float32"}}


def test_inspect_reads_a_file_its_file_system_cannot_map(tmp_path, tiny_model, monkeypatch):
    """Where the file cannot be mapped (a file system without mmap: some FUSE mounts), inspect reads it
    as before rather than calling a good file corrupt."""
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model, epoch=2)

    def no_mapping(*args, **kwargs):
        raise RuntimeError("unable to mmap 747076 bytes from file <m.pth.tar>: No such device (19)")

    monkeypatch.setattr(torch.UntypedStorage, "from_file", no_mapping)
    info = inspect_checkpoint(path)
    assert info.kind == "voxface" and info.epoch == 2 and info.note is None

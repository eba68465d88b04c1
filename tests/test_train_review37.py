"""Training review 37: regressions for the defects found in voxface/train.py, voxface/models and voxface/losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxface.errors import ConfigError
from voxface.models import create_model
from voxface.train import resolve_config

from .conftest import run_cli


@pytest.mark.parametrize("model, key", [
    ("encoder: {z_id: 1000000000000000000000}", "model.encoder.z_id"),
    ("decoder: {name: deform, template_resolution: 100000000}", "model.decoder.template_resolution"),
    ("encoder: {widths: [32, 64, 128, 100000000000000000000]}", "model.encoder.widths[3]"),
])
def test_a_model_size_torch_cannot_hold_is_one_line_naming_the_key_and_file(
        tmp_path: Path, monkeypatch, capsys, model: str, key: str) -> None:
    """An absurd size failed in torch's size arithmetic while the model was built on the meta device
    (TypeError 'Overflow when unpacking long long', RuntimeError 'Storage size calculation overflowed'):
    a traceback from voxface train --dry-run and create_model. It is one ConfigError naming the key and
    the file of the inherit_from chain that sets it."""
    (tmp_path / "parent.yaml").write_text(f"model:\n  {model}\n")
    (tmp_path / "child.yaml").write_text("inherit_from: parent.yaml\ntrain: {total_steps: 3}\n")
    code, out, err = run_cli(monkeypatch, capsys, "train", "--config", tmp_path / "child.yaml",
                             "--out", tmp_path / "run", "--dry-run")
    assert code != 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "parent.yaml" in lines[0] and key in lines[0] and "too large" in lines[0], err
    with pytest.raises(ConfigError, match="too large") as e:
        resolve_config({"inherit_from": str(tmp_path / "parent.yaml")})
    assert str(e.value.path) == str(tmp_path / "parent.yaml")
    with pytest.raises(ConfigError, match="too large") as e:
        create_model(tmp_path / "parent.yaml")
    assert str(e.value.path) == str(tmp_path / "parent.yaml")


def test_a_model_too_large_for_memory_on_a_real_device_is_a_config_error() -> None:
    """Built on the CPU (create_model outside train, which checks on the meta device first), weights that
    cannot be allocated were the allocator's RuntimeError; now a ConfigError naming the size."""
    with pytest.raises(ConfigError, match=r"model\.encoder\.z_id 100000000000 is too large"):
        create_model({"encoder": {"z_id": 10**11}})


def test_loss_points_above_the_grids_cells_is_refused_when_the_config_is_read(tmp_path: Path) -> None:
    """train.loss.points with a typo's extra zeros was taken by the config and the dry run; the run's first
    step then drew them and ran out of memory ('use smaller batches or a coarser grid'), after the data was
    built. Above the grid's R^3 cells point mode costs more than the whole grid it estimates: refused, keyed
    (the file that sets it is named), where the grid's own number of points is still taken."""
    (tmp_path / "base.yaml").write_text("model:\n  decoder: {name: deform, resolution: 32, widths: [32, 16, 8]}\n"
                                        "train:\n  loss: {points: 40000000000}\n")
    (tmp_path / "child.yaml").write_text("inherit_from: base.yaml\ntrain: {total_steps: 3}\n")
    with pytest.raises(ConfigError, match=r"train\.loss\.points 40000000000 is more than the 32,768 cells") as e:
        resolve_config(tmp_path / "child.yaml")
    assert str(e.value.path) == str(tmp_path / "base.yaml")
    cfg = {"model": {"decoder": {"name": "deform", "resolution": 32, "widths": [32, 16, 8]}},
           "train": {"loss": {"points": 32 ** 3}}}
    assert resolve_config(cfg)["train"].loss.points == 32 ** 3


def test_create_model_of_a_config_dict_names_the_file_it_inherits_a_bad_key_from(tmp_path: Path, monkeypatch) -> None:
    """create_model({'inherit_from': 'base.yaml'}) (a sweep from Python) said 'model: decoder.widths needs 4
    entries ...' or 'model.encoder.name: unknown encoder ...' naming no file, where model_config of the same
    dict names base.yaml (a80ebb0); and create_model('child.yaml') blamed an unknown encoder its parent sets on
    the child. Each names the file that sets the key, '(inherited by ...)'."""
    monkeypatch.chdir(tmp_path)
    Path("widths.yaml").write_text("model:\n  decoder: {widths: [8, 8]}\n")
    Path("name.yaml").write_text("model:\n  encoder: {name: vit}\n")
    Path("child.yaml").write_text("inherit_from: name.yaml\n")
    for config, file, words in (({"inherit_from": "widths.yaml"}, "widths.yaml", "decoder.widths needs 4 entries"),
                                ({"inherit_from": "name.yaml"}, "name.yaml", "unknown encoder 'vit'"),
                                ("child.yaml", "name.yaml", "unknown encoder 'vit'")):
        with pytest.raises(ConfigError, match=words) as e:
            create_model(config)
        assert str(e.value.path) == file and "inherited by" in str(e.value), e.value
    with pytest.raises(ConfigError, match=r"^model\.encoder\.name: unknown encoder") as e:  # no file: none named
        create_model({"encoder": {"name": "vit"}})
    assert e.value.path is None

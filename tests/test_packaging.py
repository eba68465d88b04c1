"""What an installed voxface holds: the bundled weights as package data, the console script; and
what it says of the repository's configs/ folder, which it does not install."""

from __future__ import annotations

import importlib.metadata
import importlib.resources

import pytest

import voxface
from voxface.errors import ConfigError


def test_bundled_weights_are_package_data():
    from voxface.checkpoint import DEFAULT_WEIGHTS

    res = importlib.resources.files("voxface").joinpath("weights", "vox-cpk.pth.tar")
    assert res.is_file()
    with importlib.resources.as_file(res) as path:
        assert path.resolve() == DEFAULT_WEIGHTS.resolve()


def test_console_script_entry_point():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("voxface") == "voxface.cli:main"


def test_a_missing_repository_config_says_configs_is_not_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as after `pip install voxface`: no configs/ here
    with pytest.raises(ConfigError, match=r"config file not found \(configs/ is a folder of the voxface "
                                          r"repository, not installed"):
        voxface.load_yaml("configs/voxface-64.yaml")
    with pytest.raises(ConfigError, match=r"config file not found$"):  # other paths: no hint
        voxface.load_yaml("no-such.yaml")
    # a configs/ config whose inherit_from is missing: the file was found, so no hint either
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("inherit_from: b.yaml\n")
    with pytest.raises(ConfigError) as e:
        voxface.load_yaml("configs/a.yaml")
    assert "not installed" not in str(e.value)


def test_package_is_marked_typed():
    """PEP 561: without ``py.typed`` mypy refuses ``import voxface`` (missing library stubs) and
    ignores every annotation of the package. setuptools puts the marker in the wheel."""
    assert importlib.resources.files("voxface").joinpath("py.typed").is_file()

"""Config loading: messages that say what is wrong with a YAML file and where."""

from __future__ import annotations

import pytest

from voxface.config import load_yaml
from voxface.errors import ConfigError


@pytest.mark.parametrize("text, message", [
    ("model:\n\tencoder: 1\n", "line 2, column 1: found character '\\t' that cannot start any token, while "
                               "scanning for the next token; indent with spaces, not tabs"),
    ("model:\n  encoder:\n    z_id: 16\n   z_exp: 8\n", "line 4, column 4: expected <block end>, but found "
                                                        "'<block mapping start>', while parsing a block mapping"),
    ("model:\n  encoder: {z_id: 16\n", "line 3, column 1: expected ',' or '}', but got '<stream end>', "
                                       "while parsing a flow mapping"),
])
def test_invalid_yaml_says_what_is_wrong_and_on_which_line(tmp_path, text, message):
    """The message was PyYAML's first line alone, often only its context ('not valid YAML (while
    scanning for the next token)'): neither the problem nor the line."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_yaml(cfg)
    assert str(e.value) == f"{cfg}: not valid YAML ({message})"

"""The public Python API as a user's editor, type checker and code see it: the names of
``voxface.__all__``, the config dataclasses, device selection, the error classes."""

from __future__ import annotations

import ast
from pathlib import Path

import voxface

INIT = Path(voxface.__file__)


def _type_checking_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    names |= {a.asname or a.name for a in imp.names}
    return names


def test_type_checkers_see_every_public_name_and_no_catch_all():
    """mypy, pyright and jedi (Jupyter's completion) read the ``if TYPE_CHECKING:`` imports, not the
    lazy ``__getattr__``: each public name and submodule is imported there (``to_pytorch3d`` was
    not: typed ``Any``, no completion), and ``__getattr__`` is hidden from them, else every
    attribute, a misspelt ``voxface.lod_model`` too, is ``Any`` to mypy and passes."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    seen = _type_checking_imports(tree)
    missing = (set(voxface._LAZY) | set(voxface.SUBMODULES)) - seen
    assert not missing, f"not imported under TYPE_CHECKING: {sorted(missing)}"
    top_level_defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "__getattr__" not in top_level_defs
    guarded = [n for n in tree.body if isinstance(n, ast.If) and isinstance(n.test, ast.UnaryOp)
               and isinstance(n.test.op, ast.Not) and getattr(n.test.operand, "id", None) == "TYPE_CHECKING"]
    assert any(isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for g in guarded for f in g.body)
    # and at run time the lazy lookup still works and still refuses unknown names
    assert voxface.to_pytorch3d.__module__ == "voxface.interop"
    try:
        voxface.lod_model  # noqa: B018
    except AttributeError as e:
        assert "lod_model" in str(e)
    else:  # pragma: no cover
        raise AssertionError("voxface.lod_model resolved")


# -- configs -------------------------------------------------------------------------------------
def test_model_config_round_trips_through_dict_and_yaml():
    import yaml

    from voxface.config import ModelConfig, RefineConfig, from_dict, to_dict

    cfg = ModelConfig(refine=RefineConfig(hidden=32))
    cfg.frame.center_mm = (1.5, -2.0, 3.25)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    assert from_dict(ModelConfig, yaml.safe_load(yaml.safe_dump(to_dict(cfg)))) == cfg
    assert cfg.resolution == cfg.decoder.resolution == 64


def test_config_refuses_unknown_keys_and_wrong_lengths_naming_the_key():
    import pytest

    from voxface.config import model_config
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.encoder: unknown key\(s\) \['zid'\]"):
        model_config({"encoder": {"zid": 3}})
    # a centre of 2 or 4 numbers was taken, and made a Grid whose maths failed later (or broadcast)
    for centre in ([0.0, -30.0], [0.0, -30.0, -55.0, 1.0]):
        with pytest.raises(ConfigError, match=r"^model\.frame\.center_mm: expected a list of 3 values"):
            model_config({"frame": {"center_mm": centre}})
    assert model_config({"encoder": {"widths": [8, 16]}}).encoder.widths == (8, 16)  # any length there


def test_config_file_errors_name_the_file(tmp_path):
    """``voxface.create_model("my.yaml")`` with a typo said ``model.encoder: unknown key(s)`` without
    the file; an ``inherit_from`` that is not a file name was a TypeError traceback (CLI too)."""
    import pytest

    from voxface.config import load_yaml, model_config
    from voxface.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder:\n    zid: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        voxface.create_model(bad)
    assert str(e.value).startswith(f"{bad}: model.encoder: unknown key(s) ['zid']") and e.value.path == str(bad)
    neg = tmp_path / "neg.yaml"
    neg.write_text("model:\n  frame:\n    side_mm: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{neg}: model\.frame: side_mm must be positive"):
        model_config(str(neg))
    for i, parent in enumerate(["5", "[base.yaml]", "''", "{a: 1}"]):
        child = tmp_path / f"child{i}.yaml"
        child.write_text(f"inherit_from: {parent}\nmodel: {{}}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=rf"^{child}: inherit_from must name a YAML file"):
            load_yaml(child)

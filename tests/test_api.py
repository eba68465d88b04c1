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

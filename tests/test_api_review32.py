"""The public API surface, review 32: what type checkers see of ``voxface``'s top-level names."""

from __future__ import annotations

import ast
from pathlib import Path

import voxface

INIT = Path(voxface.__file__)


def _explicit_reexports(tree: ast.Module) -> dict[str, list[str]]:
    """Names bound in ``voxface/__init__.py`` by an import, at module level or under ``if
    TYPE_CHECKING:``: name -> the forms binding it (``"X as X"`` is an explicit re-export)."""
    forms: dict[str, list[str]] = {}
    nodes = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            nodes += node.body
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                bound = a.asname or a.name
                forms.setdefault(bound, []).append("X as X" if a.asname == a.name else "X")
    return forms


def test_every_public_name_is_an_explicit_reexport_for_mypy_strict():
    """``mypy --strict`` (``--no-implicit-reexport``) on a user's ``voxface.load_model()`` said
    'Module "voxface" does not explicitly export attribute "load_model"', and the same of
    ``InputError``, ``VoxfaceError``, ``extract_mesh``, ``__version__``...: every top-level name, as
    mypy reads ``__all__ = sorted([...])`` as no export list, and the names were imported as plain
    ``from .x import y`` (private to it). Each is now imported as ``y as y``, the form every type
    checker takes as a re-export (checked here on the file; mypy 2.4 --strict passes a user's script
    of these names)."""
    forms = _explicit_reexports(ast.parse(INIT.read_text(encoding="utf-8")))
    missing = sorted(n for n in voxface.__all__ if "X as X" not in forms.get(n, []))
    assert not missing, f"public names not re-exported as 'X as X': {missing}"
    # nothing public is bound by a plain import too (which would shadow nothing, but says the form drifted)
    plain = sorted(n for n in voxface.__all__ if "X" in forms.get(n, []))
    assert not plain, plain
    # and at run time the names are what they were: the same objects as in their modules
    from voxface import _version, checkpoint, errors

    assert voxface.load_model is checkpoint.load_model
    assert voxface.VoxfaceError is errors.VoxfaceError and voxface.InputError is errors.InputError
    assert voxface.__version__ == _version.__version__

"""Review 37 of the training data made from ICT-FaceKit (voxface.data.ict, head, appearance,
synthetic, toy): a user's FaceXModel folder that is partial, corrupt or unreadable, and the
samples made from it."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

from voxface.data.ict import load_ict
from voxface.errors import DataError

from .test_data import _copy_ict


def _one_line(e: pytest.ExceptionInfo, path: Path, words: str) -> None:
    msg = str(e.value)
    assert msg.startswith(f"{path}: {words}"), msg
    assert "\n" not in msg


def test_an_ict_file_this_user_may_not_read_is_one_line_naming_it(tmp_path, toy_root, monkeypatch):
    """load_ict hashes the ICT files (ICTModel.key) before it parses them, and the hash opened each
    file bare: one this user may not read (chmod 000 in a shared clone: EACCES for anyone but root;
    EIO on a failing disk) was PermissionError's traceback, though _read_obj says 'cannot read' of
    such a file. (Repro: setpriv --reuid=65534 python -c "load_ict(root)" over a chmod 000 identity OBJ.)"""
    import voxface.data.ict as ict

    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))  # nothing parsed yet: the files are hashed
    root = _copy_ict(toy_root, tmp_path / "ict")
    locked = root / "FaceXModel" / "identity042.obj"

    def guarded(file, *args, **kwargs):
        if Path(file) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(ict, "open", guarded, raising=False)
    with pytest.raises(DataError) as e:
        load_ict(root)
    _one_line(e, locked, "cannot read (Permission denied)")

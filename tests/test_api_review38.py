"""Session 38 review of the public Python API (``import voxface``, ``voxface.errors``) and the notebooks."""

from __future__ import annotations

import os
import sys

import pytest

import voxface


@pytest.mark.skipif(sys.platform == "win32", reason="file names with escape sequences")
def test_an_error_quoting_a_file_name_escapes_its_control_characters_as_the_path_does(tmp_path):
    """``VoxfaceError`` escaped the unprintable characters of its ``path`` but not of its message,
    so an error quoting other files' names kept theirs raw: ``load_checkpoint`` of a folder lists the
    checkpoints in it, and one named ``a\\x1b[31mred.pth.tar`` turned the terminal red when the
    traceback (or ``print(e)`` in a script) showed the message; an undecodable byte stayed a lone
    surrogate, which ``print(e)`` cannot write to a UTF-8 stream. The message is escaped as the path
    is (the CLI's ``error:`` line, which escaped it already, is unchanged)."""
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "a\x1b[31mred.pth.tar").touch()
    (folder / os.fsdecode(b"caf\xe9.pth.tar")).touch()
    with pytest.raises(voxface.CheckpointError) as e:
        voxface.load_checkpoint(folder)
    text = str(e.value)
    assert text.isprintable(), repr(text)
    assert "a\\x1b[31mred.pth.tar" in text and "caf\\udce9.pth.tar" in text, text
    assert e.value.path == str(folder) and text.startswith(f"{folder}: is a directory")
    text.encode("utf-8")  # a lone surrogate could not be written
    # the same for any message, and escaping twice changes nothing (the CLI escapes str(e) again)
    err = voxface.InputError("bell \x07 and\nnewline \udcff")
    assert str(err) == "bell \\x07 and newline \\udcff"
    assert str(voxface.InputError(str(err))) == str(err)
    assert str(voxface.ImageError("ok: café 3³ µm", "/p/a.png")) == "/p/a.png: ok: café 3³ µm"


def test_check_finite_refuses_an_integer_beyond_floats_range_as_an_input_error():
    """``check_finite`` promises an ``InputTypeError`` / ``InputError`` naming the argument; an int
    past float's range (``10**400``) escaped it as a bare ``OverflowError: int too large to convert to
    float`` naming nothing (``viz.latent_explorer(yaw=...)``, ``detect_and_crop(source_scale=...)`` and
    the refinement level go through it). It is the argument error, as an infinite float is."""
    import numpy as np

    from voxface.errors import InputError, check_finite

    with pytest.raises(InputError, match=r"^yaw must be finite, got an integer beyond float's range") as e:
        check_finite("yaw", 10**400)
    assert isinstance(e.value, ValueError)
    with pytest.raises(InputError, match=r"^yaw must be finite, got inf$"):
        check_finite("yaw", float("inf"))
    assert check_finite("yaw", 10**300) == 1e300 and check_finite("yaw", np.int64(-3)) == -3.0

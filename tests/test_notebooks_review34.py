"""Session 34 review of the notebooks, the HTML viewer, the command line's root and the package entry."""

from __future__ import annotations

import shutil

import pytest

from .conftest import run_cli


def test_a_warning_escapes_the_control_characters_of_a_file_name_as_an_error_does(tmp_path, monkeypatch, capsys):
    """A ``warning:`` line printed a file name's escape sequences raw (a folder named
    ``e\\x1b]0;title\\x07vil`` retitled the terminal; ``\\x1b[2J`` cleared it), where an ``error:``
    line shows them escaped (:func:`voxface.errors.printable`). Warnings are escaped the same way."""
    photo = tmp_path / "ok.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 150, 120)).save(photo)
    folder = tmp_path / "e\x1b]0;title\x07vil\x1b[2J"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(photo, folder / "ok.png")
    shutil.copy(photo, folder / "sub" / "deep.png")  # left out without --recursive: one warning naming the folder
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", folder, "-o", blocker / "out")  # refused before loading
    assert code == 1, err
    warning = next(line for line in err.splitlines() if line.startswith("warning: "))
    assert "e\\x1b]0;title\\x07vil\\x1b[2J: 1 photo(s) in its sub-folders are left out" in warning, warning
    assert not any(c in err for c in "\x1b\x07"), repr(err)
    assert err.count("\n") == 2 and err.splitlines()[1].startswith("error: "), err


def test_an_eof_error_no_command_handled_is_one_error_line_and_an_abort_is_interrupted(tmp_path, monkeypatch, capsys):
    """An EOFError escaping a command (numpy's "No data left in file" for an empty .npz:
    ``voxface data export -o DIR`` over a folder whose first sample's .npz is empty) became typer's
    Abort after a blank stderr line, and the root's ``except typer.Abort`` never ran: an Abort is a
    RuntimeError, caught first by the out-of-memory clause, which re-raised it: a traceback ending in
    ``typer.exceptions.Abort``. The EOFError is one ``error:`` line now, exit 1; an Abort (Ctrl-C or
    EOF that typer caught itself) is ``interrupted``, exit 130."""
    import typer

    import voxface.checkpoint

    ckpt = tmp_path / "m.pth.tar"
    ckpt.write_bytes(b"")

    def eof(path):
        raise EOFError("No data left in file")

    monkeypatch.setattr(voxface.checkpoint, "inspect_checkpoint", eof)
    code, out, err = run_cli(monkeypatch, capsys, "inspect", ckpt)
    assert (code, out, err) == (1, "", "error: a file read was empty or cut short (No data left in file)\n")

    def abort(path):
        raise typer.Abort()

    monkeypatch.setattr(voxface.checkpoint, "inspect_checkpoint", abort)
    code, out, err = run_cli(monkeypatch, capsys, "inspect", ckpt)
    assert (code, out, err) == (130, "", "interrupted\n")



def test_a_page_frames_the_vertices_its_faces_name():
    """The page's shared framing (centre and radius, which also scale the int16 vertices) bounded
    every vertex, so a vertex no face names (a scan's stray point; faces deleted in an editor) drew
    the head as a speck at the view's edge: an icosphere r=80 with one such vertex at x=900 had
    centre (410, 0, 0) and radius 490 instead of (0, 0, 0) and 80 (as voxface.viz frames it since
    dd53f75). The framing bounds the vertices faces name; the stray one, never drawn, is clipped."""
    import base64

    import numpy as np
    import trimesh

    from voxface.html import page_data

    sphere = trimesh.creation.icosphere(3, radius=80.0)
    clean = page_data([sphere])
    stray = page_data([(np.vstack([sphere.vertices, [[900.0, 0.0, 0.0]]]), sphere.faces)])
    assert stray["center"] == clean["center"] and stray["radius"] == clean["radius"] == pytest.approx(80.0)
    v = np.frombuffer(base64.b64decode(stray["frames"][0]["v"]), "<i2").reshape(-1, 3)
    q = np.frombuffer(base64.b64decode(clean["frames"][0]["v"]), "<i2").reshape(-1, 3)
    assert (v[:-1] == q).all() and v[-1].tolist() == [32767, 0, 0]  # the drawn vertices as without it
    assert stray["frames"][0]["f"] == clean["frames"][0]["f"]


def test_a_page_caches_nothing_on_the_callers_meshes_it_decimates():
    """A mesh over ``max_faces`` (a 256^3 face, ~250k faces) was asked ``is_watertight`` and
    ``is_winding_consistent`` to choose how to decimate it, which trimesh caches on the caller's
    mesh: its edges, ~120 bytes a face (9.8 MB for an 82k-face sphere), kept as long as the caller
    keeps the mesh (voxface interpolate/walk/sample hold every face to the end). Closedness is
    found on the arrays (mesh._edge_topology), as the page's winding check already was."""
    import trimesh

    from voxface.html import page_data

    sphere = trimesh.creation.icosphere(6, radius=80.0)
    cap = trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] > 0], process=False)
    for m in (sphere, cap):
        m._cache.clear()
    data = page_data([sphere, cap], max_faces=2000)
    assert [fr["cull"] for fr in data["frames"]] == [True, False]  # closed: culled; open: both sides
    assert [fr["nf"] for fr in data["frames"]] == [2000, 2000]
    assert dict(sphere._cache.cache) == {} and dict(cap._cache.cache) == {}


def test_a_page_titled_with_a_file_name_that_is_not_utf8_is_utf8_text(tmp_path):
    """``mesh_page`` promises a UTF-8 safe ``str``, but a title or description naming a file whose
    name is not UTF-8 (``os.fsdecode(b'caf\\xe9.png')``: a lone surrogate) came back as it was:
    ``page.encode()``, ``Path.write_text(page)`` and a notebook's ``HTML(page)`` failed
    (UnicodeEncodeError); only ``save_mesh_page`` replaced it (with "?"). It is U+FFFD in both now,
    as the browser shows such a label, and the saved file is the page's UTF-8 bytes."""
    import os

    import trimesh

    from voxface.html import mesh_page, save_mesh_page

    sphere = trimesh.creation.icosphere(1, radius=50.0)
    name = os.fsdecode(b"caf\xe9 <b>.png")
    page = mesh_page([sphere], [name], title=name, description=f"from {name}")
    data = page.encode("utf-8")  # UnicodeEncodeError before
    assert "<title>caf\ufffd &lt;b&gt;.png</title>" in page and "<p class=\"desc\">from caf\ufffd &lt;b&gt;.png</p>" in page
    assert "caf\\udce9 \\u003cb>.png" in page  # the label: JSON escapes, as before
    saved = save_mesh_page(tmp_path / "page.html", [sphere], [name], title=name, description=f"from {name}")
    assert saved.read_bytes() == data

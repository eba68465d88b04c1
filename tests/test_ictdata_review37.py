"""Review 37 of the training data made from ICT-FaceKit (voxface.data.ict, head, appearance,
synthetic, toy): a user's FaceXModel folder that is partial, corrupt or unreadable, and the
samples made from it."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

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


def _replace(f: Path, text: str) -> None:
    f.unlink()  # a symbolic link of _copy_ict: the toy folder itself is left alone
    f.write_text(text)


@pytest.mark.parametrize("cut, words", [
    ("vertices", "20000 vertices, where ICT-FaceKit's meshes have 26719; is the file truncated"),
    ("faces", "no faces (f records) in the neutral mesh; is the file truncated?"),
    ("index", "a face names vertex 26720, outside the mesh's 26719 vertices"),
])
def test_a_neutral_mesh_cut_short_or_naming_missing_vertices_is_one_line_naming_it(tmp_path, toy_root, monkeypatch,
                                                                                      cut, words):
    """generic_neutral_mesh.obj cut short at the end of a line (a partial download or copy) has no
    malformed record: cut among its vertices, load_ict blamed identity000.obj ('vertex count 26719
    differs from the neutral mesh's (20000)'); cut before its faces, HeadModel failed in numpy's
    'AxisError: axis 1 is out of bounds'; a face naming a vertex past the end loaded, and
    FaceSampler failed in an IndexError. Each is one DataError naming the neutral mesh."""
    from voxface.data.synthetic import FaceSampler

    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))
    root = _copy_ict(toy_root, tmp_path / "ict")
    f = root / "FaceXModel" / "generic_neutral_mesh.obj"
    lines = f.read_text().splitlines()
    first_face = next(i for i, line in enumerate(lines) if line.startswith("f "))
    if cut == "vertices":
        at = [i for i, line in enumerate(lines) if line.startswith("v ")]
        lines = lines[: at[20000]]
    elif cut == "faces":
        lines = lines[:first_face]
    else:
        lines.append("f 1 2 26720")
    _replace(f, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        FaceSampler(load_ict(root), seed=0).sample(0, 16)
    _one_line(e, f, words)


def test_an_ict_obj_with_a_vertex_that_is_not_finite_is_one_line_naming_it(tmp_path, toy_root, monkeypatch):
    """'v nan 0 0' (or a value past float32, 1e39) parses as a number: every face of that identity had
    a NaN vertex, found far from the file, if at all (a crop's 'landmarks must be finite', NaN occupancy
    targets). It is a DataError naming the file and the vertex."""
    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))
    root = _copy_ict(toy_root, tmp_path / "ict")
    for value in ("nan", "1e39"):
        f = root / "FaceXModel" / "identity000.obj"
        lines = (toy_root / "FaceXModel" / "identity000.obj").read_text().splitlines()
        k = [i for i, line in enumerate(lines) if line.startswith("v ")][6]
        lines[k] = f"v 0.5 {value} 1.0"
        _replace(f, "\n".join(lines) + "\n")
        with pytest.raises(DataError) as e:
            load_ict(root)
        _one_line(e, f, f"vertex 7 is not finite in float32 (0.5 {value} 1.0)")


@pytest.mark.parametrize("key, value, words", [
    ("idx_to_landmark_verts", "first 60", "idx_to_landmark_verts must list the vertices of the 68 Multi-PIE landmarks, "
                                          "got 60"),
    ("idx_to_landmark_verts", "first 67", "idx_to_landmark_verts must list the vertices of the 68 Multi-PIE landmarks, "
                                          "got 67"),
    ("idx_to_landmark_verts", "a float", "malformed vertex_indices.json (idx_to_landmark_verts must be vertex indices "
                                         "(whole numbers), got 1225.7 at position 5)"),
    ("expressions", "a string", "malformed vertex_indices.json (expressions must be a list of blendshape names, got "
                                "'jawOpen')"),
    ("incompatibilities", 5, "malformed vertex_indices.json (incompatibilities must be a list of pairs of blendshape "
                             "names, got 5)"),
    ("incompatibilities", [["shape00_L"]], "malformed vertex_indices.json (incompatibilities must be a list of pairs"),
])
def test_vertex_indices_json_holding_other_things_than_ict_facekits_is_one_line_naming_it(tmp_path, toy_root,
                                                                                            monkeypatch, key, value,
                                                                                            words):
    """vertex_indices.json is read for the expressions' names, the 68 landmarks' vertices and the
    incompatible pairs. 60 landmarks loaded and failed in the albedo's IndexError ('index 62 is out of
    bounds'); 67 trained on one landmark short without a word (the crop, the albedo's regions and the
    mirror's renumbering read them by index); 1225.7 was read as vertex 1225; expressions 'jawOpen'
    was read letter by letter ('missing 7 file(s), e.g. ['j.obj', ...]'); incompatibilities 5 was a
    TypeError traceback and a one-name pair was skipped. Each is one DataError naming the file, before
    any OBJ is read."""
    from voxface.data.synthetic import FaceSampler

    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))
    root = _copy_ict(toy_root, tmp_path / "ict")
    vi = root / "FaceXModel" / "vertex_indices.json"
    meta = json.loads(vi.read_text())
    if value == "first 60":
        value = meta[key][:60]
    elif value == "first 67":
        value = meta[key][:67]
    elif value == "a float":
        value = list(meta[key])
        value[5] = 1225.7
    elif value == "a string":
        value = "jawOpen"
    _replace(vi, json.dumps({**meta, key: value}))
    with pytest.raises(DataError) as e:
        FaceSampler(load_ict(root), seed=0).sample(0, 16)
    _one_line(e, vi, words)

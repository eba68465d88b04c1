"""Review 35 of the training data (voxface.data): defects found by feeding the readers what real
files hold and by checking the synthetic samples against their own geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from voxface.data.folder import FolderDataset
from voxface.errors import DataError


def _ascii_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """An ASCII PLY written as scanners' tools write it, face indices as given (no checks)."""
    lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}", "property float x", "property float y",
             "property float z", f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    lines += [" ".join(f"{c:.6f}" for c in v) for v in vertices]
    lines += ["3 " + " ".join(str(int(i)) for i in f) for f in faces]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("index", [-1, 10_000])
def test_a_ply_whose_triangle_names_a_missing_vertex_is_one_line_naming_it(tmp_path: Path, index: int) -> None:
    """trimesh's PLY reader passes a file's face indices on unchecked: one past the vertices (a file
    cut short or written wrong) was an IndexError traceback from deep in trimesh, out of
    FolderDataset.prepare and 'voxface data check-folder' alike, and -1 silently named the last
    vertex. Both are a DataError naming the mesh and the index."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    faces = np.array(sphere.faces)
    faces[7, 2] = index
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(root / "a.png")
    _ascii_ply(root / "a.ply", np.asarray(sphere.vertices), faces)
    ds = FolderDataset(root, resolution=32, image_size=32, split="all", val_fraction=0, cache_dir=tmp_path / "c")
    with pytest.raises(DataError) as e:
        ds.prepare()
    text = str(e.value)
    assert "\n" not in text and str(root / "a.ply") in text and f"vertex {index}" in text
    assert f"{len(sphere.vertices)} vertices" in text


@pytest.mark.parametrize("num_val", [1, 2, 3])
def test_a_synthetic_validation_split_rounded_down_to_nothing_is_refused(num_val: int) -> None:
    """data.num_val 1 to 3 of kind synthetic was rounded down to 0, the length that means 'no
    validation': a run validated nothing without a word, where kinds cache, folder and toy refuse
    such a length. It is a ConfigError naming the key; 0 (no validation) and 4 still build."""
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"data\.num_val {num_val}: .*0 for no validation"):
        build_dataset({"kind": "synthetic", "num_val": num_val}, "val", None)
    assert len(build_dataset({"kind": "synthetic", "num_val": 0}, "val", None)) == 0
    assert len(build_dataset({"kind": "synthetic", "num_val": 6}, "val", None)) == 4



def test_ict_obj_vertex_records_are_read_by_their_own_values(tmp_path, toy_root) -> None:
    """The ICT OBJ reader took every value of the v records as one stream cut into threes: records
    with vertex colours (x y z r g b, as some exporters write them) gave two vertices each (every
    file alike, so no count differed), and a record one value short beside one a value long
    shifted every vertex in between, without a word. Colours are read past; records of uneven
    lengths are a DataError naming the file."""
    from voxface.data.ict import _read_obj

    src = toy_root / "FaceXModel" / "identity007.obj"
    lines = src.read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("v ")]
    plain, polys = _read_obj(src, faces=True)
    coloured = list(lines)
    for i in at:
        coloured[i] += " 0.5 0.25 1"
    f = tmp_path / "coloured.obj"
    f.write_text("\n".join(coloured) + "\n")
    v, p = _read_obj(f, faces=True)
    np.testing.assert_array_equal(v, plain)
    assert p == polys
    shifted = list(lines)
    x = shifted[at[3]].split()
    shifted[at[3]] = " ".join(x[:-1])
    shifted[at[4]] += " " + x[-1]
    f = tmp_path / "shifted.obj"
    f.write_text("\n".join(shifted) + "\n")
    with pytest.raises(DataError) as e:
        _read_obj(f)
    assert str(e.value).startswith(f"{f}: malformed OBJ record") and "\n" not in str(e.value)

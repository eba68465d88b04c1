"""voxface.viz and voxface.html, review 36."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

import voxface.html as vhtml
import voxface.viz as viz
from voxface.errors import InputError


def _ply_with_face(tmp_path: Path, face: str) -> trimesh.Trimesh:
    """An icosphere written as an ASCII PLY whose first triangle is ``face`` (``"3 a b c"``), read
    back by trimesh as a user's file is: its indices as the file holds them."""
    ico = trimesh.creation.icosphere(2, radius=80)
    lines = ico.export(file_type="ply", encoding="ascii").decode().splitlines()
    lines[lines.index("end_header") + len(ico.vertices) + 1] = face
    path = tmp_path / "broken.ply"
    path.write_text("\n".join(lines) + "\n")
    m = trimesh.load(path, process=False)
    assert len(m.vertices) == 162
    return m


@pytest.mark.parametrize("index", [10000, -1])
def test_a_trimesh_whose_face_names_a_missing_vertex_is_one_line_not_drawn(tmp_path, index):
    """trimesh keeps a loaded file's face indices unchecked (a PLY cut short or written wrong): a
    face naming vertex 10000 of 162 was a bare IndexError out of the renderers and the page, and
    -1 was wrapped by numpy to the last vertex and handed to open3d as vertex 2^32 - 1: the mesh
    was drawn without a word (a rewired triangle, an out-of-bounds read in the ray caster). Every
    picture refuses it as a ``(vertices, faces)`` pair is refused."""
    m = _ply_with_face(tmp_path, f"3 {index} 1 2")
    assert m.faces.min() == min(index, 0) and m.faces.max() == max(index, 161)
    words = f"faces index vertex {index}, but there are 162 vertices"
    calls = {
        "render_mesh": lambda: viz.render_mesh(m, size=16),
        "render_views": lambda: viz.render_views(m, [(0, 0)], 16),
        "render_sequence": lambda: viz.render_sequence([m], [(0, 0)], 16),
        "shared_framing": lambda: viz.shared_framing([m]),
        "render_overlay": lambda: viz.render_overlay(np.full((16, 16, 3), 128, np.uint8), m,
                                                     np.diag([1.0, -1.0, -1.0]), 0.8, np.zeros(2)),
        "page_data": lambda: vhtml.page_data([m]),
        "save_mesh_page": lambda: vhtml.save_mesh_page(tmp_path / "page.html", [m]),
    }
    for name, call in calls.items():
        with pytest.raises(InputError, match=words) as e:
            call()
        assert "\n" not in str(e.value), name
    with pytest.raises(InputError, match=f"cannot show mesh 0: {words}"):
        vhtml.page_data([m])
    assert not (tmp_path / "page.html").exists()
    pytest.importorskip("plotly")
    with pytest.raises(InputError, match=f"cannot plot mesh 0: {words}"):
        viz.plot_meshes_plotly([m])
    # the same file with its indices in range draws as before
    good = _ply_with_face(tmp_path, "3 0 1 2")
    assert (viz.render_mesh(good, size=16) != 255).any()


def test_a_vertex_no_face_names_does_not_make_the_faces_zero_area():
    """The zero-area refusal (44a89d1) measured faces against the extent of every vertex, where the
    framing (dd53f75, c37ed75) bounds only the vertices faces name: one stray vertex 1 km away (a
    scan's outlier, an invalid-point marker) made a 20k-face sphere 'all faces zero area' and
    render_mesh and the page refused it. The faces are measured against what they span: the mesh
    draws as the sphere without that vertex, and a mesh truly of zero area is still refused."""
    ico = trimesh.creation.icosphere(5, radius=80)
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
    stray = np.vstack([v, [[1e7, 0.0, 0.0]]])
    assert np.array_equal(viz.render_mesh((stray, f), size=32), viz.render_mesh((v, f), size=32))
    page = vhtml.page_data([(stray, f)])
    assert page["center"] == pytest.approx(vhtml.page_data([(v, f)])["center"], abs=1e-9)
    assert page["radius"] == vhtml.page_data([(v, f)])["radius"]
    flat = np.vstack([v * [1.0, 0.0, 0.0], [[0.0, 1e7, 0.0]]])  # a line, and a stray vertex beside it
    with pytest.raises(viz.VoxfaceError, match="zero area"):
        viz.render_mesh((flat, f), size=32)


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_a_vertex_no_face_names_in_front_of_the_face_does_not_move_the_rays(yaw):
    """Orthographic rays started in front of every vertex, the ones no face names too (which the
    framing leaves out since dd53f75): a stray vertex 10 km in front of the face put the rays' start
    there, where open3d's float32 rays round to a millimetre and more, and a 3/4 view of a sphere
    differed from the sphere's in 28% of its pixels (by up to 96 levels; 1e6 km: a blank view). The
    rays start in front of the vertices faces name: the picture is the sphere's."""
    ico = trimesh.creation.icosphere(5, radius=80)
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
    stray = np.vstack([v, [[0.0, 0.0, 1e7]]])
    assert np.array_equal(viz.render_mesh((stray, f), size=64, yaw=yaw), viz.render_mesh((v, f), size=64, yaw=yaw))


def test_slice_montage_scales_a_slice_at_a_time():
    """slice_montage scaled the whole volume to float64 and clipped it (two more copies) to draw a few
    slices: 268 MB at the peak beside a 67 MB float32 256^3 grid (2 GB beside a 512^3 one). It scales
    the slices it looks at, one at a time: the same picture (the occupied span found on the scaled
    values, values outside [vmin, vmax] clipped) for far less than the volume's own bytes."""
    import tracemalloc

    R = 96
    z, y, x = np.ogrid[:R, :R, :R]
    field = np.float32(1.5) - ((z - 40.0) ** 2 + (y - 48.0) ** 2 + (x - 52.0) ** 2) / np.float32(900.0)
    vol = field.astype(np.float32)  # from -9 to 1.5: clipped on both sides
    viz.slice_montage(vol[:8, :8, :8], n=2)  # imports
    for axis in (0, 1, 2):
        for span in ("occupied", "all"):
            by_hand = np.clip(vol.astype(np.float64), 0.0, 1.0)
            assert np.array_equal(viz.slice_montage(vol, n=5, axis=axis, span=span),
                                  viz.slice_montage(by_hand, n=5, axis=axis, span=span))
    R = 192
    z, y, x = np.ogrid[:R, :R, :R]
    d2 = (z - 80.0) ** 2 + (y - 96.0) ** 2 + (x - 104.0) ** 2
    vol = (1.5 - d2 / 3600.0).astype(np.float32)
    tracemalloc.start()
    try:
        viz.slice_montage(vol, n=8, axis=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < vol.nbytes / 2, (peak, vol.nbytes)  # 4x the volume's bytes before

"""voxface.viz, review 32: defects found and fixed in this round."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from voxface.viz import plot_meshes_plotly, render_mesh, render_sequence, shared_framing


def sphere(r: float = 50.0, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=3, radius=r)
    m.apply_translation(center)
    return m


@pytest.mark.parametrize("as_pair", [False, True])
def test_one_mesh_is_a_sequence_of_one_as_mesh_page_takes_it(as_pair):
    # render_sequence(mesh), shared_framing(mesh) and plot_meshes_plotly(mesh) were "'Trimesh' object is
    # not iterable"; a (vertices, faces) pair was two meshes, its vertices refused as "got TrackedArray"
    m = sphere(center=(10.0, 0.0, 0.0))
    one = (np.asarray(m.vertices), np.asarray(m.faces)) if as_pair else m
    images = render_sequence(one, [(0.0, 0.0), (60.0, 0.0)], 32)
    assert len(images) == 1 and len(images[0]) == 2
    assert np.array_equal(images[0][0], render_mesh(m, size=32))  # its own framing: as render_mesh frames it
    center, radius = shared_framing(one)
    assert np.allclose(center, [10.0, 0.0, 0.0], atol=1e-6) and radius == pytest.approx(50.0, rel=1e-6)
    fig = plot_meshes_plotly(one, labels="the sphere")  # one caption, not one a character
    assert len(fig.frames) == 1 and [s["label"] for s in fig.layout.sliders[0].steps] == ["the sphere"]
    # a sequence of two meshes (a tuple of two, too) stays two
    assert len(render_sequence((m, sphere(20.0)), size=16)) == 2


def test_a_long_word_is_wrapped_with_few_measurements():
    # a caption without spaces (a long path) was cut by measuring every prefix of it at each line:
    # 2 s for 1000 characters, 90 s for 3000 (image_grid labels and titles, slice_montage captions)
    from voxface.viz import _font, _wrap_text

    class Counting:
        def __init__(self, font):
            self.font, self.calls = font, 0

        def getlength(self, text):
            self.calls += 1
            return self.font.getlength(text)

    font = Counting(_font())
    word = "/data/people/" + "abcdefghij" * 150  # 1513 characters, no space
    lines = _wrap_text(f"see {word} here", font, 120)
    assert "".join(lines[1:-1]) == word or "".join(lines).replace(" ", "") == f"see{word}here"
    assert all(font.font.getlength(line) <= 120 for line in lines)
    assert all(font.font.getlength(line + next_line[0]) > 120 for line, next_line in zip(lines[1:-2], lines[2:-1]))
    assert len(lines) > 50
    assert font.calls < 40 * len(lines), font.calls  # about log2(line) a line, not a line's worth of prefixes


def test_overlay_refuses_a_pose_that_is_not_a_camera_pose():
    # a NaN scale or translation blamed the mesh ("non-finite vertices"), a scale of 0 drew nothing,
    # a negative one the back of the head upside down, a reflection the mesh mirrored
    from voxface.errors import InputError
    from voxface.frame import FRONTAL_ROTATION, euler_matrix
    from voxface.viz import render_overlay

    m = sphere()
    img = np.full((32, 32, 3), 255, np.uint8)
    good = FRONTAL_ROTATION @ euler_matrix(30.0, -10.0, 5.0)
    assert (render_overlay(img, m, good, 0.5, [0.1, 0.0]) != 255).any()
    # a rotation as a bfloat16 tensor gives (its rounding is inside the tolerance)
    import torch

    low = torch.tensor(good, dtype=torch.bfloat16)
    assert (render_overlay(img, m, low, 0.5, [0.1, 0.0]) != 255).any()
    cases = [
        (good, float("nan"), [0.0, 0.0], "finite"),
        (good, 0.5, [float("inf"), 0.0], "finite"),
        (good, 0.0, [0.0, 0.0], "scale must be above 0"),
        (good, -0.5, [0.0, 0.0], "scale must be above 0"),
        (np.diag([1.0, -1.0, 1.0]), 0.5, [0.0, 0.0], "reflection"),  # y flipped alone: mirrored
        (3 * good, 0.5, [0.0, 0.0], "not orthonormal"),
    ]
    for rot, scale, t, words in cases:
        with pytest.raises(InputError, match=words):
            render_overlay(img, m, rot, scale, t)


def test_slice_montage_refuses_nan_instead_of_drawing_it_black():
    # NaN cells (the sigmoid of a diverged model's NaN logits) were coloured black, a colour the
    # caption's scale ("0 dark purple to 1 yellow") does not hold, without a word
    from voxface.errors import InputError
    from voxface.viz import slice_montage

    vol = np.zeros((8, 8, 8), np.float32)
    vol[2:6, 2:6, 2:6] = 0.9
    ok = slice_montage(vol, n=2, cell_px=16)
    vol[4, 4, 4] = np.nan
    with pytest.raises(InputError, match="1 NaN values of 512"):
        slice_montage(vol, n=2, cell_px=16)
    assert slice_montage(vol > 0.5, n=2, cell_px=16).shape == ok.shape  # bool occupancy still taken


@pytest.mark.parametrize("vertices", [np.zeros((3, 3)), [[0.0, 0, 0], [1, 1, 1], [3, 3, 3]]],
                         ids=["coincident", "collinear"])
def test_a_mesh_whose_faces_all_have_zero_area_is_refused_not_drawn_blank(tmp_path, vertices):
    # render_mesh gave an all-white picture, mesh_page a blank canvas and plotly an empty scene
    from voxface.errors import VoxfaceError
    from voxface.html import mesh_page
    from voxface.viz import plot_mesh_plotly, render_overlay

    flat = (np.asarray(vertices, np.float64), np.array([[0, 1, 2], [2, 1, 0]]))
    for draw in (lambda: render_mesh(flat, size=16), lambda: render_sequence([sphere(), flat], size=16),
                 lambda: render_overlay(np.zeros((16, 16, 3), np.uint8), flat), lambda: plot_mesh_plotly(flat)):
        with pytest.raises(VoxfaceError, match="2 face.s. all have zero area"):
            draw()
    with pytest.raises(VoxfaceError, match="cannot show mesh 1: its 2 face.s. all have zero area"):
        mesh_page([sphere(), flat])
    # one face with area among degenerate ones is a mesh (a real mesh keeps its slivers); so is a flat one
    mixed = (np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]] * 300 + [[0, 1, 3]]))
    assert (render_mesh(mixed, size=16) != 255).any()
    assert (render_mesh(mixed, size=16, yaw=30) != 255).any()
    # the threshold is relative to the mesh's size: tiny and huge meshes are drawn
    for k in (1e-9, 1e9):
        assert (render_mesh((sphere().vertices * k, sphere().faces), size=16) != 255).any()


def test_a_bicubic_resize_the_encoder_takes_can_be_drawn(tmp_path):
    # the astronaut resized to 128 px with F.interpolate(mode="bicubic") overshoots [0, 1] (-0.05):
    # VoxFace.encode takes it (IMAGE_OVERSHOOT), but save_png / image_grid refused it, with the hint
    # "divide 0-255 values by 255"
    import skimage.data
    import torch
    import torch.nn.functional as F

    from voxface.errors import InputError
    from voxface.models.voxface import IMAGE_OVERSHOOT
    from voxface.viz import _OVERSHOOT, image_grid, save_png

    assert _OVERSHOOT == IMAGE_OVERSHOOT
    x = torch.from_numpy(skimage.data.astronaut()[:256, 128:384].copy()).permute(2, 0, 1)[None].float() / 255
    crop = F.interpolate(x, size=128, mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert crop.min() < -0.01
    from PIL import Image

    with Image.open(save_png(crop, tmp_path / "crop.png")) as im:
        drawn = np.asarray(im)
    assert np.array_equal(drawn, np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8))
    assert image_grid([crop, crop]).shape == (136, 268, 3)  # 2 x 128 + 3 x 4 padding
    # values beyond the overshoot are still refused; the 0-255 hint only where they look like 0-255
    with pytest.raises(InputError, match=r"got \[0, 200\] \(divide 0-255"):
        save_png(np.array([[0.0, 200.0]]), tmp_path / "a.png")
    with pytest.raises(InputError, match=r"got \[-1, 1\]$"):
        save_png(np.array([[-1.0, 1.0]]), tmp_path / "a.png")  # a [-1, 1] normalised image
    with pytest.raises(InputError, match="NaN only"):
        save_png(np.full((2, 2), np.nan), tmp_path / "a.png")  # was "got [nan, nan] (divide 0-255 ...)"


def test_page_winds_each_closed_shell_outward_not_only_the_whole_mesh():
    # a closed mesh of two shells, the small one inside-out: the whole had a positive volume, so the
    # page kept the small shell's winding and the viewer culled its outside, showing its far inside
    import base64
    import json
    import re

    from voxface.html import mesh_page

    big, small = sphere(50.0), sphere(20.0, center=(100.0, 0.0, 0.0))
    small.invert()
    both = trimesh.util.concatenate([big, small])
    assert both.is_watertight and both.is_winding_consistent and both.volume > 0
    page = mesh_page([both, small])
    data = json.loads(re.search(r'id="voxface-data">(.*?)</script>', page, re.S).group(1))
    for i, fr in enumerate(data["frames"]):
        assert fr["cull"] is True
        q = np.frombuffer(base64.b64decode(fr["v"]), "<i2").reshape(-1, 3)
        f = np.frombuffer(base64.b64decode(fr["f"]), "<u2").reshape(-1, 3).astype(np.int64)
        shells = trimesh.Trimesh(np.asarray(data["center"]) + q * (data["radius"] / 32767), f,
                                 process=False).split(only_watertight=False)
        assert len(shells) == (2 if i == 0 else 1)
        assert all(s.volume > 0 for s in shells), [s.volume for s in shells]


def test_a_mesh_wound_inconsistently_is_shaded_as_the_consistent_one():
    # a scan or a mesh stitched from parts, its faces wound both ways: the vertex normals summed
    # faces facing both ways, cancelled to noise, and the render came out in blotches
    from voxface.frame import FRONTAL_ROTATION
    from voxface.viz import render_overlay

    good = sphere()
    faces = np.asarray(good.faces).copy()
    flip = np.random.default_rng(0).random(len(faces)) < 0.4
    faces[flip] = faces[flip][:, ::-1]
    mixed = trimesh.Trimesh(good.vertices, faces, process=False)
    assert not mixed.is_winding_consistent
    for view in ({}, {"yaw": 60.0, "pitch": 20.0, "fov_deg": 40.0}):
        a = render_mesh(good, size=64, **view).astype(int)
        b = render_mesh(mixed, size=64, **view).astype(int)
        off = np.abs(a - b).max(-1) > 3  # was 2000 of the 4096 pixels, by up to 144: dark and bright patches
        assert off.sum() <= 2, off.sum()  # a grazing ray at the silhouette may hit or miss
    img = np.full((48, 48, 3), 255, np.uint8)
    a, b = (render_overlay(img, m, FRONTAL_ROTATION, 0.5, [0.0, 0.0]).astype(int) for m in (good, mixed))
    assert (np.abs(a - b).max(-1) > 3).sum() <= 2
    # a consistent mesh keeps its own vertex normals (the same picture as before)
    from voxface.viz import _Scene

    assert not _Scene.of(good).unsigned and _Scene.of(mixed).unsigned


def test_page_title_none_is_the_default_heading_not_an_attribute_error(tmp_path):
    # mesh_page(title=None) (plotly's "no title", as plot_mesh_plotly takes it) or a number was
    # "AttributeError: 'NoneType' object has no attribute 'replace'" from html.escape
    from voxface.html import mesh_page, save_mesh_page

    page = mesh_page(sphere(), title=None, description=None)
    assert "<title>voxface</title>" in page and '<p class="desc"></p>' in page
    assert "<h1>2026</h1>" in mesh_page(sphere(), title=2026)
    path = save_mesh_page(tmp_path / "p.html", sphere(), title=None)
    assert "<h1>voxface</h1>" in path.read_text(encoding="utf-8")

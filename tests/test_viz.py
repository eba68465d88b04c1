"""voxface.viz: off-screen renders, overlays, montages and image files."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh
from PIL import Image

from voxface.config import FrameConfig
from voxface.errors import InputError, InputTypeError
from voxface.frame import FRONTAL_ROTATION, HEAD_RMS_RADIUS_MM, Grid
from voxface.viz import (
    draw_points,
    image_grid,
    mesh_turntable,
    plot_mesh_plotly,
    render_mesh,
    render_overlay,
    render_views,
    save_gif,
    save_png,
    slice_montage,
)

WHITE = np.array([255, 255, 255], np.uint8)


def sphere(r: float = 50.0, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=4, radius=r)
    m.apply_translation(center)
    return m


def foreground(img: np.ndarray, bg=WHITE) -> np.ndarray:
    return np.any(img != bg, axis=-1)


def bbox(mask: np.ndarray) -> tuple[int, int]:
    """(height, width) of the foreground's bounding box."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def luminance(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ [0.299, 0.587, 0.114]


def test_render_sphere_is_shaded_clay_on_white():
    img = render_mesh(sphere(), size=128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    fg = foreground(img)
    assert fg[64, 64] and fg[40:88, 40:88].all()
    for y, x in [(0, 0), (0, 127), (127, 0), (127, 127)]:
        assert (img[y, x] == WHITE).all()
    # the orthographic view frames the bounding sphere: the disc spans about the whole image
    h, w = bbox(fg)
    assert 118 <= h <= 124 and abs(h - w) <= 1
    lum = luminance(img)[fg]
    assert lum.std() > 15  # shaded, not flat
    assert luminance(img)[40, 40] > luminance(img)[88, 88] + 20  # key light from the upper left
    # a pinhole view also frames it
    persp = render_mesh(sphere(), size=64, fov_deg=40.0)
    assert foreground(persp)[32, 32] and (persp[0, 0] == WHITE).all()


def test_view_orientation_x_right_y_up():
    # an "L": a bar along the bottom (-y) and a post at +x; its bounding box is centred at 0
    bar = trimesh.creation.box(bounds=[[-50, -50, -10], [50, -30, 10]])
    post = trimesh.creation.box(bounds=[[30, -50, -10], [50, 50, 10]])
    fg = foreground(render_mesh(trimesh.util.concatenate([bar, post]), size=64, supersample=1))
    assert fg[5:25, 40:60].any() and not fg[5:25, 5:25].any()  # the post is on the right (+x)
    assert fg[45:60, 10:30].any() and not fg[5:25, 5:25].any()  # the bar is at the bottom (-y)


def test_yaw_and_pitch_move_the_camera_towards_plus_x_and_up():
    # a big sphere in front (+z) and a small one behind (-z): seen from the front they overlap
    body = trimesh.util.concatenate([sphere(30.0, (0, 0, 50.0)), sphere(15.0, (0, 0, -50.0))])

    def tallest_column_offset(yaw: float, pitch: float, transpose: bool = False) -> float:
        fg = foreground(render_mesh(body, yaw=yaw, pitch=pitch, size=96, supersample=1))
        fg = fg.T if transpose else fg
        cols = np.nonzero(fg.any(0))[0]
        heights = fg.sum(0)
        tallest = np.nonzero(heights >= 0.9 * heights.max())[0].mean()  # the big sphere's middle
        return float(tallest - 0.5 * (cols[0] + cols[-1]))

    # camera towards +x: the front (+z) sphere moves to the left of the image
    assert tallest_column_offset(30.0, 0.0) < -5 and tallest_column_offset(-30.0, 0.0) > 5
    # camera raised: the front sphere moves down in the image (rows grow downwards)
    assert tallest_column_offset(0.0, 30.0, transpose=True) > 5
    assert tallest_column_offset(0.0, -30.0, transpose=True) < -5


def test_yaw_changes_the_silhouette_of_an_elongated_shape():
    rod = trimesh.creation.capsule(height=150.0, radius=25.0)  # along z
    rod.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))  # along x
    front, side, oblique = render_views(rod, views=((0, 0), (90, 0), (45, 0)), size=96)
    hf, wf = bbox(foreground(front))
    hs, ws = bbox(foreground(side))
    assert wf > 3 * hf  # long and thin, seen from the front
    assert abs(ws - hs) <= 2  # a disc, seen end-on
    assert bbox(foreground(oblique))[1] < wf


def test_turntable_frames():
    body = trimesh.util.concatenate([sphere(40.0), sphere(15.0, (50.0, 0, 0))])
    frames = mesh_turntable(body, n=4, size=48, pitch=0.0)
    assert len(frames) == 4 and all(f.shape == (48, 48, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[1])
    # yaw 0 and 180 see mirrored silhouettes (the marker on the right, then on the left)
    sil0, sil180 = foreground(frames[0]), foreground(frames[2])
    assert (sil0[:, ::-1] != sil0).mean() > 0.05  # not symmetric itself
    assert (sil0[:, ::-1] != sil180).mean() < 0.01


def test_overlay_changes_only_the_pixels_the_mesh_covers():
    size = 128
    img = np.zeros((size, size, 3), np.uint8)
    img[::7] = 90  # some texture
    # a head-sized sphere: RMS radius HEAD_RMS_RADIUS_MM -> radius `scale` crop half-widths
    head = sphere(HEAD_RMS_RADIUS_MM)
    scale, t = 0.5, np.array([0.2, -0.1])
    out = render_overlay(img, head, FRONTAL_ROTATION, scale, t, alpha=0.7)
    assert out.shape == img.shape and out.dtype == np.uint8
    changed = np.any(out != img, axis=-1)
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = (t + 1) / 2 * size  # crop coordinates [-1, 1] -> pixels
    rad = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
    r_px = scale * size / 2
    assert not changed[rad > r_px + 1.0].any()  # nothing outside the projected disc
    assert changed[rad < r_px - 1.0].all()  # everything inside it
    # a Pose of batch 1 (torch tensors) gives the same picture
    torch = pytest.importorskip("torch")
    pose = SimpleNamespace(
        rotation=torch.from_numpy(FRONTAL_ROTATION)[None].float(),
        scale=torch.tensor([scale]),
        translation=torch.from_numpy(t)[None].float(),
    )
    np.testing.assert_allclose(render_overlay(img, head, pose=pose, alpha=0.7), out, atol=1)
    # the float crop a Reconstruction holds, and the Reconstruction (or MeshResult) as the mesh
    rec = SimpleNamespace(mesh=head)
    np.testing.assert_array_equal(render_overlay(img / 255.0, rec, pose=pose, alpha=0.7), out)
    with pytest.raises(ValueError, match=r"float images must hold values in \[0, 1\], got \[0, 90\]"):
        render_overlay(img.astype(np.float32), head, pose=pose)
    with pytest.raises(TypeError, match="expected a mesh: .* got str"):
        render_overlay(img, "head.ply", pose=pose)


def test_overlay_pose_convention_puts_up_at_the_top():
    # a marker at canonical +y (up): with the frontal pose (y flipped to image-down) it is at the top
    body = trimesh.util.concatenate([sphere(40.0), sphere(15.0, (0, 70.0, 0))])
    img = np.zeros((64, 64, 3), np.uint8)
    out = render_overlay(img, body, FRONTAL_ROTATION, 1.0, np.zeros(2), alpha=1.0)
    rows, cols = np.nonzero(np.any(out != 0, axis=-1))
    assert 32 - rows.min() > rows.max() - 32 + 5
    # without a pose the mesh is taken to be in crop coordinates already
    crop = sphere(0.5, (0.5, 0.5, 3.0))
    out = render_overlay(img, crop, alpha=1.0)
    hit = np.any(out != 0, axis=-1)
    assert hit[48, 48] and not hit[16, 16]


def test_overlay_refuses_non_square_images_instead_of_stretching_the_mesh():
    """Crop coordinates [-1, 1] span both sides of a square crop: a (48, 64) image would map them to
    48 and 64 px and draw a sphere as an ellipse, so it is refused, naming its shape."""
    head = sphere(HEAD_RMS_RADIUS_MM)
    for shape in [(48, 64, 3), (64, 48), (64, 48, 4), (0, 0, 3)]:
        with pytest.raises(ValueError, match=r"square") as e:
            render_overlay(np.zeros(shape, np.uint8), head, FRONTAL_ROTATION, 0.5, np.zeros(2))
        assert str(shape) in str(e.value)
    # a square one still works: a disc as wide as it is tall
    out = render_overlay(np.zeros((64, 64, 3), np.uint8), head, FRONTAL_ROTATION, 0.5, np.zeros(2), alpha=1.0)
    h, w = bbox(np.any(out != 0, axis=-1))
    assert abs(h - w) <= 1 and abs(h - 32) <= 2


@pytest.mark.parametrize("kwargs, words", [
    ({"supersample": 0}, "supersample must be at least 1"),
    ({"supersample": -1}, "supersample must be at least 1"),
    ({"size": 0}, "size must be a positive"),
    ({"size": -5}, "size must be a positive"),
])
def test_render_refuses_sizes_and_supersampling_below_one(kwargs, words):
    """Before: supersample 0 gave a black image with NaN warnings, -1 a numpy error, size 0 an
    empty (0, 0, 3) image; every renderer refuses them with a ValueError instead."""
    import warnings

    from voxface.viz import render_sequence

    m = sphere()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused up front, no NaN warnings on the way
        with pytest.raises(ValueError, match=words):
            render_mesh(m, **kwargs)
        with pytest.raises(ValueError, match=words):
            render_views(m, views=((0, 0),), **kwargs)
        with pytest.raises(ValueError, match=words):
            render_sequence([m], **kwargs)
        if "supersample" in kwargs:
            with pytest.raises(ValueError, match=words):
                render_overlay(np.zeros((16, 16, 3), np.uint8), m, alpha=1.0, **kwargs)
    assert render_mesh(m, size=1, supersample=1).shape == (1, 1, 3)  # the smallest allowed


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_render_refuses_non_finite_vertices(bad):
    """A NaN vertex made the framing NaN (the ``or 1.0`` fallback let it through): a blank white
    picture. It is a VoxfaceError naming the problem and the count, without numpy warnings."""
    import warnings

    from voxface import VoxfaceError
    from voxface.viz import render_sequence

    m = sphere()
    v = np.asarray(m.vertices).copy()
    v[[3, 7], 1] = bad
    broken = trimesh.Trimesh(v, m.faces, process=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in (lambda: render_mesh(broken, size=16), lambda: render_mesh((v, m.faces), size=16),
                     lambda: render_views(broken, size=16), lambda: render_sequence([m, broken], size=16),
                     lambda: render_overlay(np.zeros((16, 16, 3), np.uint8), broken, FRONTAL_ROTATION, 0.5,
                                            np.zeros(2))):
            with pytest.raises(VoxfaceError, match=r"non-finite vertices: 2 of \d+ have NaN or infinite"):
                call()


def test_image_grid_shapes_and_labels():
    ims = [np.full((10, 20, 3), 10 * i, np.uint8) for i in range(3)]
    g = image_grid(ims, ncols=2, pad=4)
    assert g.shape == (2 * 10 + 3 * 4, 2 * 20 + 3 * 4, 3) and g.dtype == np.uint8
    np.testing.assert_array_equal(g[4:14, 28:48], ims[1])
    assert (g[18:28, 28:48] == 255).all()  # the empty fourth cell
    labelled = image_grid(ims, ncols=3, pad=2, labels=["a", "b", "c"])
    assert labelled.shape[1] == 3 * 20 + 4 * 2 and labelled.shape[0] > 10 + 2 * 2
    mixed = image_grid([np.zeros((8, 8), np.uint8), np.ones((4, 6, 3), np.float32)], ncols=1, pad=0)
    assert mixed.shape == (16, 8, 3)
    with pytest.raises(ValueError):
        image_grid([])
    # a title: a band of dark text above the grid, wrapped at words to the grid's width
    titled = image_grid(ims, ncols=3, pad=2, labels=["a", "b", "c"], title="what the images show")
    band = titled.shape[0] - labelled.shape[0]
    assert band > 8 and (titled[:band] < 128).any() and np.array_equal(titled[band:], labelled)
    wide = image_grid([np.zeros((10, 400, 3), np.uint8)], pad=2, title="what the images show")
    narrow = image_grid([np.zeros((10, 40, 3), np.uint8)], pad=2, title="what the images show")
    assert narrow.shape[1] == 44 and narrow.shape[0] - 14 >= 2 * (wide.shape[0] - 14)  # several lines, not cut off
    # a word wider than the grid (a long file name) is broken, not cut off at the right edge
    long = image_grid([np.full((10, 60, 3), 255, np.uint8)], pad=2, title="IMG_20240101_123456_long_name.jpg")
    ink = long[: long.shape[0] - 14] < 128
    assert ink.any() and not ink[:, -3:].any() and long.shape[0] - 14 > wide.shape[0] - 14


def test_long_labels_wrap_inside_their_own_cell():
    """A label wider than its cell (``voxface transfer --size 48``) wraps onto more lines instead of
    running over the next cell's label."""
    ims = [np.full((48, 48, 3), 200, np.uint8)] * 2
    g = image_grid(ims, ncols=2, pad=4, labels=["source (expression) of the face", ""])
    strip = g.shape[0] - 48 - 2 * 4
    assert strip > 30  # several lines
    second = g[4 : 4 + strip, 4 + 48 + 4 :]  # the second cell's label strip and the border
    assert (second > 128).all(), "the first label ran into the second cell"
    first = g[4 : 4 + strip, 4 : 4 + 48]
    assert (first < 128).any()


def test_draw_points():
    img = np.zeros((16, 16, 3), np.uint8)
    out = draw_points(img, [[4.0, 12.0], [np.nan, 1.0]], scale=2, radius=1.0, color=(0, 255, 0))
    assert out.shape == (32, 32, 3)
    ys, xs = np.nonzero(out[..., 1] == 255)
    assert abs(xs.mean() - 8) <= 1 and abs(ys.mean() - 24) <= 1  # x right, y down, scaled
    assert (out[..., 0] == 0).all() and (img == 0).all()  # nothing else drawn, input untouched


def test_slice_montage():
    grid = Grid.from_config(FrameConfig(), 32)
    c = grid.cell_centers()
    probs = 1 / (1 + np.exp(-(60.0 - np.linalg.norm(c - [60.0, -20.0, 0.0], axis=-1)) / 5))
    m = slice_montage(probs, n=8, axis=0, grid=grid)
    assert m.dtype == np.uint8 and m.ndim == 3 and m.shape[2] == 3
    m_bool = slice_montage(probs > 0.5, n=4, axis=2, cell_px=64)
    assert m_bool.shape[2] == 3
    # the blob sits at +x: in a z slice (x to the right, viridis: inside is yellow) it is right
    one = slice_montage(probs[None, None], n=1, axis=0, cell_px=64).astype(int)
    yellow = (one[..., 0] > 180) & (one[..., 2] < 120)
    rows, cols = np.nonzero(yellow)
    w = one.shape[1]
    assert cols.mean() > 0.6 * w and cols.min() > 0.45 * w
    with pytest.raises(ValueError):
        slice_montage(probs, axis=3)


def test_slice_montage_spreads_its_slices_over_the_shape_and_says_what_colours_mean():
    """A ball in one corner of the cube: the default slices all cut it (they spread over the
    occupied part of the axis, not over the empty cube around it), and the caption reads the
    colour map's ends; ``span="all"`` spreads them over the whole axis."""
    d, h, w = np.mgrid[:32, :32, :32]
    ball = ((d - 6) ** 2 + (h - 16) ** 2 + (w - 16) ** 2 <= 16).astype(float)  # d 2..10

    def grab(images, ncols=None, labels=None, title=None):
        grab.labels, grab.title = labels, title
        return np.zeros((1, 1, 3), np.uint8)

    import voxface.viz as viz

    real = viz.image_grid
    viz.image_grid = grab
    try:
        slice_montage(ball, n=4, axis=0)
        labels = [int(x.split("= ")[1]) for x in grab.labels]
        assert all(2 <= i <= 10 for i in labels) and len(labels) == 4, labels
        assert grab.title == "colour: 0 dark purple to 1 yellow (viridis)"
        slice_montage(ball, n=4, axis=0, span="all")
        assert [int(x.split("= ")[1]) for x in grab.labels] == [4, 12, 20, 28]
        slice_montage(np.zeros((32, 32, 32)), n=4, axis=0)  # nothing occupied: the whole axis
        assert [int(x.split("= ")[1]) for x in grab.labels] == [4, 12, 20, 28]
    finally:
        viz.image_grid = real
    with pytest.raises(ValueError, match="span must be"):
        slice_montage(ball, span="head")


def test_save_png_and_gif_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    p = save_png(img, tmp_path / "out" / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(p)), img)
    frames = [render_mesh(sphere(), size=32, yaw=a) for a in (0, 120, 240)]
    frames[1] = np.zeros_like(frames[1])
    g = save_gif(frames, tmp_path / "out" / "t.gif", fps=10)
    with Image.open(g) as gif:
        assert gif.n_frames == 3 and gif.size == (32, 32)
        assert gif.info["duration"] == 100
        back = []
        for i in range(3):
            gif.seek(i)
            back.append(np.asarray(gif.convert("RGB")))
    for a, b in zip(frames, back):  # GIF quantises to 256 colours
        assert np.abs(a.astype(int) - b).mean() < 3
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "t.gif"]  # no temporary files


def test_plotly_figure():
    pytest.importorskip("plotly")
    m = sphere()
    fig = plot_mesh_plotly(m, title="sphere")
    (trace,) = fig.data
    assert trace.type == "mesh3d" and len(trace.x) == len(m.vertices) and len(trace.i) == len(m.faces)


def test_gif_frames_of_different_sizes_share_one_size_and_fast_rates_stay_fast(tmp_path):
    """A GIF has one size: a frame taller than the first was cut, a smaller one drawn over the
    last frame's pixels (``voxface walk --size 32``: a label wrapped onto two lines made a taller
    frame). Frames are centred on the largest size, edges extended. And fps 60 wrote 10 ms frames,
    which browsers play at 100 ms (6 times too slow): rates above 50 are written as 50."""
    small = np.full((8, 8, 3), 40, np.uint8)
    big = np.full((16, 12, 3), 200, np.uint8)
    big[0] = 10  # a top row to find again
    for order in ([small, big], [big, small]):
        p = save_gif(order, tmp_path / "mixed.gif")
        with Image.open(p) as gif:
            assert gif.size == (12, 16)
            back = []
            for i in range(gif.n_frames):
                gif.seek(i)
                back.append(np.asarray(gif.convert("RGB")).astype(int))
        by_level = {int(round(b[8, 6, 0])): b for b in back}
        got_small, got_big = by_level[40], by_level[200]
        assert np.abs(got_small - 40).max() <= 2, "the smaller frame is not the whole picture"
        assert np.abs(got_big[0] - 10).max() <= 2 and np.abs(got_big[1:] - 200).max() <= 2
    p = save_gif([small, big[:8, :8]], tmp_path / "fast.gif", fps=60)
    with Image.open(p) as gif:
        assert gif.info["duration"] == 20
    for bad in (0, -1, float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError, match="fps must be a positive finite number"):
            save_gif([small], tmp_path / "bad.gif", fps=bad)
    with pytest.raises(ValueError, match="frame 1 has no pixels"):
        save_gif([small, np.zeros((0, 4, 3), np.uint8)], tmp_path / "bad.gif")
    with pytest.raises(ValueError, match="at least one pixel"):
        save_png(np.zeros((0, 0, 3), np.uint8), tmp_path / "bad.png")
    assert not (tmp_path / "bad.gif").exists() and not (tmp_path / "bad.png").exists()


def test_picture_writers_refuse_another_formats_name(tmp_path):
    """save_png(img, 'a.jpg') wrote PNG bytes under a JPEG name (and save_gif GIF under .png):
    refused with the name to use; names without a picture suffix are taken as they are."""
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InputError, match=r"a\.jpg: named as another picture format, but PNG is written; name the file a\.png"):
        save_png(img, tmp_path / "a.jpg")
    with pytest.raises(InputError, match=r"name the file t\.gif"):
        save_gif([img], tmp_path / "t.PNG")
    assert not list(tmp_path.iterdir())
    assert save_png(img, tmp_path / "A.PNG").read_bytes()[:4] == b"\x89PNG"
    assert save_png(img, tmp_path / "plain").read_bytes()[:4] == b"\x89PNG"


def test_an_empty_mesh_in_a_sequence_is_a_voxface_error():
    """render_sequence / shared_framing of a sequence holding an empty mesh failed in numpy
    ('zero-size array to reduction operation'); it is a VoxfaceError naming the mesh, as a single
    render's 'cannot render a mesh without faces'."""
    from voxface import VoxfaceError
    from voxface.viz import render_sequence, shared_framing

    with pytest.raises(VoxfaceError, match="cannot frame mesh 1: it has no vertices"):
        shared_framing([sphere(), trimesh.Trimesh()])
    with pytest.raises(VoxfaceError, match="cannot frame mesh 0: it has no vertices"):
        render_sequence([trimesh.Trimesh(), sphere()], size=16)
    with pytest.raises(VoxfaceError, match="cannot render a mesh without faces"):
        render_mesh(trimesh.Trimesh())
    (img,), = render_sequence([sphere()], size=16)
    assert foreground(img)[8, 8]


def test_missing_notebook_extras_name_the_extra(monkeypatch):
    """Without plotly or ipywidgets (the ``notebook`` extra) the interactive views say what to
    install; latent_explorer raised a bare "No module named 'ipywidgets'"."""
    import sys

    from voxface.viz import latent_explorer, plot_meshes_plotly

    for name in ("plotly", "plotly.graph_objects", "ipywidgets"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"plot_mesh_plotly needs plotly: pip install 'voxface\[notebook\]'"):
        plot_mesh_plotly(sphere())
    with pytest.raises(ImportError, match=r"plot_meshes_plotly needs plotly: pip install 'voxface\[notebook\]'"):
        plot_meshes_plotly([sphere()])
    with pytest.raises(ImportError, match=r"latent_explorer needs ipywidgets: pip install 'voxface\[notebook\]'"):
        latent_explorer(object())  # refused before the model is touched


def test_colours_outside_zero_one_are_refused_not_drawn_white():
    """color=(204, 191, 178) (0-255 values) drew an all-white mesh on the white background: a
    blank picture without a word. Colours must be RGB in [0, 1]; overlays' alpha in [0, 1] (2 made
    a negative of the photo)."""
    from voxface.viz import render_sequence

    m = sphere()
    with pytest.raises(ValueError, match=r"color must be three numbers in \[0, 1\].*divide 0-255 values by 255"):
        render_mesh(m, size=16, color=(204, 191, 178))
    for bad in ((1.0, 1.0), "white", (0.5, float("nan"), 0.5), (-0.1, 0.5, 0.5)):
        with pytest.raises(ValueError, match=r"background must be three numbers in \[0, 1\]"):
            render_mesh(m, size=16, background=bad)
    with pytest.raises(ValueError, match="color must be"):
        render_sequence([m], size=16, color=(255, 0, 0))
    with pytest.raises(ValueError, match="color must be"):
        plot_mesh_plotly(m, color=(204, 191, 178))
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="color must be"):
        render_overlay(img, m, FRONTAL_ROTATION, 0.5, np.zeros(2), color=(204, 191, 178))
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        render_overlay(img, m, FRONTAL_ROTATION, 0.5, np.zeros(2), alpha=2.0)
    # colours in range: a red mesh on black
    red = render_mesh(m, size=16, color=[1, 0, 0], background=np.zeros(3))
    assert (red[8, 8, 0] > 100) and red[8, 8, 1] == red[8, 8, 2] and (red[0, 0] == 0).all()


def test_rgba_images_are_composited_over_white_as_the_network_sees_them():
    """A cut-out crop (transparent background, black beneath) showed a black background in
    overlays, grids and GIFs (the alpha was dropped), where load_image, and so the network, sees
    white. Alpha is composited over white; save_png keeps uint8 RGBA as RGBA."""
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (200, 40, 40, 255)  # an opaque red square on a transparent black background
    rgba[0, 0] = (0, 0, 0, 128)  # half transparent black: mid grey over white
    from voxface.image import load_image

    expected = load_image(rgba)
    out = render_overlay(rgba, sphere(HEAD_RMS_RADIUS_MM), FRONTAL_ROTATION, 0.1, np.array([0.8, 0.8]), alpha=1.0)
    assert (out[2:6, 2:6] == 255).all() and (out[12, 12] == (200, 40, 40)).all()
    np.testing.assert_array_equal(out[:16, :16], expected[:16, :16])  # away from the small mesh
    grid = image_grid([rgba], pad=0)
    np.testing.assert_array_equal(grid, expected)
    assert tuple(grid[0, 0]) == (127, 127, 127)
    np.testing.assert_array_equal(image_grid([rgba.astype(np.float64) / 255.0], pad=0), expected)


def test_plotly_slider_steps_with_equal_labels_show_their_own_meshes():
    """plotly animates to a frame by name; frames were named by their labels, so two steps with
    one label (``t = 0.33`` twice, rounded) both showed the first of those meshes."""
    pytest.importorskip("plotly")
    from voxface.viz import plot_meshes_plotly

    ms = [sphere(30.0 + 10 * i) for i in range(3)]
    fig = plot_meshes_plotly(ms, ["same", "same", "same (2)"])
    frames = {f.name: f for f in fig.frames}
    assert len(frames) == 3 and fig.frames[0].name == "same"
    for i, step in enumerate(fig.layout.sliders[0].steps):
        (name,) = step["args"][0]
        (trace,) = frames[name].data
        np.testing.assert_allclose(trace.x, ms[i].vertices[:, 0])
    assert [s["label"] for s in fig.layout.sliders[0].steps] == ["same", "same", "same (2)"]


def test_malformed_arguments_are_one_line_input_errors():
    """A (2, 2) rotation, (N, 3) points, an empty volume, a negative ncols or pad failed in numpy
    (reshape, take, broadcast); they are InputErrors naming the argument."""
    from voxface import InputError

    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InputError, match=r"rotation must be \(3, 3\).*got shapes \(2, 2\)"):
        render_overlay(img, sphere(), np.eye(2), 0.5, np.zeros(2))
    with pytest.raises(InputError, match=r"translation \(2,\).*\(3,\)"):
        render_overlay(img, sphere(), FRONTAL_ROTATION, 0.5, np.zeros(3))
    with pytest.raises(InputError, match=r"points_xy must be \(N, 2\).*\(1, 3\)"):
        draw_points(img, [[1.0, 2.0, 3.0]])
    assert draw_points(img, np.zeros((0, 2))).shape == (16, 16, 3)
    with pytest.raises(InputError, match=r"non-empty \(D, H, W\), got shape \(0, 4, 4\)"):
        slice_montage(np.zeros((0, 4, 4)))
    for kw in ({"ncols": -1}, {"ncols": 0}, {"pad": -1}):
        with pytest.raises(InputError, match="ncols of at least 1 and pad of at least 0"):
            image_grid([img, img], **kw)


def test_large_renders_cast_rays_in_bands_with_bounded_memory(monkeypatch):
    """Every ray of a render was cast at once: a 2048-pixel render held 4 GB, a 4096 one 16 GB
    (paper figures; an overlay on a large crop alike). Rays go in bands of rows, the picture the
    same to the bit."""
    import tracemalloc

    import voxface.viz as viz

    m = trimesh.util.concatenate([sphere(60.0), trimesh.creation.box(bounds=[[30, -50, -10], [80, 50, 10]])])
    img = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    whole = [render_mesh(m, size=96, yaw=30), render_mesh(m, size=96, fov_deg=35, pitch=-20),
             render_overlay(img, m, FRONTAL_ROTATION, 0.6, np.array([0.1, -0.2]))]
    monkeypatch.setattr(viz, "_RAYS_PER_BLOCK", 4 * 96 * 2 * 2 + 5)  # bands of 4 rows, the last shorter
    banded = [render_mesh(m, size=96, yaw=30), render_mesh(m, size=96, fov_deg=35, pitch=-20),
              render_overlay(img, m, FRONTAL_ROTATION, 0.6, np.array([0.1, -0.2]))]
    for a, b in zip(whole, banded):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(viz, "_RAYS_PER_BLOCK", 1 << 14)
    tracemalloc.start()
    try:
        out = render_mesh(m, size=512)  # a million rays: ~200 MB of ray arrays at once
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (512, 512, 3) and foreground(out)[256, 256]
    assert peak < 24e6, f"{peak / 1e6:.0f} MB at the peak"


def test_captions_draw_accented_greek_and_cyrillic_letters_and_cjk_does_not_fail():
    """Photo names reach captions (``voxface interpolate José.jpg Zoë.jpg``): Pillow's default font
    holds ASCII only and drew every other letter as the same box. Letters the caption font lacks
    (CJK) still draw something, without failing."""
    cell = [np.full((20, 60, 3), 255, np.uint8)]

    def strip(text: str) -> np.ndarray:
        g = image_grid(cell, pad=0, labels=[text])
        return g[: g.shape[0] - 20]

    missing = strip("\ue000")  # a private-use code point: no font has it, the box
    for letter in ("é", "ß", "Ω", "Ж"):
        drawn = strip(letter)
        assert (drawn < 128).any() and not np.array_equal(drawn, missing), letter
    assert not np.array_equal(strip("é"), strip("e")) and not np.array_equal(strip("Ω"), strip("Ж"))
    g = image_grid(cell * 2, labels=["顔の再構成", "😀"], title="顔 José")
    assert g.dtype == np.uint8 and (g < 128).any()


def test_draw_points_colours_are_0_255_integers_or_0_1_floats_and_bad_options_are_refused():
    """The rest of voxface.viz takes colours in [0, 1]: ``color=(1.0, 0.0, 0.0)`` drew near-black
    dots (1/255 red). Floats are [0, 1], integers 0-255; other values, a scale below 1 (drawn
    unscaled) and a negative radius (a PIL error) are one-line InputErrors; a tiny dot still shows."""
    img = np.zeros((16, 16, 3), np.uint8)
    for color in ((1.0, 0.0, 0.0), (255, 0, 0), np.array([255, 0, 0], np.uint8), np.array([1.0, 0.0, 0.0])):
        out = draw_points(img, [[8.0, 8.0]], color=color)
        assert out[8, 8].tolist() == [255, 0, 0], color
    assert draw_points(img, [[8.0, 8.0]], color=(0.5, 0.5, 0.5))[8, 8].tolist() == [128, 128, 128]
    for color, words in (((255.0, 40.0, 40.0), "give 0-255 values as integers"), ((300, 0, 0), "0-255"),
                         ((-1, 0, 0), "0-255"), ("red", "RGB"), ((1, 0), "RGB")):
        with pytest.raises(InputError, match=words):
            draw_points(img, [[8.0, 8.0]], color=color)
    for kwargs, words in (({"scale": 0}, "scale"), ({"scale": 1.5}, "scale"), ({"scale": float("nan")}, "scale"),
                          ({"radius": -1.0}, "radius"), ({"radius": float("nan")}, "radius")):
        with pytest.raises(InputError, match=words):
            draw_points(img, [[8.0, 8.0]], **kwargs)
    assert (draw_points(img, [[8.5, 8.5]], radius=0.3).sum(-1) > 0).any()  # PIL drew nothing here


@pytest.mark.parametrize("view", [(float("nan"), 0.0), (0.0, float("inf"))])
def test_a_non_finite_view_angle_is_refused_not_drawn_blank(view):
    """A NaN yaw (a computed angle gone wrong) gave NaN camera axes and an all-white picture
    without a word; every renderer refuses it."""
    from voxface.viz import render_sequence

    m = sphere()
    with pytest.raises(InputError, match="yaw and pitch must be finite"):
        render_mesh(m, yaw=view[0], pitch=view[1], size=8)
    with pytest.raises(InputError, match="yaw and pitch must be finite"):
        render_views(m, [view], size=8)
    with pytest.raises(InputError, match="yaw and pitch must be finite"):
        render_sequence([m], [view], size=8)


def test_overlay_of_a_reconstruction_uses_its_own_pose():
    """``render_overlay(rec.crop, rec)``: without pose arguments the canonical-mm mesh was taken to
    be in crop coordinates and covered the whole crop. A Reconstruction brings its pose; one
    decoded from a code (no pose) is refused."""
    import torch

    from voxface.models.voxface import Pose
    from voxface.reconstruct import Reconstruction

    grid = Grid.from_config(FrameConfig(), 8)
    pose = Pose(torch.as_tensor(FRONTAL_ROTATION, dtype=torch.float32)[None], torch.tensor([0.5]),
                torch.tensor([[0.25, 0.0]]))
    crop = np.zeros((64, 64, 3), np.float32)
    rec = Reconstruction(mesh=sphere(HEAD_RMS_RADIUS_MM), logits=np.zeros((8, 8, 8), np.float32), latents=None,
                         pose=pose, grid=grid, crop=crop)
    out = render_overlay(crop, rec, alpha=1.0)
    np.testing.assert_array_equal(out, render_overlay(crop, rec.mesh, pose=pose, alpha=1.0))
    hit = np.any(out != 0, axis=-1)
    h, w = bbox(hit)
    assert abs(h - 32) <= 2 and abs(w - 32) <= 2  # a disc of radius 0.5 crop half-widths, not the crop
    assert abs(np.nonzero(hit)[1].mean() - 40) <= 1  # moved right by 0.25 half-widths
    rec.pose = None
    with pytest.raises(InputError, match="has no pose"):
        render_overlay(crop, rec)


def test_montage_and_grid_options_that_drew_wrong_pictures_are_refused():
    """slice_montage with vmin >= vmax coloured through a divide by 1e-12 under a caption reading
    the range backwards, an unknown cmap was a KeyError, n=0 / cell_px=0 were silently 1 and the
    bare voxels; image_grid's background=300 was an OverflowError and 0.5 a black background."""
    vol = np.random.default_rng(0).random((8, 8, 8))
    for kwargs, words in (({"vmin": 1.0, "vmax": 0.0}, "vmin < vmax"), ({"vmin": float("nan")}, "vmin"),
                          ({"cmap": "nope"}, "colormap"), ({"n": 0}, "n and cell_px"),
                          ({"cell_px": 0}, "n and cell_px")):
        with pytest.raises(InputError, match=words):
            slice_montage(vol, **kwargs)
    assert slice_montage(vol, n=2, cmap="gray", vmin=-1.0, vmax=2.0).dtype == np.uint8
    for background in (300, -1, 0.5, "white"):
        with pytest.raises(InputError, match="background must be a grey level"):
            image_grid([np.zeros((4, 4, 3), np.uint8)], background=background)
    assert (image_grid([np.zeros((4, 4, 3), np.uint8)], background=np.uint8(128))[0, 0] == 128).all()


def test_plotly_views_refuse_meshes_the_renderers_refuse():
    """A mesh without faces failed inside plotly ('truth value of an empty array is ambiguous'), a
    NaN vertex drew a figure with holes; both are VoxfaceErrors naming the problem, as in render_mesh."""
    pytest.importorskip("plotly")
    from voxface import VoxfaceError
    from voxface.viz import plot_meshes_plotly

    points = trimesh.Trimesh(np.random.default_rng(0).random((10, 3)), np.zeros((0, 3), int), process=False)
    broken = sphere()
    broken.vertices[3] = np.nan
    for call in (lambda m: plot_mesh_plotly(m), lambda m: plot_meshes_plotly([sphere(), m])):
        with pytest.raises(VoxfaceError, match="no faces"):
            call(points)
        with pytest.raises(VoxfaceError, match="non-finite vertices"):
            call(broken)


def test_latent_explorer_refuses_bad_options_before_touching_the_model():
    """threshold=1.5 failed in a bare 'math domain error', value_range=-1 in an ipywidgets
    TraitError after the first decode; they, step 0 and size 0 are one-line errors up front."""
    pytest.importorskip("ipywidgets")
    from voxface.viz import latent_explorer

    for kwargs, words in (({"threshold": 1.5}, "threshold"), ({"value_range": -1.0}, "value_range"),
                          ({"step": 0.0}, "step"), ({"size": 0}, "size"),
                          # k 0 built an explorer without a slider; a NaN view failed after the first decode
                          ({"k": 0}, "k must be at least 1"), ({"yaw": float("nan")}, "yaw must be finite"),
                          ({"pitch": float("inf")}, "pitch must be finite")):
        with pytest.raises(InputError, match=words):
            latent_explorer(object(), **kwargs)  # object(): never reached
    with pytest.raises(InputTypeError, match="k must be an integer"):
        latent_explorer(object(), k=2.5)


@pytest.mark.parametrize("framing", [((0, 0, 0), 0.0), ((0, 0, 0), -60.0), ((0, 0, 0), np.nan),
                                     ((0, 0, np.nan), 60.0), ((0, 0), 60.0)])
def test_render_sequence_refuses_a_framing_that_draws_nothing(framing):
    """A framing radius of 0 filled the picture with one pixel's colour, a negative or NaN radius
    or a NaN centre drew a blank picture without a word, a 2-element centre failed in numpy."""
    from voxface.viz import render_sequence

    with pytest.raises(InputError, match="framing must be"):
        render_sequence([sphere()], size=8, framing=framing)
    assert (render_sequence([sphere()], size=8, framing=((0, 0, 0), 60.0))[0][0] != 255).any()


@pytest.mark.parametrize("fov", [0.0, 180.0, -10.0, float("nan")])
def test_a_field_of_view_outside_0_180_is_a_value_error_as_every_bad_argument(fov):
    """fov_deg raised a VoxfaceError that is not a ValueError (``except ValueError`` missed it),
    unlike every other bad render argument."""
    with pytest.raises(ValueError, match=r"fov_deg must lie in \(0, 180\)"):
        render_mesh(sphere(), size=8, fov_deg=fov)
    assert (render_mesh(sphere(), size=8, fov_deg=60.0) != 255).any()


def test_gif_loop_counts_none_plays_once_and_bad_counts_are_refused(tmp_path):
    """loop=-1 or 70000 failed in PIL's encoder (OverflowError), and there was no way to write a
    GIF that plays once (loop=1 repeats once: two plays; None was a TypeError)."""
    frames = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]
    for loop, stored in ((0, 0), (3, 3), (None, None)):
        with Image.open(save_gif(frames, tmp_path / f"{loop}.gif", loop=loop)) as im:
            assert im.n_frames == 2 and im.info.get("loop") == stored, loop
    for loop in (-1, 70000, 1.5, "x", True):
        with pytest.raises(InputError, match="loop must be"):
            save_gif(frames, tmp_path / "bad.gif", loop=loop)
    assert not (tmp_path / "bad.gif").exists()


def test_a_line_break_in_a_caption_starts_a_new_line():
    """``labels=["t = 0.5\\nIoU 0.81"]`` drew one line, the break read as a space."""
    cell = [np.full((20, 200, 3), 255, np.uint8)]
    one = image_grid(cell, pad=0, labels=["t = 0.5 IoU 0.81"])
    two = image_grid(cell, pad=0, labels=["t = 0.5\nIoU 0.81"])
    line = image_grid(cell, pad=0, labels=["t = 0.5"]).shape[0] - 20 - 3
    assert two.shape[0] - one.shape[0] == line  # one more line of text
    assert image_grid(cell, pad=0, labels=["t = 0.5\n"]).shape == image_grid(cell, pad=0, labels=["t = 0.5"]).shape
    titled = image_grid(cell, pad=0, title="first\nsecond")
    assert titled.shape[0] - image_grid(cell, pad=0, title="first second").shape[0] == line


@pytest.mark.parametrize("view", [(0.0, 0.0), (90.0, 20.0)])
def test_a_close_up_framing_shows_the_surface_seen_from_outside(view):
    """A framing smaller than the mesh (a close-up) started the orthographic rays 2 framing radii
    out, inside the mesh: the picture showed its far side from within, the light mirrored. The
    close-up is the middle of the whole view at the same pixel size."""
    from voxface.viz import render_sequence

    ball = sphere(50.0)
    whole = render_mesh(ball, yaw=view[0], pitch=view[1], size=100)  # 1.04 mm a pixel
    close = render_sequence([ball], [view], size=20, framing=((0.0, 0.0, 0.0), 10.0))[0][0]
    assert np.abs(close.astype(int) - whole[40:60, 40:60]).max() <= 2


@pytest.mark.parametrize("scale, point, radius", [(1, (8.0, 8.0), 2.0), (1, (8.5, 8.5), 1.5), (4, (4.0, 4.0), 6.0),
                                                  (2, (5.25, 6.75), 3.0)])
def test_draw_points_centres_each_dot_on_its_point(scale, point, radius):
    """PIL's ellipse draws its box's pixels inclusive: every dot sat half a pixel right of and below
    its point (in PIL's pixel-centre coordinates, not the corner convention the docstring gives), and
    a pixel too wide. A dot is now the pixels whose centres lie within the radius."""
    out = draw_points(np.zeros((16, 16, 3), np.uint8), [point], scale=scale, radius=radius)
    ys, xs = np.nonzero(out[..., 0] > 0)
    # pixel (i, j) spans [j, j + 1] x [i, i + 1]: its centre is (j + 0.5, i + 0.5)
    assert abs(xs.mean() + 0.5 - point[0] * scale) <= 0.15 and abs(ys.mean() + 0.5 - point[1] * scale) <= 0.15
    assert xs.max() - xs.min() <= 2 * radius and ys.max() - ys.min() <= 2 * radius  # centres within the radius
    assert abs(len(xs) - np.pi * radius**2) <= 2 * np.pi * radius  # a disc of that radius


def test_views_that_are_not_yaw_pitch_pairs_and_fractional_turntables_are_refused():
    """``views=[0, 60]`` (yaws alone) failed in 'cannot unpack non-iterable int', ``(0, 0, 0)`` in
    'too many values to unpack'; ``mesh_turntable(n=2.5)`` drew 2 frames 144 degrees apart, n=0 none."""
    from voxface.viz import render_sequence

    for views in ([0, 60], [(0, 0, 0)], [("a", 0)]):
        with pytest.raises(InputError, match=r"\(yaw, pitch\) pairs"):
            render_views(sphere(), views, size=8)
        with pytest.raises(InputError, match=r"\(yaw, pitch\) pairs"):
            render_sequence([sphere()], views, size=8)
    for n in (0, -1, 2.5, "4", True):
        with pytest.raises(InputError, match="n must be a whole number"):
            mesh_turntable(sphere(), n=n, size=8)
    assert len(mesh_turntable(sphere(), n=np.int64(3), size=8)) == len(render_views(sphere(), [[0, 0], (60.0, 0)], 8)) + 1


def test_slice_montage_refuses_a_grid_of_another_resolution_than_the_volume():
    """A 128^3 volume (reconstruct --resolution 128) captioned with the 64^3 grid's positions read
    every slice's millimetres wrong, without a word."""
    grid64 = Grid.from_config(FrameConfig(), 64)
    vol = np.zeros((128, 128, 128), np.float32)
    vol[40:90, 30:100, 50:80] = 1.0
    with pytest.raises(InputError, match="not on the grid given"):
        slice_montage(vol, n=2, grid=grid64)
    assert slice_montage(vol, n=2, grid=Grid.from_config(FrameConfig(), 128)).shape[2] == 3


def test_pil_images_are_drawn_in_their_colours_not_their_palette_indices(tmp_path):
    """numpy reads a palette image (a GIF frame, an 8-bit PNG) as its indices: image_grid drew a
    red palette image grey, and a CMYK or YCbCr one in false colours."""
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = (220, 30, 30)
    rgb[:, 4:] = (30, 30, 220)
    pil = Image.fromarray(rgb)
    for im in (pil.quantize(8), pil.convert("CMYK"), pil.convert("YCbCr")):
        out = image_grid([im], pad=0).astype(int)
        assert np.abs(out - rgb).max() <= 8, im.mode
    # a GIF frame with a transparent background: composited over white, as RGBA arrays are
    frame = pil.convert("RGBA")
    frame.putpixel((0, 0), (0, 0, 0, 0))
    frame.save(tmp_path / "f.gif")
    with Image.open(tmp_path / "f.gif") as gif:
        assert gif.mode == "P"
        out = image_grid([gif], pad=0)
    assert out[0, 0].tolist() == [255, 255, 255] and np.abs(out[5, 1].astype(int) - rgb[5, 1]).max() <= 8
    save_png(pil.quantize(8), tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as back:
        assert np.abs(np.asarray(back.convert("RGB")).astype(int) - rgb).max() <= 8


@pytest.mark.parametrize("fps", [6.0, 8.0, 12.0, 15.0, 24.0])
def test_gif_plays_at_the_frame_rate_asked_for(tmp_path, fps):
    """PIL cuts a frame's duration down to 10 ms: fps 8 (voxface interpolate's GIF) was written as
    120 ms frames (8.3 fps), 6 (walk's) as 160 ms, 15 as 60 ms (16.7 fps)."""
    frames = [np.full((4, 4, 3), 25 * i, np.uint8) for i in range(10)]
    with Image.open(save_gif(frames, tmp_path / "a.gif", fps=fps)) as gif:
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert len(durations) == 10 and all(d % 10 == 0 and d >= 20 for d in durations)
    assert abs(sum(durations) - 10 * 1000 / fps) <= 5  # the whole animation: 10 frames at fps
    assert max(durations) - min(durations) <= 10


def test_a_transparent_background_gives_rgba_with_the_coverage_as_alpha(tmp_path):
    """Figures are composed elsewhere (a paper's layout, a slide): ``background=None`` renders RGBA,
    alpha the mesh's coverage; over white it is the ordinary render."""
    from voxface.viz import render_sequence

    opaque = render_mesh(sphere(), size=48)
    rgba = render_mesh(sphere(), size=48, background=None)
    assert rgba.shape == (48, 48, 4) and rgba.dtype == np.uint8
    alpha = rgba[..., 3].astype(float) / 255
    assert alpha[0, 0] == 0 and alpha[24, 24] == 1 and ((alpha > 0) & (alpha < 1)).any()  # soft edges
    over_white = rgba[..., :3] * alpha[..., None] + 255 * (1 - alpha[..., None])
    assert np.abs(over_white - opaque).max() <= 1
    assert np.abs(image_grid([rgba], pad=0).astype(int) - opaque).max() <= 1  # alpha over white
    with Image.open(save_png(rgba, tmp_path / "a.png")) as back:
        assert back.mode == "RGBA" and np.array_equal(np.asarray(back), rgba)
    seq = render_sequence([sphere()], [(0, 0), (60, 0)], size=16, background=None)[0]
    assert [v.shape for v in seq] == [(16, 16, 4)] * 2
    assert render_views(sphere(), [(0, 0)], size=16, background=None)[0].shape == (16, 16, 4)

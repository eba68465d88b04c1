"""voxface.viz and voxface.html, review 38."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

import voxface.viz as viz


@pytest.mark.parametrize("offset", [(5e5, 5e6, 100.0), (1e4, 0.0, 0.0)])
def test_a_mesh_far_from_the_origin_renders_as_at_the_origin(offset):
    """open3d holds triangles and rays in float32. A scan kept in world coordinates (a head in
    metres, UTM-like: 5,000 km from the origin, where float32 rounds to half a metre) collapsed to
    a few points and was drawn as a blank white picture without a word; 10 km out in mm its
    silhouette came out jagged. The scene is held relative to the mesh's centre: the picture is the
    one of the same mesh at the origin."""
    ico = trimesh.creation.icosphere(3, radius=0.08)  # a head-sized sphere, in metres
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
    if offset[0] == 1e4:
        v = v * 1000  # in millimetres, 10 km out: 1e7 mm
        offset = (1e7, 0.0, 0.0)
    at_origin = viz.render_mesh((v, f), yaw=30, size=48).astype(int)
    far = viz.render_mesh((v + np.asarray(offset), f), yaw=30, size=48).astype(int)
    assert (far < 250).any(), "blank picture"
    assert np.abs(far - at_origin).max() <= 1
    # framed explicitly too (render_sequence's framing moves the view, not the scene)
    seq = viz.render_sequence([(v + np.asarray(offset), f)], [(30, 0)], 48,
                              framing=(np.asarray(offset), float(np.linalg.norm(v, axis=1).max())))[0][0]
    assert np.abs(seq.astype(int) - at_origin).max() <= 1


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_latent_explorer_takes_the_photo_options_every_latent_function_takes(bundled):
    """``latent_explorer(model, crop, detect=False)`` (or ``skin_check=``, ``scan_size=``) was a bare
    ``TypeError``, where the README says every latent function that reads photos takes them (as
    ``as_latents``, ``interpolate``, ``walk``, ``decode`` do): a ready crop could not be explored
    without encoding it first. They reach ``as_latents``: the same start as its codes."""
    pytest.importorskip("ipywidgets")
    from voxface.errors import InputError, NoFaceError
    from voxface.latent import as_latents

    crop = np.full((64, 64, 3), 0.6, np.float32)  # no face to find: only detect=False reads it
    with pytest.raises(NoFaceError):
        viz.latent_explorer(bundled, crop, k=1, size=24)
    ex = viz.latent_explorer(bundled, crop, k=1, size=24, detect=False, skin_check=False)
    ref = as_latents(bundled, crop, detect=False)
    assert np.array_equal(ex.base.z_id.numpy(), ref.z_id.numpy())
    assert np.array_equal(ex.base.z_exp.numpy(), ref.z_exp.numpy())
    assert ex.image.value == viz.latent_explorer(bundled, ref, k=1, size=24).image.value
    with pytest.raises(InputError, match="scan_size"):  # checked as reconstruct checks it, before any decode
        viz.latent_explorer(object(), crop, scan_size=10)


@pytest.mark.parametrize("wound", ["facing the viewer", "facing away"])
def test_a_smooth_normal_pointing_away_on_a_seen_triangle_keeps_its_sideways_part(wound):
    """Vertex normals interpolated across a silhouette (a fold: the nose's side seen in profile) point
    away from the viewer on triangles the viewer sees (0.2% of a reconstructed face's hits). They were
    negated, which turned their sideways part round too: those pixels were lit as the opposite side
    (up to 100 levels off: dark specks along the nose's outline). The side is chosen by the triangle's
    own normal and such a normal is reflected in the plane facing the viewer. Here a sheet ``A``
    grazing the view folds back under itself into ``B`` (hidden): every hit on ``A`` is lit as
    ``A``'s visible side, which faces down (-y), whichever way the sheet is wound."""
    prof = [(1.0, 0.0), (0.0, -5.0), (1.0, -6.0)]  # (y, z) of the fold's three edges, extruded along x
    v = np.array([(x, y, z) for (y, z) in prof for x in (-1.0, 1.0)])
    f = np.array([[0, 2, 1], [1, 2, 3], [2, 4, 3], [3, 4, 5]])
    if wound == "facing away":
        f = f[:, ::-1]
    sc = viz._Scene.of((v, f))
    ys = np.linspace(0.005, 0.995, 199)
    origins = np.stack([np.zeros_like(ys), ys, np.full_like(ys, 10.0)], axis=1)
    hit, n = sc.cast(origins, np.broadcast_to([0.0, 0.0, -1.0], origins.shape))
    assert hit.all()
    assert (n[:, 2] >= 0).all()  # towards the viewer (+z)
    assert (n[:, 1] < -0.9).all(), f"{int((n[:, 1] > 0).sum())} of 199 hits lit as facing up"
    # a render agrees: A's rows are one shade, not a band lit from the other side
    img = viz.render_mesh((v, f), size=32, supersample=1)
    assert np.ptp(img[img.min(-1) < 250].astype(int), axis=0).max() <= 12


def test_an_overlays_rays_start_in_front_of_the_drawn_vertices_not_a_stray_one():
    """render_overlay started its rays in front of every vertex, the ones no face names too (a scan's
    outlier, an invalid-point marker), as render_mesh did before d2e676f: one 1,000 km in front of
    the face put their start there, where open3d's float32 rays lose the surface (6% of the
    pixels off by up to 59 levels). They start in front of the vertices faces name."""
    ico = trimesh.creation.icosphere(4, radius=80)
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
    crop = np.full((96, 96, 3), 128, np.uint8)
    rot = np.diag([1.0, -1.0, -1.0]) @ trimesh.transformations.rotation_matrix(0.5, [0, 1, 0])[:3, :3]
    ref = viz.render_overlay(crop, (v, f), rot, 0.6, [0.1, 0.0])
    stray = viz.render_overlay(crop, (np.vstack([v, [0.0, 0.0, 1e9]]), f), rot, 0.6, [0.1, 0.0])
    assert np.array_equal(stray, ref)


def test_latent_explorer_decodes_on_the_grid_asked_for(bundled):
    """The latent commands and ``latent.decode`` take ``resolution`` / ``upsample``; the explorer
    decoded on the model's 64^3 grid alone (a bare TypeError for ``resolution=128``). Its start face
    and every redraw are decoded on the grid asked for."""
    pytest.importorskip("ipywidgets")
    from voxface.latent import mean_latents
    from voxface.reconstruct import decode_latents

    ex = viz.latent_explorer(bundled, k=1, size=24, space="identity", resolution=128)
    assert ex.reconstruction.logits.shape == (128, 128, 128)
    ref = decode_latents(bundled, mean_latents(bundled), resolution=128)[0]
    assert np.array_equal(ex.reconstruction.mesh.vertices, ref.mesh.vertices)
    ex.sliders[0].value = 1.0
    assert ex.redraws == 2 and ex.reconstruction.logits.shape == (128, 128, 128)


def test_the_page_keeps_a_bounded_number_of_decoded_steps(tmp_path):
    """The viewer decoded a step's mesh into typed arrays (about 0.5 MB a 20k-face mesh) and kept
    every step it had shown: a page of 1,024 faces (``voxface sample -n 1024``'s index.html) played
    through held all of them decoded, beside the page itself. It keeps the last 32 steps shown;
    a step shown again after it was let go is decoded and drawn again. Run in headless Chromium."""
    import re
    import subprocess

    from voxface import html as vhtml

    from .test_browser import _browser, _find_chromium

    chromium = _find_chromium()
    if chromium is None:
        pytest.skip("needs Chromium (Debian: apt-get install chromium)")
    page = vhtml.mesh_page([trimesh.creation.icosphere(1, radius=80 + i) for i in range(80)])
    drive = ('<script>for (let i = 0; i < 80; i++) window.voxface.setStep(i); window.voxface.setStep(3);'
             'document.body.setAttribute("data-cached", String(window.voxface.cached()));</script>')
    (tmp_path / "p.html").write_text(page.replace("</body>", drive + "</body>"), encoding="utf-8")
    try:
        r = _browser(chromium, tmp_path / "profile", "--dump-dom", (tmp_path / "p.html").as_uri())
    except subprocess.TimeoutExpired:  # pragma: no cover - a stuck browser
        pytest.skip("Chromium did not finish")
    body = re.search(r"<body[^>]*>", r.stdout)
    assert body, r.stderr[-1500:]
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', body.group(0)))
    assert attrs.get("cached") == "32" and attrs.get("step") == "3" and attrs.get("drawn") == "82", body.group(0)

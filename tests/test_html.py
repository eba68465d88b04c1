"""voxface.html: the self-contained interactive mesh page (no browser needed here; see test_browser)."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import trimesh

from voxface.html import mesh_page, offline_problems, page_data, save_mesh_page


def spheres(n: int = 3) -> list[trimesh.Trimesh]:
    out = []
    for i in range(n):
        m = trimesh.creation.icosphere(subdivisions=3, radius=40.0 + 10 * i)
        m.apply_translation([0.0, -30.0, 20.0 * i])
        out.append(m)
    return out


def embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="voxface-data">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def decode_frame(data: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    fr = data["frames"][i]
    q = np.frombuffer(base64.b64decode(fr["v"]), "<i2").reshape(-1, 3)
    f = np.frombuffer(base64.b64decode(fr["f"]), "<u2" if fr["fw"] == 2 else "<u4").reshape(-1, 3)
    v = np.asarray(data["center"]) + q * (data["radius"] / 32767)
    return v, f.astype(np.int64)


def test_page_round_trips_the_meshes_with_a_shared_frame():
    ms = spheres()
    html = mesh_page(ms, ["a", "b", "c"], title="T <x>", description="d & e")
    data = embedded(html)
    assert data["labels"] == ["a", "b", "c"] and len(data["frames"]) == 3
    # one framing for every step: the union's bounding sphere
    allv = np.concatenate([m.vertices for m in ms])
    assert np.allclose(data["center"], 0.5 * (allv.min(0) + allv.max(0)))
    for i, m in enumerate(ms):
        v, f = decode_frame(data, i)
        assert data["frames"][i]["nv"] == len(m.vertices) and data["frames"][i]["nf"] == len(m.faces)
        assert np.abs(v - m.vertices).max() <= data["radius"] / 32767  # int16 quantisation
        assert (f == m.faces).all()
    # text is escaped, the slider spans the steps
    assert "<title>T &lt;x&gt;</title>" in html and "d &amp; e" in html
    assert 'id="step" type="range" min="0" max="2"' in html


def test_page_is_self_contained():
    html = mesh_page(spheres(2))
    assert offline_problems(html) == []
    assert "http://" not in html and "https://" not in html
    assert "<script src" not in html and "<link" not in html
    # the checker does catch what would reach the network
    bad = html.replace("<style>", '<script src="https://cdn.example.org/x.js"></script><style>', 1)
    assert offline_problems(bad)
    assert offline_problems('<link rel="stylesheet" href="//cdn.example.org/a.css">')
    assert offline_problems("<style>@import 'x.css';</style>")
    assert offline_problems('<img src="face.png">')
    assert not offline_problems('<a href="#step=2">step 2</a><img src="data:image/png;base64,AAAA">')


def test_page_state_options_and_decimation(tmp_path):
    big = trimesh.creation.icosphere(subdivisions=5, radius=50.0)  # 20,480 faces
    data = page_data([big, big], max_faces=2000, initial=7, yaw=30, pitch=10)
    assert data["frames"][0]["nf"] <= 2100 and data["initial"] == 1
    assert (data["yaw"], data["pitch"]) == (30.0, 10.0)
    v, f = decode_frame(data, 0)
    assert trimesh.Trimesh(v, f, process=True).is_watertight  # decimated for the page, still closed
    assert page_data([big], max_faces=None)["frames"][0]["nf"] == len(big.faces)
    # (vertices, faces) tuples and Reconstruction-like objects are taken; files are written atomically
    p = save_mesh_page(tmp_path / "p.html", [(big.vertices, big.faces)], ["only"])
    assert p.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        page_data([])
    with pytest.raises(ValueError):
        page_data(spheres(2), ["one label"])


def test_script_understands_the_url_fragment():
    html = mesh_page(spheres(1))
    # the page reads #step=&yaw=&pitch=&zoom= and exposes a scripting hook
    for key in ('k === "step"', 'k === "yaw"', 'k === "pitch"', 'k === "zoom"', "hashchange", "window.voxface"):
        assert key in html


def test_a_file_name_that_is_not_utf8_does_not_fail_the_page(tmp_path):
    """Python keeps the bytes of a non-UTF-8 file name as lone surrogates; a title made from it
    (``voxface interpolate`` names its photos) used to fail the page after the meshes were written."""
    name = b"bad\xff\xfename.png".decode("utf-8", "surrogateescape")
    path = save_mesh_page(tmp_path / "index.html", [trimesh.creation.icosphere(2, 50.0)], ["t = 0"],
                          title=f"voxface: {name} to b.png")
    text = path.read_bytes().decode("utf-8")  # valid UTF-8
    assert "bad\ufffd\ufffdname.png" in text or "bad??name.png" in text


def test_empty_and_non_finite_meshes_are_refused_naming_the_mesh(tmp_path):
    """A NaN vertex wrote ``NaN`` into the page's JSON, which browsers cannot parse: a blank page,
    written without a word. An empty mesh failed in numpy (``zero-size array``). Both are a
    VoxfaceError naming the mesh, and nothing is written."""
    import warnings

    from voxface import VoxfaceError

    ok = spheres(1)[0]
    v = np.asarray(ok.vertices).copy()
    v[[2, 5], 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before numpy warns about casting NaN
        with pytest.raises(VoxfaceError, match=r"mesh 1: 2 of its \d+ vertices have NaN or infinite"):
            mesh_page([ok, (v, ok.faces)])
        with pytest.raises(VoxfaceError, match=r"mesh 0: 1 of its \d+ vertices"):
            page_data([(np.where(np.arange(len(v))[:, None] == 0, np.inf, ok.vertices), ok.faces)])
        for empty in ([trimesh.Trimesh()], [ok, trimesh.Trimesh()]):
            with pytest.raises(VoxfaceError, match=rf"mesh {len(empty) - 1}: it has no faces"):
                save_mesh_page(tmp_path / "index.html", empty)
    assert not (tmp_path / "index.html").exists()
    assert "NaN" not in mesh_page([ok])


def test_colour_outside_zero_one_is_refused():
    """color=(204, 191, 178) drew white clay on the white canvas; it is refused."""
    with pytest.raises(ValueError, match=r"color must be three numbers in \[0, 1\]"):
        page_data(spheres(1), color=(204, 191, 178))
    with pytest.raises(ValueError, match="color must be"):
        mesh_page(spheres(1), color="clay")
    assert page_data(spheres(1), color=(1, 0.5, 0))["color"] == [1.0, 0.5, 0.0]


def test_open_meshes_are_drawn_double_sided_and_inside_out_closed_ones_are_turned_outward():
    """The viewer culled back faces of every mesh: an open mesh (a face mask) looked holed from
    behind and an inside-out closed mesh was lit from the wrong side. A closed mesh is culled and
    wound outward; any other is flagged to be drawn double-sided (test_browser draws both)."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
    cap = trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] > 0], process=False)
    inside_out = sphere.copy()
    inside_out.invert()
    data = page_data([sphere, cap, inside_out])
    assert [fr["cull"] for fr in data["frames"]] == [True, False, True]
    for i in (0, 2):
        v, f = decode_frame(data, i)
        assert trimesh.Trimesh(v, f, process=False).volume > 0  # wound outward
    v, f = decode_frame(data, 1)
    assert (f == cap.faces).all()  # an open mesh keeps its faces as given
    assert "fr.cull" in mesh_page([cap])  # the script reads the flag


def test_an_open_mesh_larger_than_max_faces_is_decimated_for_the_page(recwarn):
    """max_faces kept an open mesh (a face mask) whole, with a warning that decimation "left the
    mesh open": a 40k-face mask made a page twice the size asked for. It is decimated as it is."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=50.0)
    cap = trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] > 0])
    assert len(cap.faces) > 5000
    data = page_data([cap, sphere], max_faces=2000)
    assert [fr["nf"] for fr in data["frames"]] == [2000, 2000]
    assert [fr["cull"] for fr in data["frames"]] == [False, True]  # the sphere stays closed
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_non_finite_view_is_refused_not_written_as_a_blank_page(tmp_path):
    """yaw/pitch NaN or inf went into the page's JSON as NaN/Infinity, which the browser's
    JSON.parse refuses: a blank page, written without a word. They, a NaN initial step (a numpy
    error) and max_faces below 4 are one-line InputErrors before anything is written."""
    from voxface import InputError

    target = tmp_path / "p.html"
    for kwargs, words in (({"yaw": float("nan")}, "yaw"), ({"pitch": float("inf")}, "pitch"),
                          ({"initial": float("nan")}, "initial"), ({"max_faces": 0}, "max_faces")):
        with pytest.raises(InputError, match=words):
            save_mesh_page(target, spheres(1), **kwargs)
        assert not target.exists()
    data = embedded(mesh_page(spheres(1), pitch=120.0))
    assert data["pitch"] == 89.0  # the viewer's own limit, not upside down
    json.loads(json.dumps(data), parse_constant=lambda c: pytest.fail(f"{c} in the page's JSON"))


def test_labels_holding_html_markup_stay_data():
    """The payload escaped only "</": a label "<!--<script>" (text a user gave) put the browser's
    script parser in its escaped state, where the page's real "</script>" no longer closed the
    data block, and the viewer never ran (test_browser runs it). The payload holds no "<" at all."""
    labels = ["<!--<script>", "</script><b>x</b>"]
    html = mesh_page(spheres(2), labels)
    block = html.split('id="voxface-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block
    assert embedded(html)["labels"] == labels


def test_one_mesh_or_one_pair_is_a_page_of_one_step(tmp_path):
    """mesh_page(mesh) failed with "'Trimesh' object is not iterable", and a (vertices, faces) pair
    was taken as two meshes and refused; one mesh (with one caption as a string) is one step."""
    m = spheres(1)[0]
    for one in (m, (m.vertices, m.faces)):
        data = embedded(mesh_page(one, "my face"))
        assert data["labels"] == ["my face"] and len(data["frames"]) == 1
        v, f = decode_frame(data, 0)
        np.testing.assert_array_equal(f, m.faces)
        np.testing.assert_allclose(v, m.vertices, atol=0.01)
    assert page_data(m)["labels"] == ["step 0"]
    assert embedded(save_mesh_page(tmp_path / "one.html", m).read_text())["frames"][0]["nf"] == len(m.faces)
    # a list of pairs stays a list of meshes; a string is no mesh
    assert len(page_data([(m.vertices, m.faces)] * 2)["frames"]) == 2
    with pytest.raises(TypeError, match="expected a mesh.*got str"):
        mesh_page("head.ply")


def test_progress_shows_a_bar_over_the_meshes(tmp_path, capsys):
    """Decimating 256^3 meshes for a page took seconds each with nothing on the screen (the latent
    commands were silent for a minute after their render bar): progress=True shows a bar, off by default."""
    meshes = spheres(3)
    save_mesh_page(tmp_path / "quiet.html", meshes)
    assert "page" not in capsys.readouterr().err
    path = save_mesh_page(tmp_path / "bar.html", meshes, progress=True)
    err = capsys.readouterr().err
    assert "page" in err and "3/3" in err and "mesh" in err
    assert path.read_text().count('"nf":') == 3

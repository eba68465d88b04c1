"""Review 39, html/viz: the self-contained page's checker and the page's notes."""

from __future__ import annotations

import trimesh

from voxface.html import mesh_page, offline_problems


def test_offline_problems_reads_tags_and_code_not_the_text_the_page_shows():
    """A photo named ``<img src=x onerror=alert(1)>.jpg`` titles the page escaped (text, never
    fetched), yet offline_problems reported ``['src=x']``: the page of a self-contained run read as
    reaching the network. So did a description quoting an address. Tags and script/style bodies are
    still read, srcset and poster too, and a quoted ``>`` does not end a tag."""
    name = "<img src=x onerror=alert(1)>.jpg"
    html = mesh_page([trimesh.creation.icosphere(1, 50.0)], [name], title=f"voxface: {name}",
                     description='data: "https://ict.usc.edu" & href=a.png')
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html and "<img src" not in html
    assert offline_problems(html) == []
    assert offline_problems("<h1>&lt;img src=x&gt;</h1><p>see https://example.org</p>") == []
    # what a browser would fetch is still found
    assert offline_problems('<img alt="a>b" src="x.png">') == ['src="x.png']
    assert offline_problems('<img srcset="a.png 2x">') == ['srcset="a.png']
    assert offline_problems('<video poster="p.png"></video>') == ['poster="p.png']
    assert offline_problems('<script>img.src = "face.png"</script>') == ['src = "face.png']
    assert offline_problems('<p>x</p><script>fetch("https://cdn.example.org/a.js")') == ["https://cdn.example.org"]
    assert offline_problems("<style>body { background: url(a.png) }</style>") == ["url("]
    bad = html.replace("<style>", '<script src="https://cdn.example.org/x.js"></script><style>', 1)
    assert offline_problems(bad) == ['src="https://cdn.example.org/x.js']


_NODE_HARNESS = r"""
const fs = require("fs");
const html = fs.readFileSync(process.argv[2], "utf8");
const data = html.match(/<script type="application\/json" id="voxface-data">([\s\S]*?)<\/script>/)[1];
const js = html.match(/<script>([\s\S]*?)<\/script>/)[1];
const ctx = new Proxy({}, { get: (t, k) => (k in t ? t[k] : () => {}), set: (t, k, v) => { t[k] = v; return true; } });
const el = (id) => ({ textContent: id === "voxface-data" ? data : "", style: {}, addEventListener() {},
  setAttribute() {}, setPointerCapture() {}, getContext: () => ctx });
const els = {};
global.document = { getElementById: (id) => (els[id] = els[id] || el(id)), body: el("body") };
global.window = { innerWidth: 800, innerHeight: 900, devicePixelRatio: 1, location: { hash: "" },
  history: { replaceState() {} }, addEventListener() {} };
global.atob = (b) => Buffer.from(b, "base64").toString("binary");
eval(js);
const out = [els.label.textContent];
window.voxface.setStep(1);
out.push(els.label.textContent);
console.log(JSON.stringify(out));
"""


def test_a_mesh_decimated_for_the_page_says_so_in_its_caption(tmp_path):
    """A mesh over max_faces (a 256^3 face: ~300k faces) was shown decimated to 20,000 faces
    without a word: the page looked coarser than the PLY written beside it. The frame records the
    faces given ("of") and the step's caption reads "2,000 of 20,480 faces shown"; a mesh shown
    whole has no "of" (its page is as before)."""
    import json
    import shutil
    import subprocess

    from voxface.html import page_data, save_mesh_page

    big, small = trimesh.creation.icosphere(5, 50.0), trimesh.creation.icosphere(2, 50.0)
    data = page_data([big, small], max_faces=2000)
    assert [(fr["nf"], fr.get("of")) for fr in data["frames"]] == [(2000, 20480), (320, None)]
    assert "of" not in page_data([big], max_faces=None)["frames"][0]
    page = save_mesh_page(tmp_path / "index.html", [big, small], ["big", "small"], max_faces=2000)
    node = shutil.which("node")
    if node is None:  # the viewer's caption is checked where Node.js is installed
        return
    harness = tmp_path / "run.js"
    harness.write_text(_NODE_HARNESS)
    r = subprocess.run([node, str(harness), str(page)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["big  (1 / 2)  \u00b7 2,000 of 20,480 faces shown", "small  (2 / 2)"]


def test_save_gif_refuses_a_rate_whose_frames_outlast_what_a_gif_stores(tmp_path):
    """A GIF stores a frame's duration in 16 bits of 10 ms (655.35 s): fps=0.001 (a slide every
    1000 s) was a bare 'OverflowError: int too big to convert' from PIL. It is an InputError naming
    fps, before anything is written; 1/655 still writes, each frame 655 s long."""
    import numpy as np
    import pytest
    from PIL import Image

    from voxface.errors import InputError
    from voxface.viz import save_gif

    frames = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)]
    with pytest.raises(InputError, match=r"fps must be at least 1/655 \(a GIF frame lasts at most 655.35 s\), got 0.001"):
        save_gif(frames, tmp_path / "a.gif", fps=0.001)
    assert not (tmp_path / "a.gif").exists()
    with Image.open(save_gif(frames, tmp_path / "a.gif", fps=1 / 655)) as im:
        assert im.n_frames == 2 and im.info["duration"] == 655000


def test_page_arguments_nan_infinite_max_faces_and_generator_labels():
    """max_faces=float('inf') (meaning "never decimate") was a bare OverflowError, NaN or a word a
    bare int() ValueError naming no argument; labels given as a generator were a bare TypeError
    ("object of type 'generator' has no len()"). max_faces is an InputError naming it, labels of
    any iterable are taken."""
    import math

    import pytest

    from voxface.errors import InputError
    from voxface.html import page_data

    s = trimesh.creation.icosphere(1, 50.0)
    for bad in (math.inf, math.nan, "all", [5], 3):
        with pytest.raises(InputError, match=r"max_faces must be a number of faces, at least 4 \(or None: never"):
            page_data([s], max_faces=bad)
    assert page_data([s], max_faces=None)["frames"][0]["nf"] == 80
    data = page_data([s, s], (f"t = {t}" for t in (0, 1)))
    assert data["labels"] == ["t = 0", "t = 1"]


def test_save_mesh_page_refuses_a_picture_name(tmp_path):
    """save_mesh_page('view.png', ...) wrote the page's HTML under a PNG name (an image viewer
    cannot open it, a browser shows it as text or a broken image), where save_png refuses 'a.jpg'
    and save_gif 'a.png'. It is an InputError naming the file and the name to give; an earlier file
    of that name is left as it was, and other names (.html, .htm, none) are written."""
    import pytest

    from voxface.errors import InputError
    from voxface.html import save_mesh_page

    s = trimesh.creation.icosphere(1, 50.0)
    earlier = tmp_path / "view.png"
    earlier.write_bytes(b"\x89PNG earlier")
    with pytest.raises(InputError, match=r"view\.png: named as another picture format, but HTML is written; "
                                         r"name the file view\.html"):
        save_mesh_page(earlier, [s])
    assert earlier.read_bytes() == b"\x89PNG earlier"
    for name in ("page.html", "page.htm", "page"):
        assert save_mesh_page(tmp_path / name, [s]).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_image_grid_refuses_an_image_without_pixels_and_bad_counts_in_one_line():
    """image_grid([np.zeros((0, 0, 3))]) drew a cell of padding alone: a blank picture without a
    word (save_png and save_gif refuse such an image); ncols or pad NaN, infinite or a word were
    bare int() errors naming neither. All are InputErrors naming what is wrong."""
    import math

    import numpy as np
    import pytest

    from voxface.errors import InputError
    from voxface.viz import image_grid

    img = np.full((4, 6, 3), 90, np.uint8)
    with pytest.raises(InputError, match=r"image_grid: image 1 has no pixels \(shape \(0, 0, 3\)\)"):
        image_grid([img, np.zeros((0, 0, 3), np.uint8)])
    for kw in ({"ncols": math.nan}, {"ncols": math.inf}, {"pad": "x"}, {"ncols": 0}, {"pad": -1}):
        with pytest.raises(InputError, match=r"image_grid needs ncols of at least 1 and pad of at least 0, got "):
            image_grid([img], **kw)
    out = image_grid([img, img], ncols=2, pad=1)
    assert out.shape == (6, 15, 3) and (out[1:5, 1:7] == 90).all() and (out[0] == 255).all()


def test_shared_framing_refuses_a_margin_that_is_not_a_positive_number():
    """shared_framing(meshes, margin=0) returned radius 0 (-1: -50, NaN: nan) without a word, and
    render_sequence(framing=...) refused it as a bad framing, never naming margin; a word was a bare
    float() error. margin is an InputError naming it; a good margin scales the radius."""
    import math

    import pytest

    from voxface.errors import InputError
    from voxface.viz import shared_framing

    s = trimesh.creation.icosphere(1, 50.0)
    for bad in (0, -1, math.nan, math.inf, "x"):
        with pytest.raises(InputError, match=r"margin must be a positive finite number \(the factor on the radius\), "
                                             r"got "):
            shared_framing([s], margin=bad)
    center, radius = shared_framing([s], margin=1.5)
    assert center.tolist() == [0.0, 0.0, 0.0] and radius == pytest.approx(75.0)


def _page_mesh(data: dict, i: int = 0) -> trimesh.Trimesh:
    import base64

    import numpy as np

    fr = data["frames"][i]
    q = np.frombuffer(base64.b64decode(fr["v"]), "<i2").reshape(-1, 3)
    f = np.frombuffer(base64.b64decode(fr["f"]), "<u2" if fr["fw"] == 2 else "<u4").reshape(-1, 3)
    return trimesh.Trimesh(np.asarray(data["center"]) + q * (data["radius"] / 32767), f, process=False)


def test_duplicate_reversed_and_degenerate_faces_do_not_spoil_the_pages_decimation():
    """open3d's decimation, asked for 1,000 faces of a face mask (a 10,176-face cap) that also held
    2,000 of its faces twice, kept 4,116 faces, lost a third of the area and moved half the cap up
    to 12 mm off (bounds x -53.5..26.3, z to 62.1); with 3,000 faces naming a vertex twice it lost a
    third of the area; a double-sided mesh (every face and its reversed twin) was not decimated at
    all (20,352 faces on a page asked for 1,000). Such faces add nothing to the page (open meshes are
    drawn double-sided), so they are left out before decimating: each page mesh is the cap's shape,
    at the faces asked for."""
    import numpy as np

    from voxface.html import page_data

    s = trimesh.creation.icosphere(5, 50.0)
    cap = s.faces[s.triangles_center[:, 2] > 0]
    area = trimesh.Trimesh(s.vertices, cap, process=False).area
    degenerate = np.stack([cap[:, 0], cap[:, 0], cap[:, 1]], axis=1)[:3000]
    variants = [np.concatenate([cap, cap[:2000]]), np.concatenate([cap, cap[:, ::-1]]),
                np.concatenate([cap, degenerate])]
    data = page_data([(s.vertices, f) for f in variants], max_faces=1000)
    for i, f in enumerate(variants):
        m = _page_mesh(data, i)
        assert data["frames"][i]["of"] == len(f) and 950 <= len(m.faces) <= 1000
        assert abs(m.area - area) < 0.01 * area
        assert np.abs(m.bounds - [[-50, -50, 0], [50, 50, 50]]).max() < 0.5
    # a closed sphere made double-sided is decimated as the closed sphere it draws: culled, outward
    both = page_data([(s.vertices, np.concatenate([s.faces, s.faces[:, ::-1]]))], max_faces=1000)
    m = _page_mesh(both)
    assert both["frames"][0]["cull"] and len(m.faces) <= 1000 and m.volume > 0
    # a mesh without such faces is decimated as before (the page of test_html is unchanged)
    assert page_data([(s.vertices, cap)], max_faces=1000)["frames"][0]["nf"] == 1000

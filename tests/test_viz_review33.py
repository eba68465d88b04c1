"""voxface.viz and voxface.html, review 33: memory of picture and page outputs for many faces."""

from __future__ import annotations

import gc
import io
import types
import weakref

import numpy as np
import pytest
from PIL import Image

import voxface.viz as viz
from voxface.errors import InputError
from voxface.viz import save_gif


def _gif_bytes_before_review33(frames, fps=12.0, loop=0) -> bytes:
    """save_gif's GIF as it was written before review 33 (every frame held as RGB, then as a PIL
    RGB image, then quantised by PIL): the reference the streamed writer must match byte for byte."""
    arrays = [viz._rgb_uint8(f) for f in frames]
    H, W = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
    for i, a in enumerate(arrays):
        if a.shape[:2] != (H, W):
            dh, dw = H - a.shape[0], W - a.shape[1]
            arrays[i] = np.pad(a, ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)), mode="edge")
    ims = [viz._pil(a) for a in arrays]
    buf = io.BytesIO()
    step = max(20.0, 1000 / float(fps))
    ends = [10 * round((i + 1) * step / 10) for i in range(len(ims))]
    durations = [b - a for a, b in zip([0, *ends], ends)]
    opts = {} if loop is None else {"loop": int(loop)}
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=durations, **opts)
    return buf.getvalue()


def _clay(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A shaded disc on white that moves with ``i``: many colours, as a render has."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy, r = w / 2 + 6 * np.cos(i), h / 2, 0.35 * min(h, w)
    d = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
    img = np.full((h, w, 3), 255, np.uint8)
    shade = np.sqrt(np.clip(1 - d, 0, 1)) * (0.6 + 0.4 * (xx - cx) / r)
    img[d < 1] = np.clip(shade[d < 1, None] * [217, 178, 153] + 30, 0, 255).astype(np.uint8)
    return img


def _cases():
    same = [_clay(i) for i in range(6)]
    rng = np.random.default_rng(0)
    return {
        "list": (same, {}),
        "tuple, fps 8, play once": (tuple(same), {"fps": 8.0, "loop": None}),
        "one frame": (same[:1], {"loop": 3}),
        "repeated frames (durations merged)": ([same[0], same[0], same[1], same[1], same[1]], {"fps": 6.0}),
        "sizes differ": ([_clay(0, 40, 50), _clay(1), _clay(2, 30, 64), _clay(3, 48, 20)], {}),
        "float, grey, RGBA, bool, PIL": ([same[0] / 255.0, same[1][..., 0],
                                          np.dstack([same[2], rng.integers(0, 256, (48, 64, 1), dtype=np.uint8)]),
                                          same[3][..., 1] > 128, Image.fromarray(same[4])], {"fps": 60.0}),
        "noise (a full palette)": ([rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)], {}),
    }


@pytest.mark.parametrize(("case", "as_generator"), [(c, g) for c in _cases() for g in (False, True)
                                                   if not (g and c == "sizes differ")])  # see below
def test_save_gif_streams_frames_and_writes_the_same_bytes(tmp_path, case, as_generator):
    """save_gif held every frame three times at once (the RGB arrays, PIL's RGB copies at 4 bytes
    a pixel, the encoder's quantised frames: ~3 GB for ``voxface sample --size 160 -n 1024``).
    Frames are now converted one at a time (a generator's quantised as they come): the file is
    the same, byte for byte, for a list, a tuple, or (frames of one size) a generator."""
    frames, kw = _cases()[case]
    want = _gif_bytes_before_review33(frames, **kw)
    src = (f for f in frames) if as_generator else frames
    assert save_gif(src, tmp_path / "a.gif", **kw).read_bytes() == want


def test_save_gif_takes_a_stack_of_frames_as_it_took_it(tmp_path):
    stack = np.stack([_clay(i) for i in range(4)])  # (T, H, W, 3): iterated as before
    assert save_gif(stack, tmp_path / "a.gif").read_bytes() == _gif_bytes_before_review33(list(stack))


def _count_while_encoding(monkeypatch):
    """Patch viz so that, when the encoder first writes (every frame taken by then), the PIL RGB
    images made by Image.fromarray that are still alive are counted into the returned list."""
    made: list = []
    alive_at_write: list = []
    real_fromarray = Image.fromarray

    def fromarray(a, *args, **kwargs):
        im = real_fromarray(a, *args, **kwargs)
        if im.mode == "RGB":
            made.append(weakref.ref(im))
        return im

    class Buffer(io.BytesIO):
        def write(self, b):
            if not alive_at_write:
                gc.collect()
                alive_at_write.append(sum(r() is not None for r in made))
            return super().write(b)

    monkeypatch.setattr(Image, "fromarray", fromarray)
    monkeypatch.setattr(viz, "io", types.SimpleNamespace(BytesIO=Buffer))
    return made, alive_at_write


def test_save_gif_does_not_hold_every_frame_in_full_colour(tmp_path, monkeypatch):
    """A list of 8 frames: all 8 were PIL RGB copies (4 bytes a pixel) while PIL encoded; now at
    most the first and the last taken are."""
    frames = [_clay(i) for i in range(8)]
    want = _gif_bytes_before_review33(frames)
    made, alive = _count_while_encoding(monkeypatch)
    assert save_gif(frames, tmp_path / "a.gif").read_bytes() == want
    assert len(made) == 8 and alive[0] <= 2, f"{alive[0]} of 8 frames held in full colour"


def test_save_gif_lets_a_generators_frames_go(tmp_path, monkeypatch):
    """A generator's frames were all kept as arrays (and as PIL RGB copies); now each is quantised
    as it comes and let go: no frame in full colour, no array, is held while PIL encodes."""
    arrays: list = []

    def frames():
        for i in range(8):
            a = _clay(i)
            arrays.append(weakref.ref(a))
            yield a

    made, alive = _count_while_encoding(monkeypatch)
    real_write = viz.io.BytesIO.write
    arrays_alive: list = []

    def write(self, b):
        if not arrays_alive:
            gc.collect()
            arrays_alive.append(sum(r() is not None for r in arrays))
        return real_write(self, b)

    monkeypatch.setattr(viz.io.BytesIO, "write", write)
    save_gif(frames(), tmp_path / "a.gif")
    assert len(arrays) == 8 and arrays_alive == [0] and alive[0] == 0


def test_a_generators_frames_of_different_sizes_are_centred_as_a_lists(tmp_path):
    """Frames from a generator cannot be read twice: one smaller than a later one is padded after
    it is quantised, with its quantised edge colours. The picture is the list's (colours within
    the quantisation's error)."""
    frames = [_clay(0, 40, 50), _clay(1), _clay(2, 30, 64), _clay(3, 48, 20)]
    decoded = []
    for name, src in (("list.gif", frames), ("gen.gif", (f for f in frames))):
        with Image.open(save_gif(src, tmp_path / name)) as gif:
            assert gif.size == (64, 48) and gif.n_frames == 4
            got = []
            for i in range(4):
                gif.seek(i)
                got.append(np.asarray(gif.convert("RGB")).astype(int))
            decoded.append(got)
    for a, b in zip(*decoded):
        assert np.abs(a - b).max() <= 12 and np.abs(a - b).mean() < 1


def test_save_gif_errors_for_generators_as_for_lists(tmp_path):
    with pytest.raises(InputError, match="save_gif needs at least one frame"):
        save_gif(iter(()), tmp_path / "a.gif")
    with pytest.raises(InputError, match=r"save_gif: frame 1 has no pixels \(shape \(0, 4, 3\)\)"):
        save_gif((f for f in [_clay(0), np.zeros((0, 4, 3), np.uint8)]), tmp_path / "a.gif")
    with pytest.raises(InputError, match="float images must hold values in"):
        save_gif((f for f in [_clay(0), np.full((4, 4, 3), 7.0)]), tmp_path / "a.gif")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# voxface.html: mesh pages of many meshes

def _closed_outward_before_review33(v, f):
    """html._closed_outward as it was (through a trimesh.Trimesh): the reference."""
    import trimesh

    m = trimesh.Trimesh(v, f, process=False)
    if not (m.is_watertight and m.is_winding_consistent):
        return f, False
    labels = trimesh.graph.connected_component_labels(m.face_adjacency, node_count=len(f))
    tri = v[f]
    volume6 = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    flip = (np.bincount(labels, weights=volume6) < 0)[labels]
    if not flip.any():
        return f, True
    f = f.copy()
    f[flip] = f[flip][:, ::-1]
    return f, True


def _page_meshes():
    import trimesh

    ball = trimesh.creation.icosphere(3, 40.0)
    v, f = np.asarray(ball.vertices), np.asarray(ball.faces)
    inside_out = (v + [100.0, 0, 0], f[:, ::-1].copy())
    shells = (np.vstack([v, 0.5 * v]), np.vstack([f, f + len(v)]))  # a cavity wound outward: one inside-out shell
    cap = (v, f[v[f][:, :, 2].mean(1) > 0])  # open
    mixed = (v, np.vstack([f[:10, ::-1], f[10:]]))  # closed, winding inconsistent
    fin = (np.vstack([v, [[0, 0, 90.0]]]), np.vstack([f, [[f[0, 0], f[0, 1], len(v)]]]))  # an edge of 3 faces
    return [ball, inside_out, shells, cap, mixed, fin]


def test_closed_outward_computed_on_arrays_is_as_through_trimesh():
    from voxface.html import _closed_outward

    for i, m in enumerate(_page_meshes()):
        v, f = (np.asarray(m.vertices), np.asarray(m.faces)) if hasattr(m, "faces") else m
        f = np.asarray(f, np.int64)
        got, want = _closed_outward(v, f), _closed_outward_before_review33(v, f)
        assert got[1] == want[1] and np.array_equal(got[0], want[0]), i


def test_mesh_page_is_page_data_as_before_and_save_writes_it_a_frame_at_a_time(tmp_path, monkeypatch):
    """mesh_page built every mesh's arrays, base64 strings, the JSON payload and the page text at
    once, and save_mesh_page its bytes too (~2 MB a 20k-face mesh, with the trimesh garbage
    below). The page is now made a frame at a time, and save_mesh_page writes it so: the same
    bytes, the payload page_data's JSON."""
    import json

    import voxface.html as H

    meshes, labels = _page_meshes(), ["a", "<b>", "c", "d", "e", "é\udcff"]
    kw = {"title": "t\udcff", "description": "<many>", "initial": 2, "yaw": 30.0, "pitch": 100.0,
          "color": (0.5, 0.6, 0.7)}
    page = H.mesh_page(meshes, labels, **kw)
    pre, rest = page.split('<script type="application/json" id="voxface-data">')
    payload, post = rest.split("</script>", 1)
    data = H.page_data(meshes, labels, **{k: v for k, v in kw.items() if k not in ("title", "description")})
    assert payload == json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    assert list(data) == ["labels", "center", "radius", "frames", "color", "initial", "yaw", "pitch"]
    assert [fr["cull"] for fr in data["frames"]] == [True, True, True, False, False, False]
    assert 'value="2"' in pre and 'max="5"' in pre and "<title>t\ufffd</title>" in pre

    writes: list[int] = []
    real_open = H.atomic_open

    class Counting:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            writes.append(len(b))
            return self.f.write(b)

    import contextlib

    @contextlib.contextmanager
    def counting_open(path):
        with real_open(path) as f:
            yield Counting(f)

    monkeypatch.setattr(H, "atomic_open", counting_open)
    out = H.save_mesh_page(tmp_path / "p.html", meshes, labels, **kw)
    body = out.read_bytes()
    assert body == page.encode("utf-8", "replace")
    assert len(writes) >= len(meshes) + 2 and max(writes) < len(body) / 2


def test_a_page_of_many_meshes_leaves_no_trimesh_garbage(tmp_path):
    """Each mesh's trimesh.Trimesh made to find whether it is closed (a reference cycle, with its
    caches: over 1 MB a 20k-face mesh) waited for Python's cycle collector: pages of many meshes
    held them all (save_mesh_page of 128 20k-face meshes: peak RSS +258 MB, now +66 MB)."""
    import gc

    import trimesh

    from voxface.html import save_mesh_page

    meshes = [trimesh.creation.icosphere(2, 40.0 + i) for i in range(6)]
    for m in meshes:
        m.is_watertight  # noqa: B018 (the caller's own caches, made before)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        before = sum(isinstance(o, trimesh.Trimesh) for o in gc.get_objects())
        save_mesh_page(tmp_path / "p.html", meshes)
        after = sum(isinstance(o, trimesh.Trimesh) for o in gc.get_objects())
    finally:
        if was:
            gc.enable()
    assert after == before, f"{after - before} trimesh objects left for the cycle collector"


def test_save_mesh_page_checks_every_mesh_before_it_writes(tmp_path):
    import trimesh

    from voxface.errors import VoxfaceError
    from voxface.html import save_mesh_page

    bad = trimesh.creation.icosphere(1, 10.0)
    bad.vertices[0] = np.nan
    with pytest.raises(VoxfaceError, match="cannot show mesh 2: 1 of its"):
        save_mesh_page(tmp_path / "p.html", [trimesh.creation.icosphere(1, 10.0)] * 2 + [bad])
    with pytest.raises(TypeError):
        save_mesh_page(tmp_path / "p.html", [bad], colour=(1, 0, 0))
    assert not list(tmp_path.iterdir())
    assert save_mesh_page(tmp_path / "q.html", [trimesh.creation.icosphere(1, 10.0)]).stat().st_size > 1000

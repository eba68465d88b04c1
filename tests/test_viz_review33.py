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

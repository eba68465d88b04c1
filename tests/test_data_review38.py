"""Review 38 of the data command line and its library entry points (data preview, cache, export)."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from PIL import Image

from .conftest import run_cli


def test_data_preview_keeps_a_picture_that_is_no_preview(tmp_path, toy_root, monkeypatch, capsys) -> None:
    """``data preview -o photo.png`` (or the default preview.png beside someone's picture) replaced the
    picture without a word, where evaluate, bench, demo and the latent commands keep a file they did not
    write. A picture that is not a preview grid is refused in one line, before ICT-FaceKit is read; an
    earlier preview (and a file that is no picture, a failed write's) is replaced as before."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((264, 264, 3), 90, np.uint8)).save(photo)  # a preview's size, not its white padding
    before = photo.read_bytes()
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 1, "-o", photo,
                                "--ict-root", tmp_path / "no-ict")  # refused before the ICT folder is looked at
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0] == (
        f"error: {photo}: exists and is not a `voxface data preview` grid; it is kept: name another file (-o), or "
        "remove this one first"), err
    assert photo.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]
    # the meshes' twin too: `-o g.png` beside someone's g_meshes.png
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "g_meshes.png")
    code, _, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 1, "-o", tmp_path / "g.png",
                           "--ict-root", toy_root)
    assert code == 1 and f"{tmp_path / 'g_meshes.png'}: exists and is not" in err and not (tmp_path / "g.png").exists()
    # an earlier preview is replaced, of another size too
    out = tmp_path / "p.png"
    for n in (1, 5, 2):
        code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", n, "-o", out, "--ict-root", toy_root)
        assert code == 0 and stdout.strip() == f"wrote {out} and {tmp_path / 'p_meshes.png'}", err
        side = 260 * int(np.ceil(np.sqrt(n))) + 4
        assert Image.open(out).size[0] == Image.open(tmp_path / "p_meshes.png").size[0] == side


def test_data_cache_refuses_a_count_that_is_not_a_multiple_of_4(tmp_path, toy_root, cache_env, monkeypatch,
                                                                 capsys) -> None:
    """``data cache -n 5`` wrote 4 samples (meta.json's n 4) and said 'cache ready' without a word, the
    help's 'a multiple of 4 is kept' the only hint: one line naming the two counts to give, nothing written."""
    out = tmp_path / "c"
    for args, option, value in ((("-n", 5, "--num-val", 4), "-n/--num", 5), (("-n", 4, "--num-val", 6), "--num-val", 6)):
        code, stdout, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, *args, "--resolution", 32,
                                    "--image-size", 16, "--workers", 0, "--ict-root", toy_root)
        lines = err.strip().splitlines()
        low = value - value % 4
        assert code == 1 and len(lines) == 1 and lines[0] == (
            f"error: {option} must be a multiple of 4 (samples are written in blocks of 4), not {value}: give {low} "
            f"or {low + 4}"), err
        assert "cache ready" not in stdout and not out.exists()


def test_sigterm_stops_data_preview_in_one_line(tmp_path, toy_root, monkeypatch, capsys) -> None:
    """SIGTERM (a job's time limit) killed ``data preview`` without the line every other command prints;
    it stops as Ctrl-C does: 'terminated; nothing written', exit 143, no file and no temporary left."""
    import os

    import voxface.viz

    real, calls = voxface.viz.render_overlay, []

    def render_overlay(*args, **kwargs):  # the signal lands while the second sample is rendered
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    def unhandled(signum, frame):  # a SIGTERM the command leaves alone: a failure, not the end of pytest
        raise AssertionError("SIGTERM reached the process's own handler")

    monkeypatch.setattr(voxface.viz, "render_overlay", render_overlay)
    out = tmp_path / "p.png"
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 3, "-o", out, "--ict-root", toy_root)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 143 and err.strip().splitlines()[-1] == f"error: terminated; nothing written to {out}", err
    assert not stdout and not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["ply", "sample"])
def test_an_export_failing_on_its_first_sample_leaves_no_empty_folder(tmp_path, toy_root, where,
                                                                      monkeypatch) -> None:
    """export_samples made its output folder (and missing parents) before the first sample; a failure of
    that sample (a full disk, Ctrl-C, an error in the sampler) left the empty folders behind. The folders it
    made are removed again when it fails before writing a whole sample; a folder that was there stays."""
    import errno

    import voxface.data.synthetic
    import voxface.mesh
    from voxface.data.export import export_samples
    from voxface.errors import DataError

    if where == "ply":
        def fail(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(voxface.mesh, "export_mesh", fail)
        expected = DataError
    else:
        def fail(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(voxface.data.synthetic.FaceSampler, "sample", fail)
        expected = KeyboardInterrupt
    out = tmp_path / "new" / "exp"
    with pytest.raises(expected):
        export_samples(out, 2, resolution=32, points=8, ict_root=str(toy_root), progress=False)
    assert not list(tmp_path.iterdir())
    (tmp_path / "kept").mkdir()
    with pytest.raises(expected):
        export_samples(tmp_path / "kept", 2, resolution=32, points=8, ict_root=str(toy_root), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and not list((tmp_path / "kept").iterdir())


def test_a_cache_chunk_holds_its_rows_once_while_it_is_written(tmp_path, monkeypatch) -> None:
    """_write_chunk kept each sample's rows in lists and wrote np.stack of them: every array was held
    twice while stacked (at 256^3 a chunk's bit-packed grids are 1 GB, and the copy 0.5 GB more a
    worker). The rows go into the chunk's arrays as they come: the peak is the rows once, and the files
    are byte for byte what np.save of the stacked rows wrote."""
    import tracemalloc

    import voxface.mesh  # noqa: F401  (imported before, not counted: _write_chunk imports it)
    from voxface.config import FrameConfig
    from voxface.data import cache

    R, S, n = 64, 8, 128

    class Sampler:  # a sample's arrays as FaceSampler.sample gives them, without rendering
        def sample(self, i, resolution, frame, swap=True):
            rng = np.random.default_rng(i)
            s = {"image": rng.random((3, S, S), dtype=np.float32), "mask": np.ones((S, S), np.uint8),
                 "occ": rng.integers(0, 2, (R, R, R), np.uint8), "occ_swap": rng.integers(0, 2, (R, R, R), np.uint8),
                 "identity": np.int64(i // 2), "index": np.int64(i)}
            s.update({k: rng.random(3, dtype=np.float32) for k in cache._FLOAT_KEYS})
            return s

    monkeypatch.setattr(cache, "_worker", {"sampler": Sampler()})
    frame = {"side_mm": FrameConfig().side_mm, "center_mm": list(FrameConfig().center_mm)}
    tracemalloc.start()
    try:
        cache._write_chunk((str(tmp_path), 0, 0, n, R, frame))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grids = 2 * n * R**3 // 8  # occ and occ_swap, bit-packed: 8 MB here
    # the rows once, one sample's arrays and imports' bookkeeping (stacked: 1.4 times the rows)
    assert peak < 1.3 * grids, (peak, grids)
    sampler = Sampler()
    for k in cache._KEYS:
        rows = []
        for i in range(n):
            s = sampler.sample(i, R, None)
            s["image"] = (s["image"].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
            s["occ"], s["occ_swap"] = cache.pack_occupancy(s["occ"]), cache.pack_occupancy(s["occ_swap"])
            rows.append(s[k])
        with open(tmp_path / f"{k}.npy", "wb") as fh:
            np.save(fh, np.stack(rows))
        assert (tmp_path / f"{k}.npy").read_bytes() == (tmp_path / "chunk_000000" / f"{k}.npy").read_bytes(), k


def test_data_export_stopped_in_its_first_sample_says_nothing_was_written(tmp_path, toy_root, monkeypatch,
                                                                         capsys) -> None:
    """Stopped in its first sample, the export removes the folder it made; the command said 'the complete
    samples in <out> are kept: run the same command again', of a folder no longer there."""
    import voxface.data.synthetic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(voxface.data.synthetic.FaceSampler, "sample", interrupted)
    out = tmp_path / "exp"
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, "--resolution", 32,
                           "--points", 8, "--ict-root", toy_root)
    assert code == 130 and err.strip().splitlines()[-1] == f"error: interrupted; nothing written to {out}", err
    assert not list(tmp_path.iterdir())

"""Review 33 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import run_cli


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_rendering_goes_in_chunks_with_one_framing_and_leaves_nothing_on_the_meshes(bundled, monkeypatch):
    """``voxface sample -n 1024`` peaked near 8 GB: render_sequence cached every mesh's normals and
    triangles (3 MB a face) on the faces, which held them to the end (5.2 MB a face at --size 32).
    The latent commands render RENDER_CHUNK copies at a time under the framing of the whole
    sequence: the same pictures, and the faces' meshes carry no derived arrays afterwards."""
    import voxface.viz
    from voxface.cli import _latent
    from voxface.latent import sample

    recs = _latent._decode(bundled, sample(bundled, 5, seed=1), 0.5, {"resolution": None, "upsample": "decoder"})
    views = [(0.0, 0.0), (30.0, 10.0)]
    reference = voxface.viz.render_sequence(recs, views, 32)  # one call over all: the framing of all
    for r in recs:
        r.mesh._cache.clear()
    real, calls = voxface.viz.render_sequence, []

    def spy(meshes, *args, **kwargs):
        calls.append(len(meshes))
        return real(meshes, *args, **kwargs)

    monkeypatch.setattr(voxface.viz, "render_sequence", spy)
    monkeypatch.setattr(_latent, "RENDER_CHUNK", 2)
    images = _latent._render(recs, views, 32)
    assert calls == [2, 2, 1]
    assert len(images) == 5 and all(len(v) == 2 for v in images)
    for got, ref in zip(images, reference):
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    assert all(not r.mesh._cache.cache for r in recs)  # no normals, triangles, edges left on them
    entry = _latent._mesh_entry("x.ply", recs[0])
    assert entry == {"file": "x.ply", "vertices": len(recs[0].mesh.vertices), "faces": len(recs[0].mesh.faces),
                     "watertight": True}
    assert not recs[0].mesh._cache.cache


@pytest.mark.parametrize("command", ["sample", "interpolate"])
def test_cli_outputs_are_the_same_bytes_whatever_the_render_chunk(bundled, tmp_path, monkeypatch, capsys, command):
    """Chunked rendering changes no byte of any output: meshes, grid/strip, GIF, page, codes and
    manifest are those of one chunk holding every face."""
    from voxface.cli import _latent
    from voxface.latent import sample

    codes = sample(bundled, 2, seed=4, temperature=0.7)
    for i in range(2):
        np.savez(tmp_path / f"{i}.npz", z_id=codes.z_id[i].numpy(), z_exp=codes.z_exp[i].numpy())
    args = {"sample": ["sample", "-n", 5, "--seed", 2],
            "interpolate": ["interpolate", tmp_path / "0.npz", tmp_path / "1.npz", "--steps", 5]}[command]
    snapshots = []
    for chunk in (1000, 2):
        monkeypatch.setattr(_latent, "RENDER_CHUNK", chunk)
        out = tmp_path / f"out{chunk}"
        code, _, err = run_cli(monkeypatch, capsys, *args, "-o", out, "--size", 32)
        assert code == 0, err
        snapshots.append(_snapshot(out))
    assert len(snapshots[0]) >= 9
    assert snapshots[0].keys() == snapshots[1].keys()
    assert [k for k in snapshots[0] if snapshots[0][k] != snapshots[1][k]] == []


def test_walk_names_the_offset_given_when_it_is_too_large(bundled, tmp_path, monkeypatch, capsys):
    """``voxface walk --values=1e300`` said '--values: values up to inf along this direction': the
    offsets went through float32 before the message named the largest. It names 1e+300."""
    from voxface.errors import InputError
    from voxface.latent import mean_latents, principal_directions, walk

    d = principal_directions(bundled, "expression", 1)[0]
    with pytest.raises(InputError, match=r"^values up to 1e\+300 along this direction: the codes would exceed"):
        walk(bundled, mean_latents(bundled), d, [0.0, -1e300])
    code, _, err = run_cli(monkeypatch, capsys, "walk", "-o", tmp_path / "w", "--values=1,1e300")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: --values: values up to 1e+300 along this direction")


def test_sample_hands_the_turntable_to_the_gif_one_grid_at_a_time(bundled, tmp_path, monkeypatch, capsys):
    """``sample``'s twelve turntable grids were built into one list before the GIF was written
    (78 MB a grid for ``-n 1024 --size 160``); they now reach save_gif one at a time, no grid
    built before the previous one was taken, and grid.png is still the 30-degree frame."""
    from PIL import Image

    import voxface.viz

    real = voxface.viz.save_gif
    seen: list = []

    def recording(frames, path, **kw):
        assert not isinstance(frames, (list, tuple))

        def watched():
            for f in frames:
                seen.append(np.array(f))
                yield f

        return real(watched(), path, **kw)

    monkeypatch.setattr(voxface.viz, "save_gif", recording)
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 3, "--seed", 1, "-o", tmp_path / "s", "--size", 32)
    assert code == 0, err
    assert len(seen) == 12
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s" / "grid.png").convert("RGB")), seen[1])
    with Image.open(tmp_path / "s" / "samples.gif") as gif:
        assert gif.n_frames == 12

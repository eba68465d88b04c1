"""Review 33 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import run_cli


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


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

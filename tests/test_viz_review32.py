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

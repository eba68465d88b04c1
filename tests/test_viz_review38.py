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

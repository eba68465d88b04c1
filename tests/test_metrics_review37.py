"""Review 37: voxface.metrics and voxface.evaluate against the GUIDE's definitions (Occupancy Networks'
im2mesh/eval.py: Chamfer-L1 = 0.5 (accuracy + completeness), normal consistency = mean |n . n'|),
with analytic answers, and the defects found."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from voxface.metrics import match_surfaces, matched_metrics, mesh_metrics


def sphere(r: float, subdivisions: int = 5, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return trimesh.Trimesh(m.vertices * r + np.asarray(center), m.faces, process=False)


def test_shifted_spheres_score_the_analytic_chamfer_f_score_and_normal_consistency():
    """A sphere of radius r against itself moved d along x. A point r u of one lies |sqrt(r^2 + d^2 -
    2 r d u_x) - r| from the other, u_x uniform on [-1, 1] (Archimedes): both directions have a mean
    distance of d / 2 (1.0000005 mm for r = 80, d = 2), P(dist <= 1 mm) = 1/2, and the normal
    consistency is the mean |cos| of the angle between the radii. Chamfer-L1 is the mean of both
    directions (not their sum), the dot taken as its absolute value."""
    r, d = 80.0, 2.0
    m = mesh_metrics(sphere(r, 6), sphere(r, 6, (d, 0.0, 0.0)), n=100_000, taus=(1.0, 2.5))
    t = np.linspace(-1.0, 1.0, 2_000_001)
    far = np.sqrt(r * r + d * d - 2 * r * d * t)
    dist = np.abs(far - r)
    # the nearest point of the other sphere lies along the ray from its centre: cos of the two radii
    cos = (r - d * t) / far
    assert m["accuracy"] == pytest.approx(dist.mean(), abs=0.01) and m["completeness"] == pytest.approx(d / 2, abs=0.01)
    assert m["chamfer_l1"] == pytest.approx(0.5 * (m["accuracy"] + m["completeness"]))
    assert m["chamfer_l1"] == pytest.approx(1.0, abs=0.01)  # the mean of both directions: the sum would be 2
    assert m["chamfer_l2"] == pytest.approx((dist**2).mean(), rel=0.02)
    assert m["fscore@1.0"] == pytest.approx((dist <= 1.0).mean(), abs=0.01) and m["fscore@2.5"] == 1.0
    assert m["normal_consistency"] == pytest.approx(np.abs(cos).mean(), abs=2e-4)
    # concentric spheres r and r + 3: Chamfer-L1 |r1 - r2| = 3 (facet sag aside), every normal agrees
    c = mesh_metrics(sphere(r, 6), sphere(r + 3.0, 6), n=20_000, taus=(2.9, 3.1))
    assert c["chamfer_l1"] == pytest.approx(3.0, abs=0.01) and c["normal_consistency"] > 0.9999
    assert c["fscore@2.9"] == 0.0 and c["fscore@3.1"] == 1.0
    # inverted normals (a mesh wound inside out) change nothing: |n . n'|
    inside_out = sphere(r + 3.0, 6)
    inside_out.faces = inside_out.faces[:, ::-1]
    assert mesh_metrics(sphere(r, 6), inside_out, n=20_000, taus=(2.9, 3.1)) == pytest.approx(c, abs=1e-6)


def with_zero_area_triangles(mesh: trimesh.Trimesh, spikes: int = 0) -> trimesh.Trimesh:
    """``mesh`` with, along each of its edges, a triangle repeating a vertex (a, b, a) and one through the
    edge's midpoint (a, b, (a + b) / 2: in a line up to rounding), and ``spikes`` zero-area triangles
    (a, p, p) sticking out 20% of a vertex's radius: what scans often hold. The surface is the same."""
    v, f, e = np.asarray(mesh.vertices), np.asarray(mesh.faces), mesh.edges_unique
    mid = len(v) + np.arange(len(e))
    tip = len(v) + len(e) + np.arange(spikes)
    faces = [f, np.stack([e[:, 0], e[:, 1], e[:, 0]], 1), np.stack([e[:, 0], e[:, 1], mid], 1),
             np.stack([np.arange(spikes), tip, tip], 1)]
    verts = np.concatenate([v, (v[e[:, 0]] + v[e[:, 1]]) / 2, 1.2 * v[:spikes]])
    return trimesh.Trimesh(verts, np.concatenate(faces), process=False)


def test_triangles_without_area_are_no_surface_to_match_against():
    """A ground truth holding zero-area triangles along its edges (a repeated vertex, three in a line)
    is the same surface, and scores the same: the points whose nearest point lay on such a triangle
    took its normal (zero, or rounding noise), so normal consistency fell from 0.9961 to 0.9834 on this
    sphere; and a zero-area spike (a line off the surface, where nothing is ever sampled) was matched
    as surface, a distance of 0 where the sphere is 5 mm away."""
    gt = sphere(80.0, 2)
    pred = sphere(85.0, 5)
    clean = mesh_metrics(pred, gt, n=50_000)
    dirty_gt = with_zero_area_triangles(gt)
    dirty = mesh_metrics(pred, dirty_gt, n=50_000)
    assert dirty["normal_consistency"] == pytest.approx(clean["normal_consistency"], abs=1e-5)
    assert dirty["chamfer_l1"] == pytest.approx(clean["chamfer_l1"], abs=1e-5)
    # either side: the prediction holding them
    dirty_pred = mesh_metrics(with_zero_area_triangles(sphere(85.0, 3)), gt, n=50_000)
    assert dirty_pred == pytest.approx(mesh_metrics(sphere(85.0, 3), gt, n=50_000), abs=1e-5)

    match = match_surfaces(pred, with_zero_area_triangles(gt, spikes=12), n=50_000)
    assert match.pred_distance.min() > 4.5  # the sphere is 5 mm away (less the facets' sag); the spikes are not it
    assert match.pred_nearest_gt_face.max() < len(gt.faces)  # a triangle with area, with its normal
    region = np.zeros(match.gt_faces, bool)
    region[: len(gt.faces) // 2] = True  # a region of the ground truth's triangles still selects as it did
    assert np.isfinite(matched_metrics(match, gt_face_mask=region)["normal_consistency"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])  # 1e39: finite, but past float32, the scene's type
def test_closest_points_of_a_mesh_with_a_vertex_that_is_not_finite_is_one_line(bad):
    """closest_points / surface_scene built open3d's scene from any vertices: a NaN corner's triangles were
    left out without a word (the distances to the rest), and a mesh all NaN gave made-up distances and
    triangle index 2^32 - 1 for every point. It is refused as sample_surface refuses it."""
    from voxface.errors import InputError
    from voxface.metrics import closest_points, surface_scene

    mesh = sphere(10.0, 2)
    mesh.vertices[3] = bad
    points = np.random.default_rng(0).normal(size=(50, 3))
    for call in (lambda: closest_points(mesh, points), lambda: surface_scene(mesh)):
        with pytest.raises(InputError, match=r"NaN or infinite values \(1 of the 162 its faces use\)"):
            call()
    # a vertex no face uses is no part of the surface
    free = trimesh.Trimesh(np.concatenate([sphere(10.0, 2).vertices, [[np.nan] * 3]]), mesh.faces, process=False)
    d, _ = closest_points(free, np.zeros((1, 3)))
    assert d[0] == pytest.approx(10.0, abs=0.5)

"""voxface.metrics against analytic answers (Occupancy Networks' definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from voxface.metrics import (closest_points, iou, match_surfaces, matched_metrics, mesh_metrics, sample_surface,
                             surface_metrics)


def sphere_points(r: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points exactly on a sphere of radius ``r`` about the origin, and their normals."""
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return r * d, d


def test_identical_point_sets_are_perfect():
    p, n = sphere_points(50.0, 5000, 0)
    m = surface_metrics(p, n, p, -n)  # normal consistency ignores orientation
    assert m["accuracy"] == m["completeness"] == m["chamfer_l1"] == m["chamfer_l2"] == 0.0
    assert m["normal_consistency"] == pytest.approx(1.0)
    for tau in ("1.0", "2.5"):  # the default taus
        assert m[f"fscore@{tau}"] == m[f"precision@{tau}"] == m[f"recall@{tau}"] == 1.0
    assert all(isinstance(v, float) for v in m.values())


def test_concentric_spheres_are_d_apart():
    r, d = 50.0, 2.0
    gt, gn = sphere_points(r, 40_000, 1)
    pred, pn = sphere_points(r + d, 40_000, 2)
    m = surface_metrics(pred, pn, gt, gn, taus=(1.0, 1.9, 2.2, 3.0))
    # every nearest sample is at least d away; sampling adds a little (spacing about 0.9 mm)
    for k in ("accuracy", "completeness", "chamfer_l1"):
        assert d <= m[k] < 1.05 * d
    assert m["chamfer_l2"] == pytest.approx(d**2, rel=0.1)
    assert m["normal_consistency"] > 0.999
    for tau in ("1.0", "1.9"):  # tau < d: nothing is within reach
        assert m[f"fscore@{tau}"] == m[f"precision@{tau}"] == m[f"recall@{tau}"] == 0.0
    assert m["fscore@3.0"] == 1.0
    assert 0.0 < m["fscore@2.2"] < 1.0


def test_normal_consistency_of_perpendicular_normals_is_zero():
    p, n = sphere_points(50.0, 2000, 3)
    perp = np.cross(n, [0.0, 0.0, 1.0])
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    assert surface_metrics(p, 3 * perp, p, n)["normal_consistency"] == pytest.approx(0.0, abs=1e-9)
    assert "normal_consistency" not in surface_metrics(p, None, p, n)


def test_region_metrics_ignore_errors_outside_the_region():
    r, d = 50.0, 2.0
    gt, gn = sphere_points(r, 20_000, 4)
    pred, pn = sphere_points(1.0, 20_000, 5)
    pred = pred * np.where(pred[:, 2:] > 0, r + d, r + 15.0)  # good front half, bad back half
    face = gt[:, 2] > 0.3 * r  # the region: the front cap
    taus = (1.0, 3.5)
    full = surface_metrics(pred, pn, gt, gn, taus)
    region = surface_metrics(pred, pn, gt, gn, taus, gt_mask=face)
    assert full["chamfer_l1"] > 5.0
    assert d <= region["accuracy"] < 1.1 * d
    assert d <= region["completeness"] < 1.1 * d
    assert region["normal_consistency"] > 0.99
    assert region["fscore@3.5"] > 0.999 and full["fscore@3.5"] < 0.6
    assert region["fscore@1.0"] == 0.0
    # an all-true mask is the unmasked metric
    assert surface_metrics(pred, pn, gt, gn, taus, gt_mask=np.ones(len(gt), bool)) == full
    with pytest.raises(ValueError, match="no ground-truth"):
        surface_metrics(pred, pn, gt, gn, gt_mask=np.zeros(len(gt), bool))
    with pytest.raises(ValueError, match="shape"):
        surface_metrics(pred, pn, gt, gn, gt_mask=face[:-1])


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    p, n = sphere_points(10.0, 500, 6)
    q, qn = sphere_points(11.0, 500, 7)
    ref = surface_metrics(p, n, q, qn)
    t = torch.from_numpy
    got = surface_metrics(t(p).float(), t(n), t(q), t(qn))
    assert got["chamfer_l1"] == pytest.approx(ref["chamfer_l1"], rel=1e-5)


def test_sample_surface_is_deterministic_and_on_the_surface():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=40.0)
    p1, n1 = sample_surface(mesh, 3000, seed=7)
    p2, n2 = sample_surface(mesh, 3000, seed=7)
    p3, _ = sample_surface(mesh, 3000, seed=8)
    assert p1.shape == n1.shape == (3000, 3) and p1.dtype == np.float64
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(n1, n2)
    assert not np.array_equal(p1, p3)
    radius = np.linalg.norm(p1, axis=1)
    assert np.all(radius <= 40.0 + 1e-9) and np.all(radius > 39.5)  # on the inscribed facets
    np.testing.assert_allclose(np.linalg.norm(n1, axis=1), 1.0)
    assert np.all(np.sum(n1 * p1, axis=1) > 0)  # outward


def test_point_clouds_of_one_surface_have_the_sampling_floor():
    """surface_metrics on two independent samples of one mesh: the nearest *sample* is on average
    0.5 / sqrt(rho) away (density rho), P(dist <= tau) = 1 - exp(-pi rho tau^2): the floor that
    mesh_metrics does not have."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=40.0)
    n = 20_000
    (p, pn), (q, qn) = sample_surface(mesh, n, 0), sample_surface(mesh, n, 1)
    m = surface_metrics(p, pn, q, qn)
    rho = n / mesh.area
    assert m["chamfer_l1"] == pytest.approx(0.5 / np.sqrt(rho), rel=0.05)
    assert m["fscore@1.0"] == pytest.approx(1 - np.exp(-np.pi * rho), abs=0.01)
    assert m["fscore@2.5"] > 0.999 and m["normal_consistency"] > 0.99


def test_mesh_metrics_match_points_to_the_other_surface_exactly():
    """Two samplings of one mesh score perfectly at any sample size; concentric spheres 2 mm apart
    score 2 mm (up to the facets' sag), whatever the number of points."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=40.0)
    for n in (2_000, 50_000):
        m = mesh_metrics(mesh, mesh, n=n)
        assert m["chamfer_l1"] < 1e-4 and m["fscore@1.0"] == 1.0 and m["normal_consistency"] > 0.9999
    outer = trimesh.creation.icosphere(subdivisions=4, radius=42.0)
    for n in (2_000, 50_000):
        m = mesh_metrics(outer, mesh, n=n, taus=(1.0, 1.9, 2.1))
        assert m["accuracy"] == pytest.approx(2.0, abs=0.02) and m["completeness"] == pytest.approx(2.0, abs=0.02)
        assert m["fscore@1.0"] == 0.0 and m["fscore@1.9"] < 0.05 and m["fscore@2.1"] == 1.0
        assert m["normal_consistency"] > 0.999
    # a Reconstruction (anything holding its .mesh) or (vertices, faces) scores as its mesh does
    from types import SimpleNamespace

    assert mesh_metrics(SimpleNamespace(mesh=outer), (mesh.vertices, mesh.faces), n=2_000) == mesh_metrics(
        outer, mesh, n=2_000)


def test_closest_points_are_on_the_surface_and_name_their_triangle():
    box = trimesh.creation.box(extents=(20.0, 10.0, 6.0))  # centred on the origin
    q = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 1.0], [15.0, 8.0, 0.0]])
    d, face = closest_points(box, q)
    np.testing.assert_allclose(d, [7.0, 2.0, np.hypot(5.0, 3.0)], atol=1e-5)  # above, inside, off a corner edge
    normals = box.face_normals[face]
    np.testing.assert_allclose(normals[0], [0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(normals[1], [0, 0, 1], atol=1e-9)
    with pytest.raises(ValueError, match="non-empty"):
        closest_points(box, np.zeros((0, 3)))


def test_matched_metrics_restrict_to_ground_truth_triangles():
    """A region of the truth's triangles: completeness over its points, accuracy over the predicted
    points whose nearest truth lies in it; errors elsewhere do not count."""
    gt = trimesh.creation.icosphere(subdivisions=4, radius=50.0)
    v = gt.vertices.copy()
    v *= np.where(v[:, 2:] > 0, 52.0 / 50.0, 65.0 / 50.0)  # the front 2 mm out, the back 15 mm
    pred = trimesh.Trimesh(v, gt.faces, process=False)
    front = gt.triangles_center[:, 2] > 0.3 * 50.0
    match = match_surfaces(pred, gt, 40_000)
    full = matched_metrics(match, (1.0, 3.5))
    region = matched_metrics(match, (1.0, 3.5), gt_face_mask=front)
    assert full["chamfer_l1"] > 5.0 and full["fscore@3.5"] < 0.8
    assert region["accuracy"] == pytest.approx(2.0, abs=0.1) and region["completeness"] == pytest.approx(2.0, abs=0.1)
    assert region["fscore@3.5"] == 1.0 and region["fscore@1.0"] == 0.0
    assert matched_metrics(match, (1.0, 3.5), gt_face_mask=np.ones(len(gt.faces), bool)) == full
    with pytest.raises(ValueError, match="no ground-truth"):
        matched_metrics(match, gt_face_mask=np.zeros(len(gt.faces), bool))
    for wrong in (front[:10], np.r_[front, front]):  # a mask of another mesh, shorter or longer
        with pytest.raises(ValueError, match=f"the ground truth has {len(gt.faces)} triangles"):
            matched_metrics(match, gt_face_mask=wrong)


def test_iou_of_boxes():
    a = np.zeros((32, 32, 32), bool)
    b = np.zeros_like(a)
    a[0:10, 0:10, 0:10] = True  # 1000 cells
    b[5:15, 0:10, 0:10] = True  # 1000 cells, 500 shared
    assert iou(a, b) == pytest.approx(500 / 1500)
    assert iou(a, a) == 1.0 and iou(a, ~a) == 0.0
    c = np.zeros_like(a)
    c[2:6, 3:7, 1:9] = True  # 128 cells inside a
    assert iou(a, c) == pytest.approx(128 / 1000)
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0  # both empty: they agree
    assert iou(a.astype(np.uint8), b.astype(np.uint8)) == pytest.approx(1 / 3)

    batch_a = np.stack([a, a, np.zeros_like(a)])[:, None]  # (B, 1, D, H, W)
    batch_b = np.stack([b, c, np.zeros_like(a)])[:, None]
    got = iou(batch_a, batch_b)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [1 / 3, 0.128, 1.0])
    np.testing.assert_allclose(iou(batch_a[:, 0], batch_b[:, 0]), got)  # (B, D, H, W)
    # occupancy at points: (B, N) needs batched=True
    pts_a = batch_a.reshape(3, -1)
    np.testing.assert_allclose(iou(pts_a, batch_b.reshape(3, -1), batched=True), got)
    assert iou(pts_a, batch_b.reshape(3, -1)) == pytest.approx((500 + 128) / (1500 + 1000))  # all at once

    torch = pytest.importorskip("torch")
    assert iou(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(1 / 3)
    with pytest.raises(TypeError, match="threshold"):
        iou(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="shapes differ"):
        iou(a, b[:-1])


def test_pose_error_is_the_geodesic_angle_in_degrees():
    """evaluate's pose_deg (voxface.rotation.geodesic_degrees): the angle of R_pred^T R_gt, in degrees,
    whatever the axis, symmetric, up to and including 180 (clamped: no NaN from rounding)."""
    torch = pytest.importorskip("torch")
    from scipy.spatial.transform import Rotation

    from voxface.rotation import geodesic_degrees

    rng = np.random.default_rng(0)
    angles = np.array([0.0, 0.5, 3.6, 45.0, 90.0, 135.0, 179.0, 179.9, 180.0])
    axes = rng.normal(size=(len(angles), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    r_gt = Rotation.random(len(angles), random_state=1)
    r_pred = r_gt * Rotation.from_rotvec(axes * np.radians(angles)[:, None])  # R_pred = R_gt Δ: |Δ| = angle
    gt = torch.from_numpy(r_gt.as_matrix()).float()
    pred = torch.from_numpy(r_pred.as_matrix()).float()
    got = geodesic_degrees(pred, gt).numpy()
    assert got.shape == (len(angles),) and np.isfinite(got).all()
    np.testing.assert_allclose(got, angles, atol=0.05)  # degrees, not radians
    np.testing.assert_allclose(geodesic_degrees(gt, pred).numpy(), got, atol=1e-3)
    assert got.max() <= 180.0


def test_mesh_metrics_of_a_shifted_cube_are_the_analytic_ones():
    """A 20 mm cube against itself shifted 1 mm along x. Accuracy, analytically: the outer x face is
    1 mm off; the inner one min(1, 10 - |y|, 10 - |z|) off (mean 10/3 (1 - 0.9^3) = 0.9033); the four
    side faces only on their 1 mm overhang (mean 0.5 there): (400 + 400 * 0.9033 + 4 * 20 * 0.5) / 2400
    = 0.3339 mm; completeness the same by symmetry."""
    cube = trimesh.creation.box(extents=(20.0, 20.0, 20.0))
    moved = cube.copy()
    moved.apply_translation([1.0, 0.0, 0.0])
    m = mesh_metrics(moved, cube, n=100_000, taus=(0.5, 1.5))
    want = (400 + 400 * 10 / 3 * (1 - 0.9**3) + 4 * 20 * 0.5) / 2400
    assert m["accuracy"] == pytest.approx(want, abs=0.01) and m["completeness"] == pytest.approx(want, abs=0.01)
    assert m["chamfer_l1"] == pytest.approx(want, abs=0.01)
    # within 0.5 mm: the side faces (but their overhang beyond 0.5 mm) and the inner face's rim where the
    # side faces are nearer than 0.5 mm: (1600 * 19.5 / 20 + 400 * (1 - 0.95^2)) / 2400
    assert m["precision@0.5"] == pytest.approx((1600 * 19.5 / 20 + 400 * (1 - 0.95**2)) / 2400, abs=0.01)
    assert m["fscore@1.5"] == 1.0  # nothing is farther than 1 mm


@pytest.mark.parametrize("n, error", [(0, ValueError), (-5, ValueError), (2.5, TypeError), ("10", TypeError),
                                      (True, TypeError)])
def test_a_sample_count_that_is_not_a_positive_integer_is_refused_in_one_line(n, error):
    """n < 1 gave numpy's 'negative dimensions are not allowed' (or, for 0, an empty sample that
    mesh_metrics then blamed on 'points'); a float was silently truncated."""
    from voxface.errors import VoxfaceError

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    for call in (lambda: sample_surface(mesh, n), lambda: mesh_metrics(mesh, mesh, n=n)):
        with pytest.raises(error, match=r"^n must be") as e:
            call()
        assert isinstance(e.value, VoxfaceError)
    assert sample_surface(mesh, np.int64(3))[0].shape == (3, 3)  # numpy integers are integers
    assert sample_surface(mesh, 1e3)[0].shape == (1000, 3)  # and so is a whole float written 1e3


def test_non_finite_points_and_meshes_without_faces_are_named():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    bad = mesh.vertices.copy()
    bad[[0, 5]] = np.nan
    with pytest.raises(ValueError, match=r"^pred_pts holds NaN or infinite values \(2 of 162 rows\)"):
        surface_metrics(bad, None, mesh.vertices, None)
    with pytest.raises(ValueError, match=r"^points holds NaN"):  # not a NaN distance beside a bogus triangle index
        closest_points(mesh, bad)
    nan_mesh = trimesh.Trimesh(bad, mesh.faces, process=False)
    with pytest.raises(ValueError, match=r"^gt: the mesh's vertices hold NaN or infinite values \(2 of the 162"):
        mesh_metrics(mesh, nan_mesh, n=100)  # was 'points holds NaN ... (100 of 100 rows)': every sample NaN
    with pytest.raises(ValueError, match=r"^the mesh's vertices hold NaN"):
        sample_surface(nan_mesh, 10)
    empty = trimesh.Trimesh()
    with pytest.raises(ValueError, match=r"^pred: cannot sample the surface of a mesh without faces"):
        mesh_metrics(empty, mesh, n=100)
    with pytest.raises(ValueError, match=r"^gt: cannot sample the surface of a mesh without faces"):
        mesh_metrics(mesh, empty, n=100)


def test_f_score_thresholds_are_checked_and_one_number_is_one_threshold():
    """taus=1.0 failed in "'float' object is not iterable"; a negative or NaN threshold gave an
    F-score of 0 under a key such as 'fscore@-1.0' as if measured."""
    pts, nrm = sphere_points(10.0, 500, 0)
    far, _ = sphere_points(10.5, 500, 1)
    one = surface_metrics(far, None, pts, None, taus=2.5)
    assert one["fscore@2.5"] == surface_metrics(far, None, pts, None, taus=(2.5,))["fscore@2.5"] == 1.0
    assert "fscore@1.0" not in one
    for bad in (-1.0, float("nan"), float("inf"), [1.0, -0.5]):
        with pytest.raises(ValueError, match=r"^taus must be finite distances >= 0"):
            surface_metrics(far, None, pts, None, taus=bad)
    for bad in ("1.0", [None], object()):
        with pytest.raises(TypeError, match=r"^taus must be a sequence of distances"):
            surface_metrics(far, None, pts, None, taus=bad)
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    with pytest.raises(ValueError, match=r"^taus must be finite"):  # before sampling and matching
        mesh_metrics(mesh, mesh, n=100, taus=[-2])


def test_iou_of_an_empty_batch_is_empty_and_a_batch_needs_a_batch_axis():
    """A batch of 0 grids failed in numpy's 'cannot reshape array of size 0'; batched=True on a
    1-D array gave one 'IoU' per element."""
    empty = np.zeros((0, 1, 4, 4, 4), bool)
    out = iou(empty, empty)
    assert isinstance(out, np.ndarray) and out.shape == (0,)
    assert iou(np.zeros((0, 7), bool), np.zeros((0, 7), bool), batched=True).shape == (0,)
    with pytest.raises(ValueError, match="batch axis"):
        iou(np.ones(5, bool), np.ones(5, bool), batched=True)

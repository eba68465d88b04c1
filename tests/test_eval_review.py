"""``voxface evaluate`` and the frame conventions: the baseline mesh's cost, Euler signs, rotation angles."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("center", [(0.0, 0.0, 0.0), (0.0, -60.0, 0.0)])  # the second cut by the grid's bottom
def test_the_baseline_mesh_reads_the_distance_only_near_the_surface(center, monkeypatch):
    """grid_mesh computed the exact distance at every cell centre: 16.7 million closest-point queries
    at 256^3, ten minutes before the evaluation's progress bar appeared. Now only the cells with both
    sides in their 3^3 neighbourhood are queried, and the mesh is the whole field's, vertex for vertex
    (a head cut by the grid's border too)."""
    import trimesh

    import voxface.metrics
    from voxface.evaluate import grid_mesh
    from voxface.frame import Grid
    from voxface.mesh import extract_mesh
    from voxface.metrics import closest_points
    from voxface.occupancy import occupancy_grid

    grid = Grid(32, 300.0, center)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=100.0)
    occ = occupancy_grid(np.asarray(sphere.vertices), np.asarray(sphere.faces), grid)
    d, _ = closest_points(sphere, grid.cell_centers().reshape(-1, 3))
    whole = np.where(occ.reshape(-1), d, -d) / grid.voxel_size
    expected = extract_mesh(whole.reshape(32, 32, 32).astype(np.float32), grid).mesh

    queried = []

    def counting(mesh, points, scene=None):
        queried.append(len(points))
        return closest_points(mesh, points, scene)

    monkeypatch.setattr(voxface.metrics, "closest_points", counting)
    mesh = grid_mesh(sphere, occ, grid)
    np.testing.assert_array_equal(mesh.faces, expected.faces)
    np.testing.assert_array_equal(mesh.vertices, expected.vertices)
    assert mesh.is_watertight
    assert sum(queried) < 0.25 * grid.resolution**3, queried


def test_euler_signs_are_what_the_docstring_says_in_the_camera_image():
    """euler_matrix named its axes but not which way each angle turns a head; its docstring now says,
    and this checks it where a user sees it: in the OpenCV camera (x right, y down), a head looking
    into the camera. Known rotations in, known angles out, in both frames."""
    from voxface.frame import FRONTAL_ROTATION, euler_angles, euler_matrix

    def cam(yaw, pitch, roll, v):  # a canonical direction as the camera sees it
        return FRONTAL_ROTATION @ euler_matrix(yaw, pitch, roll) @ np.asarray(v, float)

    face, left_ear = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)
    np.testing.assert_allclose(cam(0, 0, 0, face), [0, 0, -1], atol=1e-12)  # looks into the camera
    assert cam(30, 0, 0, face)[0] > 0.49  # yaw > 0: the face turns to image right (the subject's left)
    assert cam(0, 30, 0, face)[1] > 0.49  # pitch > 0: the face turns down in the image (y down)
    assert cam(0, 0, 30, left_ear)[1] < -0.49  # roll > 0: the left ear (image right) goes up:
    assert cam(0, 0, 30, left_ear)[0] > 0.86  # counter-clockwise in the image
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    known = {(30, 0, 0): [[c, 0, s], [0, 1, 0], [-s, 0, c]],
             (0, 30, 0): [[1, 0, 0], [0, c, -s], [0, s, c]],
             (0, 0, 30): [[c, -s, 0], [s, c, 0], [0, 0, 1]]}
    for angles, m in known.items():
        np.testing.assert_allclose(euler_matrix(*angles), m, atol=1e-12)
        np.testing.assert_allclose(euler_angles(np.asarray(m)), angles, atol=1e-9)
        np.testing.assert_allclose(euler_angles(FRONTAL_ROTATION @ np.asarray(m)), angles, atol=1e-9)


def test_geodesic_degrees_keeps_small_and_half_turn_angles():
    """evaluate's pose_deg took acos of the cosine: in float32 (the encoder's rotations) 0.01 degree
    read 0.0 and 0.1 degree 0.097. atan2 of sine and cosine is exact to rounding from 0 to 180."""
    import torch

    from voxface.frame import euler_matrix
    from voxface.rotation import geodesic_degrees

    base = euler_matrix(10.0, 20.0, 5.0)
    for d in (0.01, 0.1, 1.0, 45.0, 179.9):
        r1 = torch.tensor(base, dtype=torch.float32)
        r2 = torch.tensor(euler_matrix(10.0 + d, 20.0, 5.0), dtype=torch.float32)
        assert geodesic_degrees(r1, r2).item() == pytest.approx(d, abs=1e-5), d
        assert geodesic_degrees(r2, r1).item() == pytest.approx(geodesic_degrees(r1, r2).item(), abs=1e-5)
    half = torch.tensor(np.diag([1.0, -1.0, -1.0]))
    assert geodesic_degrees(torch.eye(3, dtype=torch.float64), half).item() == 180.0
    batch = torch.stack([torch.eye(3), torch.tensor(euler_matrix(0, 0, 30.0), dtype=torch.float32)])
    assert geodesic_degrees(batch, batch.flip(0)).shape == (2,)
    np.testing.assert_allclose(geodesic_degrees(batch, batch.flip(0)).numpy(), [30.0, 30.0], atol=1e-5)


@pytest.mark.parametrize("kind", ["toy", "synthetic"])
def test_a_checkpoint_trained_on_toy_heads_is_noted_before_it_is_scored_on_ict_faces(kind, tmp_path, monkeypatch,
                                                                                     capsys):
    """`voxface train --config configs/toy.yaml` then `voxface evaluate -c` its checkpoint scored it on ICT
    faces without a word: IoU 0.16 against the mean head's 0.87 read as a broken model. A toy-trained
    checkpoint now gets one note line on stderr; an ICT-trained one does not."""
    import torch

    import voxface.evaluate
    from voxface.checkpoint import save_checkpoint
    from voxface.errors import VoxfaceError
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG, run_cli

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "m.pth.tar", create_model(SMALL_CONFIG).eval(),
                         extra={"run_config": {"data": {"kind": kind, "seed": 0}}})

    def stop(*a, **k):
        raise VoxfaceError("stopped before scoring")

    monkeypatch.setattr(voxface.evaluate, "evaluate", stop)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "-c", ck, "--report", tmp_path / "r.json")
    assert code == 1 and err.strip().endswith("stopped before scoring"), err
    notes = [line for line in err.splitlines() if "toy heads" in line]
    if kind == "toy":
        assert notes == [f"note: {ck} was trained on toy heads (data kind toy), and these are ICT-FaceKit faces it "
                         "never learnt: expect scores far below the mean head's"], err
    else:
        assert not notes, err
    assert not (tmp_path / "r.json").exists()


def test_plots_show_progress_a_step_per_row(tmp_path, capsys):
    """save_plots drew the histograms and rendered every worst-case row (tens of seconds on a busy
    CPU) with nothing on screen after the table; it now shows a bar: the histograms, then each row."""
    import trimesh

    from voxface.evaluate import save_plots

    from .test_evaluate import fake_report

    rep = fake_report(4)
    for r, v in zip(rep.samples, (0.4, 0.9, 0.5, 0.6)):  # the worst three: 0, 2 and 3 (no meshes kept)
        r["iou"] = v
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
    crops = [np.zeros((3, 16, 16), np.float32) for _ in range(4)]
    extras = {"meshes": {0: (sphere, sphere), 2: (None, sphere)}, "crops": crops}
    save_plots(rep, extras, tmp_path / "quiet", worst=3, size=32, progress=False)
    assert capsys.readouterr().err == ""
    written = save_plots(rep, extras, tmp_path / "plots", worst=3, size=32)
    err = capsys.readouterr().err
    assert [p.name for p in written] == ["histograms.png", "worst_cases.png"]
    assert "plots" in err and "3/3" in err, err  # 1 histogram figure + 2 rows (of the worst 3, 2 kept meshes)


@pytest.mark.parametrize("latents, resolution, upsample", [("encoder", 64, "none"), ("true", 256, "head")])
def test_every_histogram_title_lies_inside_the_figure(latents, resolution, upsample):
    """The top-right histogram's title ("whole-head Chamfer-L1 (mm), lower is better") ran past the
    figure's right edge in histograms.png: its last letter was cut. Every title, axis label and the
    figure's own title now lie inside it, at the dpi save_plots writes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxface.evaluate import histogram_figure

    from .test_evaluate import fake_report

    rep = fake_report()
    rep.latents, rep.resolution, rep.upsample = latents, resolution, upsample
    fig = histogram_figure(rep)
    try:
        fig.set_dpi(80)
        renderer = fig.canvas.get_renderer()
        width, height = fig.canvas.get_width_height()
        texts = [fig._suptitle] + [t for ax in fig.axes if ax.axison
                                   for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
        for t in texts:
            box = t.get_window_extent(renderer)
            # a margin: the glyphs reach past their box (the title clipped in the PNG ended at 1279.7 of 1280)
            assert box.x0 >= 5 and box.x1 <= width - 5 and box.y0 >= 5 and box.y1 <= height - 5, (t.get_text(), box)
    finally:
        plt.close(fig)


def test_save_plots_leaves_the_matplotlib_backend_and_pyplot_alone(tmp_path, monkeypatch):
    """save_plots called matplotlib.use("Agg"): in a notebook it switched the inline backend off, so
    later figures no longer showed. It now draws on a bare Agg figure that pyplot never sees."""
    import matplotlib
    import matplotlib.pyplot as plt

    from voxface.evaluate import histogram_figure, save_plots

    from .test_evaluate import fake_report

    switched: list[str] = []
    monkeypatch.setattr(matplotlib, "use", lambda name, *a, **k: switched.append(name))
    before = plt.get_fignums()
    written = save_plots(fake_report(4), {}, tmp_path, progress=False)
    assert [p.name for p in written] == ["histograms.png"] and written[0].stat().st_size > 10_000
    assert switched == [] and plt.get_fignums() == before
    fig = histogram_figure(fake_report(4))  # the interactive default is still pyplot's, for notebooks
    try:
        assert fig.number in plt.get_fignums()
    finally:
        plt.close(fig)

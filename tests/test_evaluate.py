"""``voxface evaluate``: argument checks up front, seed offsets, shared histogram bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxface.checkpoint import save_checkpoint
from voxface.models import create_model

from .conftest import SMALL_CONFIG as SMALL
from .conftest import run_cli


@pytest.fixture(scope="module")
def trained_on_2000013(tmp_path_factory):
    """A tiny checkpoint whose training config says: synthetic ICT data, seed 2000013."""
    torch.manual_seed(0)
    m = create_model(SMALL).eval()
    d = tmp_path_factory.mktemp("ck")
    return save_checkpoint(d / "m.pth.tar", m, extra={"run_config": {"data": {"kind": "synthetic", "seed": 2000013}}})


@pytest.mark.parametrize("report", [".", "", "DIR"])
def test_report_that_is_not_a_file_fails_before_evaluating(report, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    target = str(tmp_path) if report == "DIR" else report
    # a missing checkpoint would fail later: the report check must come first
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "--report", target,
                             "-c", tmp_path / "missing.pth.tar")
    assert code == 1
    lines = err.strip().splitlines()
    if report == "":  # Path("") is the current folder: refused as empty, an unset variable most likely
        assert len(lines) == 1 and "is empty (an unset variable?); name the file to write" in lines[0], err
        return
    assert len(lines) == 1 and "is a folder, not a file path" in lines[0], err
    assert repr(target if report == "DIR" else ".") in lines[0]


def test_plots_at_the_reports_path_fail_before_evaluating(tmp_path, monkeypatch, capsys):
    """``--report out/x --plots out/x`` made the plots folder where the report was to go, and the report
    write failed only after the whole evaluation."""
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "--report", tmp_path / "out" / "x",
                           "--plots", tmp_path / "out" / "." / "x", "-c", tmp_path / "missing.pth.tar")
    assert code == 1 and err == f"error: --plots {tmp_path / 'out' / 'x'} is the --report file's path: name another " \
                                "folder for the plots\n", err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("offset, words", [(-1, "must be >= 0"), (2**32 - 2000003, "would wrap it to 0"),
                                           (2**32, "past 2^32 - 1")])
def test_seed_offset_out_of_range_is_refused(offset, words, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, f"--seed-offset={offset}",
                           "--report", tmp_path / "r" / "r.json", "-c", tmp_path / "missing.pth.tar")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "r").exists()


def test_seed_offset_refusals_name_the_argument_for_the_api_too():
    """From Python the refusal said '--seed-offset must be >= 0', a CLI option the caller never typed;
    it names the argument and the option."""
    from voxface.evaluate import check_seed_offset
    from voxface.errors import VoxfaceError

    with pytest.raises(VoxfaceError, match=r"^the seed offset \(seed_offset, --seed-offset\) must be >= 0, not -1"):
        check_seed_offset(-1)
    with pytest.raises(VoxfaceError, match=r"^seed offset 4294967296 gives seed 4296967299, past 2\^32 - 1"):
        check_seed_offset(2**32)


def test_seed_offset_onto_the_training_seed_is_refused(trained_on_2000013, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "--seed-offset", 10, "--device", "cpu",
                           "--report", tmp_path / "new" / "r.json", "--plots", tmp_path / "p", "-c",
                           trained_on_2000013)
    assert code == 1
    line = err.strip()
    assert len(line.splitlines()) == 1, err
    assert "seed 2000013" in line and "training data" in line and "model saw" in line, err
    # the folders it made for the report and the plots are gone again
    assert not (tmp_path / "new").exists() and not (tmp_path / "p").exists()


def test_training_seeds_read_synthetic_cache_and_exported_folder_data(tmp_path):
    """The seeds a checkpoint trained on, as far as its config records them: synthetic (train and
    validation), a cache's meta.json files, and a `voxface data export` folder's .export.json (ICT
    samples of one seed, the evaluation's own faces when it is 2000003)."""
    import json

    from voxface.evaluate import check_seed_offset, training_seeds
    from voxface.errors import VoxfaceError

    torch.manual_seed(0)
    m = create_model(SMALL).eval()
    cache = tmp_path / "cache"
    for split, seed in (("train", 5), ("val", 1_000_008)):
        (cache / split).mkdir(parents=True)
        (cache / split / "meta.json").write_text(json.dumps({"seed": seed}))
    export = tmp_path / "export"
    export.mkdir()
    (export / ".export.json").write_text(json.dumps({"seed": 2_000_003, "resolution": 64, "points": 2048}))
    plain = tmp_path / "photos"
    plain.mkdir()
    ck = save_checkpoint(tmp_path / "m.pth.tar", m, extra={
        "run_config": {"data": {"kind": "folder", "root": str(export)}},
        "refine_train": {"data": {"kind": "synthetic", "seed": 7},
                         "previous": {"data": {"kind": "cache", "path": str(cache)},
                                      "previous": {"data": {"kind": "folder", "path": str(plain)}}}}})
    seeds = training_seeds(ck)
    assert set(seeds) == {2_000_003, 7, 1_000_010, 5, 1_000_008}, seeds
    assert "folder" in seeds[2_000_003] and "exported" in seeds[2_000_003]
    with pytest.raises(VoxfaceError, match="model saw"):
        check_seed_offset(0, training=seeds)  # the default evaluation set is this folder's faces
    check_seed_offset(1, training=seeds)


def test_failed_evaluation_removes_only_the_folders_it_made(tmp_path, monkeypatch, capsys):
    (tmp_path / "keep").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "--report",
                           tmp_path / "keep" / "a" / "b" / "r.json", "-c", tmp_path / "missing.pth.tar")
    assert code == 1 and "missing.pth.tar" in err
    assert (tmp_path / "keep").is_dir() and not (tmp_path / "keep" / "a").exists()


def test_histograms_share_bin_edges_per_metric(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from voxface.evaluate import HISTOGRAM_METRICS, EvalReport, save_plots

    rng = np.random.default_rng(0)
    keys = list(HISTOGRAM_METRICS)
    rep = EvalReport(num=8, seed=1, resolution=16, points=1000, checkpoint=None)
    for i in range(8):
        rep.samples.append({"index": i, **{k: float(rng.uniform(0.5, 0.9)) for k in keys}})
        rep.baseline.append({"index": i, **{k: float(rng.uniform(0.0, 0.6)) for k in keys if k != "pose_deg"}})
    calls = []
    orig = Axes.hist

    def spy(self, x, bins=None, **kw):
        calls.append((self.get_title() or len(calls), np.asarray(x), np.asarray(bins)))
        return orig(self, x, bins=bins, **kw)

    monkeypatch.setattr(Axes, "hist", spy)
    save_plots(rep, {"meshes": {}}, tmp_path / "plots")
    assert (tmp_path / "plots" / "histograms.png").is_file()
    assert len(calls) == 2 * len(keys) - 1  # pose_deg has no baseline
    # pair the calls per metric: every metric with a baseline draws both series on the same edges
    i = 0
    for k in keys:
        m = calls[i]
        assert m[2].ndim == 1 and m[2].size == 31
        assert m[2][0] <= m[1].min() and m[2][-1] >= m[1].max()
        if k != "pose_deg":
            b = calls[i + 1]
            np.testing.assert_array_equal(m[2], b[2])
            assert m[2][0] <= b[1].min() and m[2][-1] >= b[1].max()
            i += 2
        else:
            i += 1



def fake_report(n: int = 8, grid_iou: bool = False) -> "EvalReport":  # noqa: F821 - imported inside
    """A report of ``n`` random faces; ``grid_iou``: as evaluated on a grid finer than the model's."""
    from voxface.evaluate import HISTOGRAM_METRICS, EvalReport

    rng = np.random.default_rng(0)
    keys = [k for k in HISTOGRAM_METRICS if grid_iou or k != "grid_iou"]
    rep = EvalReport(num=n, seed=1, resolution=16, points=1000, checkpoint=None)
    for i in range(n):
        rep.samples.append({"index": i, **{k: float(rng.uniform(0.5, 0.9)) for k in keys}})
        rep.baseline.append({"index": i, **{k: float(rng.uniform(0.0, 0.6)) for k in keys if k != "pose_deg"}})
    return rep


def test_histograms_name_units_direction_and_count_faces():
    """Every histogram's title names the metric and which way is better, its x axis the unit (mm for
    Chamfer distances, degrees for the pose, unitless for ratios), its y axis counts faces with integer
    ticks, and the legend tells the model from the mean-head baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxface.evaluate import HISTOGRAM_METRICS, histogram_figure

    unit = {"iou": "unitless", "swap_iou": "unitless", "pose_deg": "(degrees)", "chamfer_l1": "(mm)",
            "face_chamfer_l1": "(mm)", "fscore@1.0": "unitless", "face_fscore@1.0": "unitless",
            "fscore@2.5": "unitless", "face_fscore@2.5": "unitless", "normal_consistency": "unitless",
            "face_normal_consistency": "unitless", "grid_iou": "unitless"}
    assert list(HISTOGRAM_METRICS) == list(unit)  # every metric the report aggregates has its histogram
    report = fake_report()
    present = {k: u for k, u in unit.items() if k in report.samples[0]}
    assert list(present) == list(unit)[:-1]  # grid_iou: only a grid finer than the model's (below)
    fig = histogram_figure(report)
    try:
        axes = [ax for ax in fig.axes if ax.axison]
        assert len(axes) == len(present)
        for ax, (k, u) in zip(axes, present.items()):
            title, xlabel = ax.get_title(), ax.get_xlabel()
            assert title == HISTOGRAM_METRICS[k][0] and xlabel == HISTOGRAM_METRICS[k][1]
            assert u in xlabel, (k, xlabel)
            better = "lower is better" if k in ("face_chamfer_l1", "chamfer_l1", "pose_deg") else "higher is better"
            assert title.endswith(better), (k, title)
            assert ax.get_ylabel() == "faces"
            ticks = ax.get_yticks()
            assert len(ticks) >= 2 and np.allclose(ticks, np.round(ticks)), (k, ticks)
            legend = [t.get_text() for t in ax.get_legend().get_texts()]
            assert legend == (["voxface"] if k == "pose_deg" else ["voxface", "mean head"]), (k, legend)
        assert fig.axes[9].get_title() == "normal consistency, higher is better"
        assert HISTOGRAM_METRICS["face_chamfer_l1"][0] == "face Chamfer-L1 (mm), lower is better"
        assert "voxface from codes read from the crops, 16^3 grid" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
    fig = histogram_figure(fake_report(grid_iou=True))  # a finer grid: the model's grid IoU too, the last panel
    try:
        axes = [ax for ax in fig.axes if ax.axison]
        assert len(axes) == len(unit) and axes[-1].get_title() == "occupancy IoU on the model's grid, higher is better"
        assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["voxface", "mean head"]
    finally:
        plt.close(fig)
    # the title says when the meshes are the decoder's on the true coefficients, and how a finer grid was reached
    rep = fake_report()
    rep.latents, rep.resolution, rep.upsample = "true", 128, "decoder"
    fig = histogram_figure(rep)
    try:
        assert "the true coefficients (--latents true" in fig._suptitle.get_text()
        assert "128^3 grid (--upsample decoder)" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def silhouette_width(img: np.ndarray) -> int:
    cols = np.nonzero(np.any(img != 255, axis=(0, 2)))[0]
    return int(cols[-1] - cols[0] + 1)


def test_worst_cases_show_truth_and_prediction_at_one_scale_with_captions(tmp_path):
    """A row's ground truth and prediction share one framing: a prediction 0.9 times the truth's size
    renders 0.9 times as wide (framed alone, each filled its panel and the error vanished). The rows run
    from the lowest IoU up, skip samples without meshes, and the crop's caption names the sample and
    its IoU; the other captions say which column is which. An empty prediction is a grey panel."""
    import trimesh
    from PIL import Image

    from voxface.evaluate import WORST_CASE_COLUMNS, decoded_from, save_plots, worst_case_rows
    from voxface.viz import image_grid, render_mesh

    rep = fake_report(4)
    for r, v in zip(rep.samples, (0.9, 0.412, 0.7, 0.5)):
        r["iou"] = v
    truth = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    small = truth.copy()
    small.apply_scale(0.9)
    crops = [np.full((3, 32, 32), 0.25 * i, np.float32) for i in range(4)]
    extras = {"meshes": {1: (small, truth), 2: (None, truth), 0: (truth, truth)}, "crops": crops}
    size = 64
    panels, caps = worst_case_rows(rep, extras, worst=3, size=size)
    # worst three by IoU: 1 (0.412), 3 (0.5, no meshes kept: skipped), 2 (0.7)
    assert len(panels) == len(caps) == 10 and all(p.shape == (size, size, 3) for p in panels)
    assert caps[:5] == ["sample 1: IoU 0.412 (crop)", *WORST_CASE_COLUMNS]
    assert caps[5] == "sample 2: IoU 0.700 (crop)"
    assert caps[0].startswith("sample 1") and "truth" in WORST_CASE_COLUMNS[0] and "voxface" in WORST_CASE_COLUMNS[1]
    np.testing.assert_array_equal(panels[0], np.full((size, size, 3), 64, np.uint8))  # sample 1's crop
    for g, p in ((panels[1], panels[2]), (panels[3], panels[4])):  # front, side
        wg, wp = silhouette_width(g), silhouette_width(p)
        assert abs(wp - 0.9 * wg) <= 2, (wg, wp)
    # framed alone (the old picture) both spheres fill the panel: the same width
    assert abs(silhouette_width(render_mesh(small, size=size)) - silhouette_width(render_mesh(truth, size=size))) <= 1
    # an empty prediction: grey panels, captioned so
    assert caps[7] == caps[9] == "voxface: empty mesh"
    assert (panels[7] == 200).all() and (panels[9] == 200).all()
    # the saved figure is those panels with their captions drawn above them
    written = save_plots(rep, extras, tmp_path / "plots", worst=3, size=size)
    assert [p.name for p in written] == ["histograms.png", "worst_cases.png"]
    picture = np.asarray(Image.open(written[1]).convert("RGB"))
    # captioned, under a title saying what the meshes were decoded from
    title = f"the 2 faces of lowest IoU; voxface from {decoded_from(rep)}"
    assert "codes read from the crops, 16^3 grid" in title
    np.testing.assert_array_equal(picture, image_grid(panels, ncols=5, labels=caps, title=title))
    titled = image_grid(panels, ncols=5, title=title)
    strip = picture.shape[0] - titled.shape[0]
    assert strip >= 2 * 8  # a caption strip above each of the two rows
    pad, top = 4, titled.shape[0] - image_grid(panels, ncols=5).shape[0]
    for c in range(5):  # dark text in the caption strip of every column of the first row
        x0 = pad + c * (size + pad)
        assert (picture[top + pad : top + pad + strip // 2, x0 : x0 + size] < 100).any(), c


def test_ctrl_c_while_scoring_exits_130_with_one_line(trained_on_2000013, tmp_path):
    """SIGINT during the scoring loop (scipy/trimesh C code) stops between samples: exit 130, 'interrupted',
    no crash, no report; the folder made for the report is removed. stderr is a terminal (a pty), as
    at a keyboard: the scoring bar, drawn only there, says when scoring has begun."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import struct
    import subprocess
    import sys
    import termios
    import time

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    report = tmp_path / "out" / "r.json"
    cmd = [sys.executable, "-c", "from voxface.cli import main; main()", "evaluate", "-c", str(trained_on_2000013),
           "--num", "400", "--points", "20000", "--ict-root", root, "--device", "cpu",
           "--report", str(report)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 0 columns: tqdm draws no text
    out = bytearray()

    def read(timeout: float) -> None:
        while select.select([master], [], [], timeout)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            out.extend(chunk)
            timeout = 0

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    try:
        deadline = time.monotonic() + 120
        while b"score" not in out:
            assert proc.poll() is None, out.decode(errors="replace")
            assert time.monotonic() < deadline, "scoring never started"
            read(0.1)
        time.sleep(0.5)  # inside a sample's metrics (KD-trees)
        proc.send_signal(signal.SIGINT)
        while proc.poll() is None:  # drained, so the child never blocks on a full pty
            read(0.1)
        code = proc.wait(60)
        read(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    err = out.decode(errors="replace").replace("\r\n", "\n")
    assert code == 130, err
    assert err.rstrip().splitlines()[-1].split("\r")[-1] == f"error: interrupted; no report written to {report}", err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_report_onto_the_checkpoint_is_refused_before_evaluating(trained_on_2000013, tmp_path, monkeypatch, capsys):
    """``--report`` naming the checkpoint itself (any spelling) would replace it with JSON: refused."""
    import shutil

    ck = shutil.copyfile(trained_on_2000013, tmp_path / "victim.pth.tar")
    before = ck.read_bytes()
    for report in (ck, tmp_path / "." / "victim.pth.tar"):
        code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "-c", ck, "--report", report)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert "is the checkpoint being evaluated" in err, err
    assert ck.read_bytes() == before


def test_plots_folder_that_cannot_be_written_is_refused_before_evaluating(trained_on_2000013, tmp_path, monkeypatch,
                                                                           capsys):
    """An existing --plots folder the process cannot write into (root passes permission bits: probed by
    a real write) fails at once, naming the folder, not after the evaluation with a temporary name."""
    import tempfile

    import voxface.evaluate

    real = tempfile.TemporaryFile
    ro = tmp_path / "ro"
    ro.mkdir()

    def refuse(*args, **kwargs):
        if str(kwargs.get("dir", "")) == str(ro):
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(voxface.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "-c", trained_on_2000013, "--report",
                           tmp_path / "r.json", "--plots", ro)
    assert code == 1 and err.strip() == f"error: {ro}: cannot write into this folder (Permission denied)", err
    assert not (tmp_path / "r.json").exists()


def test_the_baseline_surface_is_what_a_perfect_grid_prediction_gives():
    """grid_mesh: marching cubes on the exact signed distance at the cell centres: closed, within a
    small fraction of a cell of the exact surface, and inside/outside as the exact occupancy says."""
    import trimesh

    from voxface.evaluate import grid_mesh
    from voxface.frame import Grid
    from voxface.metrics import closest_points
    from voxface.occupancy import occupancy_grid

    grid = Grid(32, 400.0, (0.0, 0.0, 0.0))
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=90.0)
    occ = occupancy_grid(np.asarray(sphere.vertices), np.asarray(sphere.faces), grid)
    mesh = grid_mesh(sphere, occ, grid)
    assert mesh.is_watertight and mesh.volume > 0
    d, _ = closest_points(sphere, mesh.vertices)
    assert d.max() < 0.05 * grid.voxel_size, d.max()  # an SDF's zero crossing, linearly interpolated


def test_a_prediction_with_no_surface_near_the_face_scores_as_a_miss_not_nan():
    """surface_scores: a prediction whose every point lies nearest to ground truth outside the face
    region has no face accuracy to average (NaN from the metrics); it counts as a miss (Chamfer 10 m,
    F-score 0, normal consistency 0), so the aggregates and the JSON report stay numbers. An empty
    prediction (None) misses everywhere; a good one scores as matched_metrics says."""
    import json

    import trimesh

    from voxface.evaluate import _MISS, EvalReport, surface_scores
    from voxface.metrics import match_surfaces, matched_metrics, sampled_surface

    gt = trimesh.creation.icosphere(subdivisions=4, radius=80.0)
    face = gt.triangles_center[:, 2] > 40.0  # the front cap
    gt_surface = sampled_surface(gt, 5_000, seed=1)
    back_blob = trimesh.creation.icosphere(subdivisions=2, radius=20.0)
    back_blob.apply_translation([0.0, 0.0, -70.0])
    raw = matched_metrics(match_surfaces(back_blob, gt_surface, 5_000, seed=0), gt_face_mask=face)
    assert np.isnan(raw["chamfer_l1"]) and raw["fscore@1.0"] == 0.0  # what the metrics say: nothing to average

    got = surface_scores(back_blob, gt_surface, face, 5_000, seed=0)
    assert all(np.isfinite(v) for v in got.values()), got
    for k in ("chamfer_l1", "fscore@1.0", "fscore@2.5", "normal_consistency"):
        assert got[f"face_{k}"] == _MISS[k]
    assert 40.0 < got["chamfer_l1"] < 200.0 and got["normal_consistency"] > 0.5  # the whole head: a real value
    assert got["face_chamfer_l1"] > got["chamfer_l1"]  # a miss is worse than any real surface

    empty = surface_scores(None, gt_surface, face, 5_000, seed=0)
    assert empty == {k: _MISS[k.removeprefix("face_")] for k in got}
    assert list(empty) == list(got)  # one key order, the table's

    good = trimesh.creation.icosphere(subdivisions=4, radius=81.0)
    ok = surface_scores(good, gt_surface, face, 5_000, seed=0)
    match = match_surfaces(good, gt_surface, 5_000, seed=0)
    ref_full, ref_face = matched_metrics(match), matched_metrics(match, gt_face_mask=face)
    assert ok["chamfer_l1"] == pytest.approx(1.0, abs=0.05) and ok["face_chamfer_l1"] == ref_face["chamfer_l1"]
    assert ok["fscore@2.5"] == ref_full["fscore@2.5"] == 1.0 and ok["face_fscore@1.0"] == ref_face["fscore@1.0"]

    rep = EvalReport(num=4, seed=2_000_003, resolution=64, points=5_000, checkpoint=None)
    for i, sc in enumerate((ok, got, empty, ok)):
        rep.samples.append({"index": i, "iou": 0.5, "swap_iou": 0.5, "pose_deg": 3.0, **sc})
        rep.baseline.append({"index": i, "iou": 0.4, "swap_iou": 0.4, **ok})
    agg = rep.summary()["model"]
    assert agg["face_chamfer_l1"]["mean"] == pytest.approx((2 * ok["face_chamfer_l1"] + 2 * 1e4) / 4)
    assert agg["face_fscore@1.0"]["median"] == pytest.approx(ok["face_fscore@1.0"] / 2)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))  # strict JSON: no NaN anywhere
    # every metric of the report names its unit; distances in millimetres, pose in degrees
    assert set(d["units"]) == {k for r in d["samples"] + d["baseline"] for k in r if k != "index"}
    assert d["units"]["pose_deg"] == "degrees" and d["units"]["face_chamfer_l1"].startswith("mm")
    assert "0-6705" in d["face_region"]


def test_an_empty_prediction_is_scored_as_a_failure_not_dropped(tmp_path, monkeypatch):
    """evaluate(): a model whose grid is empty for every face keeps every sample, with IoU 0 and the
    surface metrics of a miss; the mean head is scored as usual beside it."""
    import voxface.reconstruct
    from voxface.evaluate import _MISS, evaluate

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    torch.manual_seed(0)
    model = create_model(SMALL).eval()
    real = voxface.reconstruct.decode_at

    def empty(*a, **k):
        logits, *rest = real(*a, **k)
        return (np.full_like(logits, -5.0), *rest)

    monkeypatch.setattr(voxface.reconstruct, "decode_at", empty)
    rep, _ = evaluate(model, num=4, points=2_000, ict_root=root, progress=False)
    assert [r["index"] for r in rep.samples] == [0, 1, 2, 3] and len(rep.baseline) == 4
    for r in rep.samples:
        assert r["iou"] == 0.0
        for k, v in _MISS.items():
            assert r[k] == r[f"face_{k}"] == v
    for r in rep.baseline:
        assert 0.3 < r["iou"] <= 1.0 and r["chamfer_l1"] < 50.0 and 0.0 < r["face_fscore@2.5"] <= 1.0
    s = rep.summary()
    assert s["model"]["chamfer_l1"]["median"] == 1e4 and s["iou_gap_closed"] < 0
    # counted and said: the summary, each record's reason, and a line under the printed table
    assert s["failed_meshes"] == 4 and all(r["failure"].startswith("empty occupancy grid") for r in rep.samples)
    assert "failure" not in s["model"] and all("failure" not in r for r in rep.baseline)
    assert rep.table().splitlines()[-1].startswith("4 of 4 predictions gave no mesh")


def test_a_report_without_failures_says_none_and_its_table_is_only_the_table():
    from voxface.evaluate import EvalReport

    rep = EvalReport(num=4, seed=2_000_003, resolution=64, points=5_000, checkpoint=None)
    for i in range(4):
        rec = {"index": i, "iou": 0.5, "swap_iou": 0.5, "face_chamfer_l1": 2.0}
        rep.samples.append(dict(rec, pose_deg=3.0))
        rep.baseline.append(rec)
    rep.samples[2]["failure"] = "empty occupancy grid"
    assert rep.summary()["failed_meshes"] == 1 and "1 of 4 predictions gave no mesh" in rep.table()
    del rep.samples[2]["failure"]
    assert rep.summary()["failed_meshes"] == 0 and len(rep.table().splitlines()) == 2 + 4  # header, rule, 4 metrics


def test_an_encoder_giving_nan_codes_is_one_line_naming_the_checkpoint(tmp_path, monkeypatch, capsys):
    """Broken weights (a diverged run): the encoder's NaN codes are refused naming the checkpoint and
    the cause, not as 'z_id holds NaN' from inside decode; no report is written."""
    from .toy_ict import write_toy_ict

    root = write_toy_ict(tmp_path / "ict").parent
    torch.manual_seed(0)
    model = create_model(SMALL).eval()
    with torch.no_grad():
        model.encoder.stem[0].weight.fill_(float("nan"))
    ck = save_checkpoint(tmp_path / "diverged.pth.tar", model)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "--points", 1000, "--device", "cpu",
                           "--ict-root", root, "--report", tmp_path / "r.json", "-c", ck)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {ck}: the encoder gives NaN or infinite codes or pose for 4 of the 4 faces"), err
    assert "broken" in line and not (tmp_path / "r.json").exists()


def test_evaluation_streams_blocks_and_keeps_only_the_worst_meshes(tmp_path, monkeypatch):
    """evaluate() renders, scores and forgets one block of faces at a time (it held every face's image,
    grids and swap logits, and with --plots every mesh: tens of GB at --num 5000): face 4 is rendered
    only after faces 0-3 are scored; keep_meshes=k keeps the meshes and crops of the k lowest-IoU
    faces, what worst_cases.png shows; the block size does not change the numbers."""
    import voxface.data.synthetic as synthetic
    from voxface.evaluate import evaluate

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    torch.manual_seed(0)
    model = create_model(SMALL).eval()
    scored_before: dict[int, int] = {}
    real = synthetic.FaceSampler.sample
    holder: dict[str, object] = {}

    def sample(self, index, *a, **k):
        rep = holder.get("report")
        scored_before[int(index)] = len(rep.samples) if rep is not None else 0
        return real(self, index, *a, **k)

    import voxface.evaluate as ev

    real_score = ev._score

    def score(report, *a, **k):
        holder["report"] = report
        return real_score(report, *a, **k)

    monkeypatch.setattr(synthetic.FaceSampler, "sample", sample)
    monkeypatch.setattr(ev, "_score", score)
    rep, extras = evaluate(model, num=8, points=1_000, ict_root=root, progress=False, batch_size=4, keep_meshes=3)
    assert scored_before[4] == 4 and scored_before[7] == 4 and scored_before[3] == 0
    worst = sorted(rep.samples, key=lambda r: (r["iou"], r["index"]))[:3]
    assert set(extras["meshes"]) == set(extras["crops"]) == {r["index"] for r in worst}
    assert all(extras["crops"][i].shape == (3, 32, 32) for i in extras["crops"])
    one, _ = evaluate(model, num=8, points=1_000, ict_root=root, progress=False, batch_size=8)
    for a, b in zip(rep.samples + rep.baseline, one.samples + one.baseline):
        assert a.keys() == b.keys() and a["index"] == b["index"]
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize("kw, words", [({"points": 0}, "points must be at least 1"),
                                       ({"points": -3}, "points must be at least 1"),
                                       ({"points": 2.5}, "points must be an integer"),
                                       ({"batch_size": 0}, "batch_size must be an integer >= 1"),
                                       ({"num": 0}, "num must be an integer >= 1"),
                                       ({"num": -8}, "num must be an integer >= 1"),
                                       ({"num": 8.5}, "num must be an integer >= 1"),
                                       ({"num": float("nan")}, "num must be an integer >= 1")])
def test_evaluate_refuses_bad_sample_counts_before_any_work(kw, words, tmp_path):
    """evaluate(points=-3) failed in numpy's 'negative dimensions are not allowed' (points=0 blamed
    'n'; batch_size=0 'range() arg 3 must not be zero') after the baseline and the first faces: one
    line naming the argument, before the ICT model is even read (the missing folder is not reached).
    num=0 or num=-8 scored 4 faces as if asked for them (num=8.5: 8)."""
    from voxface.errors import VoxfaceError
    from voxface.evaluate import evaluate

    torch.manual_seed(0)
    model = create_model(SMALL).eval()
    with pytest.raises(VoxfaceError, match=f"^{words}"):
        evaluate(model, **{"num": 4, "points": 1000, "ict_root": str(tmp_path / "missing"), "progress": False, **kw})


@pytest.mark.parametrize("num", [8.0, 1e3, np.int64(8), 3])
def test_evaluate_takes_whole_numbers_of_faces(num, tmp_path):
    """Whole floats (1e3) and numpy integers are face counts, as for points; 1-3 round up to one swap
    block: past the num check, the missing ICT folder is what fails."""
    from voxface.errors import DataError
    from voxface.evaluate import evaluate

    model = create_model(SMALL).eval()
    with pytest.raises(DataError, match="ICT-FaceKit|no such"):
        evaluate(model, num=num, points=1000, ict_root=str(tmp_path / "missing"), progress=False)


def test_a_model_in_train_mode_is_scored_in_eval_mode_and_left_as_it_was(tmp_path):
    """evaluate() of a model still in train mode (mid-training) ran its encoder with dropout on: noisy
    codes, scores that changed from run to run. It scores in eval mode and restores every module's mode."""
    from voxface.evaluate import evaluate

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    torch.manual_seed(0)
    model = create_model({**SMALL, "encoder": {**SMALL["encoder"], "dropout": 0.5}}).train()
    model.decoder.eval()  # a frozen part, as a trainer leaves it
    modes = {name: m.training for name, m in model.named_modules()}
    kw = {"num": 4, "points": 1_000, "ict_root": root, "progress": False}
    a, _ = evaluate(model, **kw)
    assert {name: m.training for name, m in model.named_modules()} == modes
    b, _ = evaluate(model.eval(), **kw)
    assert a.samples == b.samples  # dropout on, the codes (so IoU, Chamfer...) differed

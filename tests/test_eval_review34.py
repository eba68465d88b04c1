"""Evaluation review, session 34: voxface.evaluate, voxface.metrics and ``voxface evaluate``."""

from __future__ import annotations

import numpy as np
import pytest


def _report_with_misses(n: int = 8, failed: tuple[int, ...] = (3,), face_missed: tuple[int, ...] = (5,)):
    """A report of ``n`` faces with plausible scores; ``failed`` gave no mesh (every surface metric a
    miss), ``face_missed`` no surface near the face (the face metrics a miss), as surface_scores scores them."""
    from voxface.evaluate import _MISS, HISTOGRAM_METRICS, EvalReport

    rng = np.random.default_rng(0)
    rep = EvalReport(num=n, seed=1, resolution=16, points=1000, checkpoint=None)
    for i in range(n):
        rec = {"index": i, **{k: float(rng.uniform(0.5, 0.9)) for k in HISTOGRAM_METRICS}}
        rec["chamfer_l1"], rec["face_chamfer_l1"] = float(rng.uniform(2, 4)), float(rng.uniform(1, 3))
        if i in failed:
            rec.update(iou=0.0, failure="empty occupancy grid")
            rec.update({p + k: v for k, v in _MISS.items() for p in ("", "face_")})
        if i in face_missed:
            rec.update({"face_" + k: v for k, v in _MISS.items()})
        rep.samples.append(rec)
        base = {k: v for k, v in rec.items() if k not in ("pose_deg", "failure")}
        base.update(chamfer_l1=float(rng.uniform(3, 5)), face_chamfer_l1=float(rng.uniform(2, 3)),
                    normal_consistency=0.94, face_normal_consistency=0.94, iou=0.84)
        base.update({"face_" + k: float(rng.uniform(0.2, 0.6)) for k in ("fscore@1.0", "fscore@2.5")})
        rep.baseline.append(base)
    return rep


def test_a_miss_is_left_out_of_the_histograms_and_counted_in_the_legend(monkeypatch):
    """histograms.png: one prediction without a surface scores Chamfer-L1 10 m (a miss), and the bins
    spanned 0..10,000 mm: every other face, the model's and the mean head's alike, fell into the first
    bin (333 mm wide), and normal consistency's 0 squeezed the rest into one bin too. Misses are left
    out of the surface metrics' histograms (IoU keeps the failed face's 0) and the legend counts them."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    from voxface.evaluate import HISTOGRAM_METRICS, histogram_figure

    by_axes: dict[int, list] = {}
    orig = Axes.hist

    def spy(self, x, bins=None, label=None, **kw):
        by_axes.setdefault(id(self), []).append((label, np.asarray(x, float), np.asarray(bins)))
        return orig(self, x, bins=bins, label=label, **kw)

    monkeypatch.setattr(Axes, "hist", spy)
    rep = _report_with_misses()
    fig = histogram_figure(rep)
    try:
        calls = {ax.get_title(): by_axes[id(ax)] for ax in fig.axes if id(ax) in by_axes}
        for k, (title, _) in HISTOGRAM_METRICS.items():
            (label, vals, edges), *base = calls[title]
            misses = {"iou": 0, "swap_iou": 0, "grid_iou": 0, "pose_deg": 0}.get(k, 2 if k.startswith("face_") else 1)
            assert len(vals) == 8 - misses, k
            assert label == {0: "voxface", 1: "voxface (1 miss not shown)", 2: "voxface (2 misses not shown)"}[misses]
            if k.endswith("chamfer_l1"):  # the bins are the faces' millimetres, not 0..10 m
                assert edges[-1] < 10.0 and vals.max() < 10.0, (k, edges[-1])
            if k.endswith("normal_consistency"):
                assert edges[0] >= 0.5, (k, edges[0])
            if base:
                assert base[0][0] == "mean head" and len(base[0][1]) == 8
                np.testing.assert_array_equal(base[0][2], edges)
        assert 0.0 in calls[HISTOGRAM_METRICS["iou"][0]][0][1]  # the failed face's IoU is a measurement
        legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()]
        assert ["voxface (1 miss not shown)", "mean head"] in legends
    finally:
        plt.close(fig)


def test_histograms_of_a_report_where_every_prediction_missed_are_drawn(tmp_path):
    """Every face failed: the surface histograms show the mean head alone and say the 4 misses."""
    from voxface.evaluate import save_plots

    rep = _report_with_misses(4, failed=(0, 1, 2, 3), face_missed=())
    paths = save_plots(rep, {}, tmp_path, progress=False)
    assert [p.name for p in paths] == ["histograms.png"] and paths[0].stat().st_size > 0


@pytest.mark.parametrize("key, missed", [("iou", False), ("pose_deg", False), ("chamfer_l1", True),
                                         ("face_chamfer_l1", True), ("face_fscore@1.0", True)])
def test_is_miss_names_placeholders_only(key, missed):
    from voxface.evaluate import _is_miss

    rep = _report_with_misses(8)
    assert _is_miss(rep.samples[3], key) is missed
    assert _is_miss(rep.samples[5], key) is (missed and key.startswith("face_"))
    assert not any(_is_miss(r, key) for r in rep.samples[:3] + rep.baseline)


def test_a_report_records_the_weights_it_scored_not_only_the_name_given(tmp_path):
    """The report named its checkpoint only as given ('runs/x/last.pth.tar', or 'bundled'): a report of
    last.pth.tar made before training wrote that file again read as a report of the new weights (and
    release --report, checking the name only, embedded it). It now records the weights' digest and
    the file load_model read (absolute path, SHA-256, epoch), as reconstruct's .npz does; a model made
    in code records its digest alone."""
    import hashlib
    import json

    import torch

    from voxface.checkpoint import load_model, save_checkpoint
    from voxface.evaluate import EvalReport, evaluate
    from voxface.models import create_model
    from voxface.reconstruct import model_digest

    from .conftest import SMALL_CONFIG
    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    torch.manual_seed(0)
    made = create_model(SMALL_CONFIG).eval()
    ck = save_checkpoint(tmp_path / "last.pth.tar", made, epoch=3)
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    model = load_model(ck)
    kw = {"num": 4, "points": 1_000, "ict_root": root, "progress": False}
    rep, _ = evaluate(model, checkpoint="last.pth.tar", **kw)
    p = rep.provenance
    assert p["model_sha256"] == model_digest(model) and p["checkpoint_sha256"] == sha
    assert p["checkpoint"] == str(ck.resolve()) and p["checkpoint_epoch"] == 3 and p["voxface_version"]
    saved = json.loads(rep.save(tmp_path / "r.json").read_text())
    assert saved["provenance"] == p and saved["checkpoint"] == "last.pth.tar"
    assert EvalReport(**{k: v for k, v in saved.items() if k not in ("summary", "units", "face_region")}) == rep
    # the file trained on and written again: the report still says which bytes it scored
    torch.manual_seed(1)
    save_checkpoint(ck, create_model(SMALL_CONFIG), epoch=4)
    assert hashlib.sha256(ck.read_bytes()).hexdigest() != saved["provenance"]["checkpoint_sha256"]
    # a model made in code: its digest, no file
    own, _ = evaluate(made, **kw)
    assert own.provenance.keys() == {"voxface_version", "model_sha256"}
    assert own.provenance["model_sha256"] == model_digest(made) == p["model_sha256"]


@pytest.mark.parametrize("seed, error, words", [(-1, "InputError", "seed must be at least 0, got -1"),
                                                (1.5, "InputTypeError", "seed must be an integer, got float 1.5"),
                                                (True, "InputTypeError", "seed must be an integer, not a bool")])
def test_a_sampling_seed_that_is_not_a_whole_number_from_0_is_one_line(seed, error, words):
    """sample_surface(m, n, seed=-1) (and mesh_metrics, match_surfaces) failed in numpy's seeding with a bare
    'ValueError: expected non-negative integer', naming neither the argument nor voxface; seed=1.5 was
    silently taken as 1. Both are voxface's argument errors naming seed (gt_seed for the ground truth's)."""
    import trimesh

    from voxface import errors
    from voxface.metrics import match_surfaces, mesh_metrics, sample_surface

    s = trimesh.creation.icosphere(2, 50.0)
    for call in (lambda: sample_surface(s, 10, seed=seed), lambda: mesh_metrics(s, s, n=10, seed=seed)):
        with pytest.raises(getattr(errors, error), match=f"^{words}"):
            call()
    with pytest.raises(getattr(errors, error), match=f"^g{'t_' + words}"):
        match_surfaces(s, s, 10, seed=0, gt_seed=seed)
    a, _ = sample_surface(s, 10, seed=np.int64(3))  # numpy integers are seeds; the sample is as for 3
    np.testing.assert_array_equal(a, sample_surface(s, 10, seed=3)[0])


def test_predictions_with_no_surface_near_the_face_are_counted_in_the_summary_and_table():
    """A prediction with a mesh but none of it near the face scores face Chamfer-L1 10 m (a miss):
    one in 200 adds 50 mm to the face mean, yet the summary and the table's footer counted only
    predictions without a mesh (failed_meshes) and said nothing. summary()['face_misses'] counts
    them and the table says so; a failed prediction is counted once, as failed."""
    rep = _report_with_misses(8, failed=(3,), face_missed=(5, 6))
    s = rep.summary()
    assert s["failed_meshes"] == 1 and s["face_misses"] == 2
    lines = rep.table().splitlines()
    assert lines[-3] == "" and lines[-2].startswith("1 of 8 predictions gave no mesh")
    assert lines[-1].startswith("2 of 8 predictions have no surface near the face") and "face_* metrics" in lines[-1]
    rep = _report_with_misses(8, failed=(), face_missed=(5,))
    lines = rep.table().splitlines()
    assert rep.summary()["face_misses"] == 1 and lines[-2] == "" and lines[-1].startswith("1 of 8 predictions have")
    rep = _report_with_misses(8, failed=(), face_missed=())
    assert rep.summary()["face_misses"] == 0 and "miss" not in rep.table()

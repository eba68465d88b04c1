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
            misses = {"iou": 0, "swap_iou": 0, "pose_deg": 0}.get(k, 2 if k.startswith("face_") else 1)
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

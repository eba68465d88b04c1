"""Session 38 review of evaluation (voxface/evaluate.py, voxface/cli/_evaluate.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

ICT = os.environ.get("VOXFACE_ICT_ROOT")
needs_ict = pytest.mark.skipif(not ICT, reason="needs VOXFACE_ICT_ROOT (the ICT-FaceKit data)")


@needs_ict
def test_a_finer_grid_is_decoded_a_refinement_group_at_a_time_with_the_same_scores(tiny_model, monkeypatch,
                                                                                   one_torch_thread):
    """``--resolution 256`` decoded all 16 faces of a batch at once: 1 GiB of float32 logits (8 GiB at
    512^3). It now decodes :func:`voxface.reconstruct.fine_group` faces at a time, as reconstruct does,
    and scores them the same (up to the float rounding of a smaller batch: the docstring of fine_group)."""
    import voxface.reconstruct
    from voxface.evaluate import evaluate

    res = 2 * tiny_model.config.decoder.resolution
    kw = dict(num=4, points=2000, ict_root=ICT, batch_size=4, progress=False, resolution=res)
    whole, _ = evaluate(tiny_model, **kw)

    sizes: list[int] = []
    decode_at = voxface.reconstruct.decode_at

    def counted(model, z_id, z_exp, resolution=None, **k):
        sizes.append(len(z_id))
        return decode_at(model, z_id, z_exp, resolution, **k)

    monkeypatch.setattr(voxface.reconstruct, "decode_at", counted)
    monkeypatch.setattr(voxface.reconstruct, "FINE_GROUP_CELLS", 2 * res**3)  # two faces at a time
    grouped, _ = evaluate(tiny_model, **kw)
    assert sizes == [2, 2]
    for a, b in zip(whole.samples + whole.baseline, grouped.samples + grouped.baseline):
        assert a.keys() == b.keys()
        for k in ("index", "iou", "swap_iou", "grid_iou", "pose_deg"):  # no voxel flips with the batch
            assert a.get(k) == b.get(k), k
        for k in a:  # the meshes' vertices move by the float rounding of the logits (~1e-6)
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=5e-3, err_msg=k)


@pytest.mark.parametrize("name", ["histograms.png", "worst_cases.png"])
def test_a_report_named_as_one_of_the_plots_is_refused_before_the_evaluation(tmp_path, monkeypatch, capsys, name):
    """``--plots out --report out/histograms.png`` wrote the report, then the plot over it, and printed
    ``report: out/histograms.png``: the report was lost without a word. Refused now, before any work."""
    from .conftest import run_cli

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "-n", "4", "--plots", "out",
                             "--report", f"out/sub/../{name}")
    assert code == 1, (out, err)
    assert err.strip().count("\n") == 0 and f"out/sub/../{name}" in err and "replace the report" in err, err
    assert not (tmp_path / "out").exists()  # nothing made, nothing evaluated

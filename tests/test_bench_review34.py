"""Review 34 of the benchmarks: ``voxface/bench.py``, ``voxface/cli/_bench.py`` and ``benchmarks/``."""

from __future__ import annotations

import json

import pytest

from voxface.bench import run_bench
from voxface.errors import InputError

FAKE_STARTUP = {"python_s": 0.02, "import_voxface_s": 0.03, "voxface_help_s": 0.2, "import_torch_s": 1.3,
                "help_imports": {}}


@pytest.mark.parametrize("case", ["under a file", "a folder", "a folder at the twin"])
def test_run_bench_refuses_a_report_path_it_cannot_write_before_any_section(tmp_path, monkeypatch, case):
    """``run_bench`` (the API) measured every section (minutes) and only then failed on a report path
    it could not write: a file among its folders, a folder at its .json twin, or a folder (after
    writing a stray ``f.d.json``), where ``voxface bench -o`` refuses these first."""
    ran = []
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: ran.append(1) or dict(FAKE_STARTUP))
    (tmp_path / "f").write_text("x")
    out, words = {
        "under a file": (tmp_path / "f" / "B.md", "f is a file, where a folder is needed"),
        "a folder": (tmp_path / "f.d", "is a folder; name the report file"),
        "a folder at the twin": (tmp_path / "B.md", "B.json: is a folder, where a file is to be written"),
    }[case]
    if case == "a folder":
        out.mkdir()
    if case == "a folder at the twin":
        (tmp_path / "B.json").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError, match="^" + str(tmp_path).replace("\\", "\\\\") + ".*" + words):
        run_bench(out, sections="startup")
    assert not ran and sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_cli_still_refuses_to_replace_a_file_that_is_no_bench_report(tmp_path):
    """``voxface bench -o`` refuses a NOTES.md / NOTES.json that is no report (test_cli_review32);
    the check lives in bench.check_report_path now, the API's run_bench replacing such a twin as before."""
    from voxface.bench import check_report_path

    (tmp_path / "NOTES.json").write_text('{"name": "my-package"}')
    with pytest.raises(InputError, match="NOTES.json: exists and is not a `voxface bench` report.*another -o"):
        check_report_path(tmp_path / "NOTES.md", "-o")
    check_report_path(tmp_path / "NOTES.md", foreign=False)


def test_run_bench_still_updates_its_own_report_and_empty_leftovers(tmp_path, monkeypatch):
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: dict(FAKE_STARTUP))
    md, js = tmp_path / "B.md", tmp_path / "B.json"
    run_bench(md, sections="startup")
    old = json.loads(js.read_text())
    run_bench(md, sections="startup")  # its own report: updated
    assert md.read_text().startswith("# voxface benchmarks") and json.loads(js.read_text())["startup"] == old["startup"]
    md.write_text("")
    js.write_text("")  # what a failed write leaves
    run_bench(md, sections="startup")
    assert md.read_text().startswith("# voxface benchmarks")


def test_network_stages_waits_for_mps_as_for_cuda(tiny_model, monkeypatch):
    """benchmarks/network_stages.py says an accelerator is synchronised around every stage, but only
    CUDA was (bench._sync has waited for MPS too since 69701d9): on Apple silicon each stage timed
    its kernel launches. A model that says it is on MPS (its work done on the CPU here) is waited for
    before and after each of the stages, every run."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import network_stages
    finally:
        sys.path.pop(0)
    waits = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waits.append("mps"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waits.append("cuda"))
    rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, device=None, **k: rand(*a, **k))  # no MPS here: CPU tensors
    mps = SimpleNamespace(device=torch.device("mps"), image_size=tiny_model.image_size, encode=tiny_model.encode,
                          decoder=tiny_model.decoder)
    network_stages.stage_times(mps, 1, repeat=1)
    timed = 4  # encode, features, sample, to host (the pinned copy is CUDA's alone), in the warm-up and one run
    assert waits == ["mps"] * (2 * timed * 2)


@pytest.mark.parametrize("args, words", [(["--resolution", "100"], "bundled: --resolution 100: a 64^3 model refines "
                                          "to 128, 256, 512, ..."),
                                         (["--resolution", "64"], "--resolution 64: a 64^3 model refines to")])
def test_refine_ablation_checks_its_grid_before_any_face_is_scored(monkeypatch, args, words):
    """benchmarks/refine_ablation.py --resolution 100 (not the model's 64 times 2, 4, ...) was refused by
    evaluate only after the 64^3 rows had scored every face (52 s at --num 1 here, minutes at the model
    card's --num 200); --num 0 got as far as evaluate too. Both are refused before any face is scored."""
    import sys
    from pathlib import Path

    from voxface.errors import VoxfaceError

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import refine_ablation
    finally:
        sys.path.pop(0)
    scored = []
    monkeypatch.setattr(refine_ablation, "_row", lambda *a, **k: scored.append(a) or [0.0] * len(refine_ablation.KEYS))
    monkeypatch.setattr(sys, "argv", ["refine_ablation.py", "--num", "1", *args])
    with pytest.raises(VoxfaceError, match=words.replace("^", r"\^").replace(".", r"\.")):
        refine_ablation.main()
    monkeypatch.setattr(sys, "argv", ["refine_ablation.py", "--num", "0"])
    with pytest.raises(SystemExit):
        refine_ablation.main()
    assert not scored


@pytest.mark.parametrize("rows, features", [(24, 600), (200, 40)])
def test_readout_probes_ridge_factorises_the_smaller_gram_matrix_with_the_same_predictions(monkeypatch, rows, features):
    """benchmarks/readout_probe.py factorised the D x D matrix X^T X whatever the rows: D = 4096 for the
    flattened last map, two factorisations per feature set, so the probe at its smallest options
    (--num-train 4 --num 1) ran past 5 minutes here (32 s now). With fewer rows than features the N x N
    X X^T is factorised; the predictions are ridge regression's, each output at its chosen strength."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import readout_probe
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)) * rng.uniform(0.1, 3.0, features)
    y = x[:, :4] @ rng.normal(size=(4, 3)) + rng.normal(size=(rows, 3))
    x_eval = rng.normal(size=(5, features))
    shapes = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda a: shapes.append(a.shape) or eigh(a))
    pred, best = readout_probe.ridge(x, y, x_eval, held_out=8)
    side = min(rows - 8, features), min(rows, features)  # the selection's fit, then the fit on every row
    assert shapes == [(side[0], side[0]), (side[1], side[1])]
    mu, sd = x.mean(0), x.std(0) + 1e-8
    xs, xe = (x - mu) / sd, (x_eval - mu) / sd
    want = np.stack([xe @ np.linalg.solve(xs.T @ xs + a * np.eye(features), xs.T @ (y[:, k] - y[:, k].mean()))
                     + y[:, k].mean() for k, a in enumerate(best)], axis=1)
    np.testing.assert_allclose(pred, want, rtol=1e-7, atol=1e-9)


def test_refine_ablation_names_no_head_a_checkpoint_does_not_have(tmp_path, monkeypatch, tiny_config):
    """evaluate(upsample="head") on a checkpoint without a refinement head evaluates the decoder's own
    function, so benchmarks/refine_ablation.py printed that row twice, once as '128^3 head of X'. A
    first checkpoint without a head gets its grid and decoder rows only; a later one (which is there
    to add its head's rows) is refused before any face is scored."""
    import sys
    from pathlib import Path

    from voxface.checkpoint import save_checkpoint
    from voxface.errors import VoxfaceError
    from voxface.models import create_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import refine_ablation
    finally:
        sys.path.pop(0)
    model = create_model(tiny_config)
    assert getattr(model, "refiner", None) is None
    ck = str(save_checkpoint(tmp_path / "nohead.pth.tar", model))
    fine = str(2 * model.grid.resolution)
    scored = []
    monkeypatch.setattr(refine_ablation, "_row", lambda m, num, res, latents, *a, upsample="head", **k:
                        scored.append((latents, res, upsample)) or [0.5] * len(refine_ablation.KEYS))
    monkeypatch.setattr(sys, "argv", ["refine_ablation.py", ck, "--num", "1", "--resolution", fine])
    refine_ablation.main()
    assert scored == [(lat, r, up) for lat in ("encoder", "true") for r, up in ((None, "head"), (int(fine), "decoder"))]
    scored.clear()
    monkeypatch.setattr(sys, "argv", ["refine_ablation.py", ck, ck, "--num", "1", "--resolution", fine])
    with pytest.raises(VoxfaceError, match="nohead.pth.tar: has no refinement head to compare"):
        refine_ablation.main()
    assert not scored

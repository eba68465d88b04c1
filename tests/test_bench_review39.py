"""Review 39 of the benchmarks: ``voxface/bench.py``, ``voxface/cli/_bench.py`` and ``benchmarks/``."""

from __future__ import annotations

import pytest

from voxface.bench import BenchSizes, run_bench
from voxface.checkpoint import save_checkpoint
from voxface.errors import VoxfaceError

from .test_data import needs_ict


def test_a_model_too_large_for_onnx_is_refused_before_any_section_runs(tiny_model, tmp_path, monkeypatch):
    """``voxface export-onnx`` refuses a graph over 2 GiB before it writes anything, but ``run_bench``
    reached that check only in its onnx section, after the sections before it (repro: the limit lowered
    to 1000 bytes, ``--only refine,onnx``: the refine section ran, then the export's message, without
    saying that the report was not written). It is refused with the other option checks, one line
    naming the checkpoint, the section and the report, nothing run and nothing written. The limit is
    lowered here to the tiny model's sizes."""
    pytest.importorskip("onnx")
    import voxface.bench as vb
    import voxface.onnx as vo

    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", tiny_model)
    enc = 4 * sum(t.numel() for t in (*tiny_model.encoder.parameters(), *tiny_model.encoder.buffers()))
    monkeypatch.setattr(vo, "MAX_GRAPH_WEIGHT_BYTES", enc - 1)
    ran: list[str] = []
    for name in ("bench_refine", "bench_onnx", "bench_startup"):
        monkeypatch.setattr(vb, name, lambda *a, _n=name, **k: ran.append(_n) or {})
    out = tmp_path / "B.md"
    with pytest.raises(VoxfaceError) as e:
        run_bench(out, checkpoint=str(ckpt), device="cpu", sections="startup,refine,onnx",
                  sizes=BenchSizes(repeat=1, refine_resolutions=(64,)))
    msg = str(e.value)
    assert msg.startswith(f"{ckpt}: the encoder's weights take ") and "one ONNX graph holds at most" in msg
    assert msg.endswith(f"(the onnx section exports it; leave it out with --only); {out} not written")
    assert "\n" not in msg and e.value.path == str(ckpt)
    assert ran == [] and not out.exists() and not out.with_suffix(".json").exists()
    # without the onnx section the same model is benched
    monkeypatch.setattr(vb, "bench_refine", lambda *a, **k: ran.append("bench_refine") or {
        "head": "x", "coarse_resolution": 32, "rows": [], "repeat": 1})
    run_bench(out, checkpoint=str(ckpt), device="cpu", sections="refine",
              sizes=BenchSizes(repeat=1, refine_resolutions=(64,)))
    assert ran == ["bench_refine"] and out.exists()


def test_highres_views_refuses_a_checkpoint_without_what_upsample_names(tiny_model, tmp_path):
    """benchmarks/highres_views.py, "the picture of the refinement head at work", drew a checkpoint
    without a head (repro: configs/tiny.yaml trained 40 steps, the default --upsample head) as the
    decoder's function or trilinear upsampling, and --upsample decoder on a decoder without a continuous
    function as trilinear upsampling: a picture captioned as the others, of another method, without a
    word. Such a checkpoint is refused in one line naming it and what it has, before the work, nothing
    written."""
    import subprocess
    import sys
    from pathlib import Path

    from voxface.models import create_model

    from .test_deform import DEFORM

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "highres_views.py"
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    deform = save_checkpoint(tmp_path / "deform.pth.tar", create_model(DEFORM["model"]))
    tiny = save_checkpoint(tmp_path / "tiny.pth.tar", tiny_model)
    out = tmp_path / "h.png"
    for ckpt, up, words in (
            (tiny, "head", "has no refinement head: the finer grids of --upsample head would be trilinear "
                           "upsampling; it has neither a refinement head nor a continuous decoder to draw"),
            (tiny, "decoder", "has a decoder without a continuous function: the finer grids of --upsample decoder "
                              "would be trilinear upsampling; it has neither"),
            (deform, "head", "has no refinement head: the finer grids of --upsample head would be the decoder's "
                             "own function; draw --upsample decoder")):
        r = subprocess.run([sys.executable, str(script), "--checkpoint", str(ckpt), "-o", str(out), "--size", "8",
                            "--upsample", up], capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and r.stdout == "", r.stderr
        assert r.stderr.startswith(f"error: {ckpt}: {words}") and len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deform.pth.tar", "tiny.pth.tar"]


@pytest.mark.ict
@needs_ict
def test_refine_ablation_gives_a_model_of_other_codes_the_encoders_rows(tiny_model, tmp_path):
    """benchmarks/refine_ablation.py on a checkpoint whose codes are not ICT coefficients (repro:
    configs/tiny.yaml trained 40 steps, --num 1 --resolution 64) evaluated the encoder's rows, then
    failed at the true coefficients' rows with evaluate's '--latents true needs codes that are ICT
    coefficients ...', naming no checkpoint, every row lost (minutes at --num 48); and the row of a
    decoder without a continuous function was named "decoder's own function" for trilinear upsampling.
    The encoder's rows are printed, the header says why the true rows are absent, the row is named
    by what it evaluates."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "refine_ablation.py"
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", tiny_model)
    r = subprocess.run([sys.executable, str(script), str(ckpt), "--num", "1", "--resolution", "64"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 unseen faces (evaluation seed, offset 0), means; no rows of the true "
                               "coefficients: the model's codes are not ICT coefficients\n"), r.stdout
    rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| (\d\.\d{4}) \|", r.stdout, re.M)
    assert [(a, b) for a, b, _ in rows] == [("encoder", "32^3 grid"),
                                            ("encoder", "64^3 trilinear upsampling (no continuous decoder)")]
    assert all(0 < float(iou) <= 1 for *_, iou in rows)


@pytest.mark.ict
@needs_ict
def test_readout_probe_refuses_a_model_of_other_codes_before_the_renders(tiny_model, tmp_path):
    """benchmarks/readout_probe.py decodes ICT identity estimates (100 values) with the model's decoder:
    on a checkpoint whose codes are not ICT coefficients (repro: configs/tiny.yaml trained 40 steps,
    --num-train 4 --num 1) it rendered the ridge's training set (16,384 renders by default: minutes)
    and then failed with the decoder's 'z_id must be (B, 16) and z_exp (B, 8) ..., got (1, 100) and
    (1, 53)', naming no checkpoint. Refused after loading, in one line naming the checkpoint and why."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "readout_probe.py"
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", tiny_model)
    r = subprocess.run([sys.executable, str(script), str(ckpt), "--num-train", "4", "--num", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"error: {ckpt}: the model's codes are not ICT coefficients (z_id/z_exp of 16/8 values; "
                        "ICT-FaceKit's: 100/53): the probe decodes ICT identity estimates\n")

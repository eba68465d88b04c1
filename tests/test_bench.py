"""``voxface bench``: every section's code path runs on a tiny model with tiny sizes and writes a
well-formed report. No timing is asserted (the machines are shared)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from voxface.bench import SECTIONS, BenchSizes, render_markdown, run_bench
from voxface.checkpoint import save_checkpoint
from voxface.errors import VoxfaceError

TINY_SIZES = BenchSizes(repeat=1, batch_sizes=(1, 2), pipeline_faces=4, pipeline_batch=2, pipeline_workers=2, pipeline_photos=2,
                        refine_resolutions=(64, 128), dense_max_points=64 ** 3, onnx_batch=2, memory_faces=2,
                        memory_batch=2, startup_repeat=1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    d = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    ckpt = save_checkpoint(d / "tiny.pth.tar", create_model(TINY_CONFIG))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    lines: list[str] = []
    try:
        res = run_bench(d / "BENCH.md", checkpoint=str(ckpt), device="cpu",
                        sections=tuple(s for s in SECTIONS if s != "data"), sizes=TINY_SIZES, log=lines.append)
    finally:
        torch.set_num_threads(old)
    return d, res, lines


def test_report_files_are_well_formed(report):
    d, res, lines = report
    md = (d / "BENCH.md").read_text()
    data = json.loads((d / "BENCH.json").read_text())
    for title in ("## Start-up", "## One face", "## Network throughput", "## Batch pipeline", "Whole photos",
                  "## Coarse-to-fine", "## ONNX", "## Peak memory"):
        assert title in md, title
    assert "nan" not in md.lower()
    for line in md.splitlines():  # every table row has as many cells as its header
        if line.startswith("|"):
            assert line.endswith("|"), line
    assert set(data) >= {"machine", "startup", "one_face_ms", "throughput_faces_per_s", "pipeline", "refine",
                         "onnx", "memory", "seconds"}
    assert lines[0].startswith("bench:")


def test_sections_hold_the_measurements(report):
    _, res, _ = report
    s = res["startup"]
    assert s["help_imports"]["torch"] is False and s["help_imports"]["open3d"] is False
    assert all(s[k] > 0 for k in ("python_s", "import_voxface_s", "voxface_help_s", "import_torch_s"))
    one = res["one_face_ms"]
    for stage in ("load (PNG)", "detect", "preprocess (crop)", "encode", "decode", "refine (coarse-to-fine to 64^3)",
                  "export (PLY)"):
        assert stage in one
    assert set(res["throughput_faces_per_s"]) == {1, 2}
    p = res["pipeline"]
    assert p["faces"] == 4 and p["batch"] == 2 and p["network_faces_per_s"] > 0
    assert p["meshes_written"] + p["failed"] == 4 and math.isfinite(p["ratio"])
    assert 0 < p["cores_busy"]["network"] and 0 < p["cores_busy"]["pipeline"]  # CPU time, children's included
    assert p["core_ms_per_face"]["network"] > 0
    assert p["core_ms_per_face"]["pipeline"] is None if not p["pipeline_faces_per_s"] else p["core_ms_per_face"]["pipeline"] > 0
    ph = res["photos"]  # whole photos with detection: the tiny untrained model may fail to mesh them, not to run
    assert ph["photos"] == 2 and ph["photos_per_s"] > 0 and ph["one_process_photos_per_s"] > 0
    # the tiny model's decoder has no continuous function: only the head's rows (the deform decoder adds
    # `decoder` rows: test_refine_bench_times_the_default_decoder_path_too)
    assert {r["upsample"] for r in res["refine"]["rows"]} == {"head"}
    rows = {r["resolution"]: r for r in res["refine"]["rows"]}
    assert set(rows) == {64, 128}
    assert "iou_vs_dense" in rows[64] and "iou_vs_dense" not in rows[128]  # dense capped at 64^3
    assert rows[64]["mise_points"] <= rows[64]["dense_points"]
    assert "untrained" in res["refine"]["head"]
    assert max(res["onnx"]["max_abs_diff"].values()) <= 1e-4
    for mode in ("one", "batch"):
        assert res["memory"][mode]["peak_mb"] >= res["memory"][mode]["loaded_mb"] > 0
    if not torch.cuda.is_available():
        assert "cuda" not in res


def test_markdown_of_optional_sections():
    res = {"machine": {"cpu": "x", "cpus": 2, "memory_gb": 1, "torch": "t", "torch_threads": 2, "cuda": "GPU"},
           "date": "today",
           "data": {"workers": 2, "samples_per_s_1_process": 10.0, "samples_per_s_2_workers": 18.0,
                    "stage_ms": {"occupancy 64^3 (scanline)": 2.0, "occupancy 64^3 (open3d, reference)": 8.0}},
           "cuda": {"device": "GPU", "throughput_faces_per_s": {1: 100.0, 16: 900.0},
                    "refine_ms": {"coarse-to-fine to 256^3": 12.0}}}
    md = render_markdown(res)
    assert "## Synthetic data generation" in md and "4.0x faster" in md and "## CUDA (GPU)" in md


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(VoxfaceError):
        run_bench(tmp_path / "b.md", sections=("model", "warp-drive"))


def test_what_cannot_run_here_fails_before_any_section_and_writes_nothing(tmp_path, monkeypatch):
    import time

    import torch

    slow = []
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: slow.append(time.time()) or {})
    out = tmp_path / "BENCHMARKS.md"
    with pytest.raises(VoxfaceError, match="unknown device 'tpu'"):
        run_bench(out, sections=("startup",), device="tpu")
    with pytest.raises(VoxfaceError, match="ICT-FaceKit.*the data section needs it"):
        run_bench(out, sections=("startup", "data"), ict_root=str(tmp_path / "no-ict"))
    if not torch.cuda.is_available():
        with pytest.raises(VoxfaceError, match="CUDA is not available"):
            run_bench(out, sections=("startup",), device="cuda")
        with pytest.raises(VoxfaceError, match="the cuda section needs a CUDA device"):
            run_bench(out, sections=("cuda",))
    assert not slow and not out.exists() and not out.with_suffix(".json").exists()


def test_a_partial_run_keeps_the_other_sections_with_their_provenance(tmp_path, monkeypatch):
    """``--only X`` replaces X in an existing report and keeps the rest, each kept section marked with
    when and where it was measured; ``keep_others=False`` (``--fresh``) writes this run's alone."""
    fake = {"python_s": 0.02, "import_voxface_s": 0.03, "voxface_help_s": 0.2, "import_torch_s": 1.3,
            "help_imports": {}}
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: dict(fake))
    out = tmp_path / "BENCHMARKS.md"
    first = run_bench(out, sections=("startup",))
    assert set(first["measured"]) == {"startup"}
    earlier = json.loads(out.with_suffix(".json").read_text())
    earlier["cuda"] = {"device": "NVIDIA H200", "throughput_faces_per_s": {"16": 4000.0}, "refine_ms": {}}
    earlier["measured"]["cuda"] = {"date": "2026-01-02 03:04 UTC", "machine": "EPYC, 16 cores, torch 2, NVIDIA H200"}
    out.with_suffix(".json").write_text(json.dumps(earlier))

    fake["voxface_help_s"] = 0.25  # this run's number replaces the earlier one
    res = run_bench(out, sections=("startup",))
    assert res["cuda"]["device"] == "NVIDIA H200" and res["startup"]["voxface_help_s"] == 0.25
    assert res["measured"]["cuda"]["date"] == "2026-01-02 03:04 UTC"
    md = out.read_text()
    head, cuda = md.split("## CUDA (NVIDIA H200)")
    assert "Kept from an earlier" not in head and "| `voxface --help` | 0.25 |" in head
    assert cuda.lstrip().startswith("*Kept from an earlier `voxface bench` run: 2026-01-02 03:04 UTC, EPYC, 16 cores")
    assert json.loads(out.with_suffix(".json").read_text())["cuda"]["device"] == "NVIDIA H200"

    assert "cuda" not in run_bench(out, sections=("startup",), keep_others=False)
    assert "## CUDA" not in out.read_text()
    out.with_suffix(".json").write_text("{not json")  # a broken twin is ignored, not fatal
    assert set(run_bench(out, sections=("startup",))["measured"]) == {"startup"}


@pytest.mark.parametrize("args, words", [
    (["--only", ""], "--only names no section; choose from startup"),
    (["--only", "startup", "-c", "{tmp}/nope.pth.tar"], "nope.pth.tar: checkpoint file not found"),
    (["--only", "refine", "--resolutions", "abc"], "--resolutions must be comma-separated whole numbers"),
    (["--only", "refine", "--resolutions", "100,0"], "--resolutions must list fine grids of at least 1 cell"),
    (["--only", "refine", "--resolutions", "100", "-c", "{ckpt}"], "coarse-to-fine resolutions [100]: each must be the "
     "model's 32 times 2, 4, 8"),
    (["-o", "{tmp}/rep.json"], "needs a .md name"),
    (["-o", "{tmp}"], "is a folder; name the report file"),
    (["-o", "{tmp}/afile/B.md"], "afile is a file, where a folder is needed"),
])
def test_cli_bad_options_fail_on_one_line_before_any_section(tmp_path, monkeypatch, capsys, args, words):
    """Each was a traceback, an empty table with exit 0, a JSON twin overwriting the report, or a
    run that measured for minutes and then failed."""
    from voxface.models import create_model

    from .conftest import TINY_CONFIG, run_cli

    ran = []
    for name in ("bench_startup", "bench_one_face", "bench_refine"):
        monkeypatch.setattr(f"voxface.bench.{name}", lambda *a, _n=name, **k: ran.append(_n) or {})
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", create_model(TINY_CONFIG))
    (tmp_path / "afile").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_cli(monkeypatch, capsys, "bench", *(a.format(tmp=tmp_path, ckpt=ckpt) for a in args))
    assert code == 1 and not ran
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_bench_help_lists_sections(monkeypatch, capsys):
    import voxface.cli

    monkeypatch.setattr(sys, "argv", ["voxface", "bench", "--help"])
    with pytest.raises(SystemExit):
        voxface.cli.main()
    out = capsys.readouterr().out
    assert "pipeline" in out and "refine" in out and "--faces" in out


def test_network_stages_split_the_forward_the_pipeline_runs(tiny_model) -> None:
    """benchmarks/network_stages.py: its stages compose to the model's own decode, every stage is
    timed, and the table has a row per batch size with the pipeline's faces per second."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import network_stages
    finally:
        sys.path.pop(0)
    x = torch.rand(2, 3, tiny_model.image_size, tiny_model.image_size)
    with torch.inference_mode():
        lat = tiny_model.encode(x)
        dec = tiny_model.decoder
        split = dec.logits_from_features(dec.features(torch.cat([lat.z_id, lat.z_exp], 1)))
        torch.testing.assert_close(split, tiny_model.decode(lat.z_id, lat.z_exp))
    results = {b: network_stages.stage_times(tiny_model, b, repeat=1) for b in (1, 2)}
    for t in results.values():
        assert set(t) == set(network_stages.STAGES) and all(v > 0 for v in t.values())
        assert t["to host, pinned"] == t["to host"]  # on the CPU nothing is pinned
    rows = network_stages.table(results).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| 1 |") and rows[3].startswith("| 2 |")
    total = sum(results[2][k] for k in network_stages.STAGES[:4])
    assert rows[3].endswith(f"| {2 / total:.0f} |")


def test_refine_bench_times_the_default_decoder_path_too() -> None:
    """With a continuous (deform) decoder the coarse-to-fine table has a row per grid for the head
    and for the decoder's own function (the default --upsample), each against its own dense
    evaluation, and the markdown names the path of each row."""
    from voxface.bench import _md_refine, bench_refine
    from voxface.models import create_model

    from .test_deform import DEFORM

    torch.manual_seed(0)
    model = create_model(DEFORM["model"]).eval()
    r = bench_refine(model, resolutions=(32,), dense_max_points=32 ** 3)
    assert [(row["resolution"], row["upsample"]) for row in r["rows"]] == [(32, "head"), (32, "decoder")]
    for row in r["rows"]:
        assert row["mise_points"] < row["dense_points"] == 32 ** 3 and row["iou_vs_dense"] > 0.99
    table = _md_refine(r)
    assert sum(line.startswith("| 32^3 | decoder |") for line in table) == 1
    assert sum(line.startswith("| 32^3 | head |") for line in table) == 1

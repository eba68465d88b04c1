"""``voxface bench``: every section's code path runs on a tiny model with tiny sizes and writes a
well-formed report. No timing is asserted (the machines are shared)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from voxface.bench import SECTIONS, BenchSizes, one_face_refine_label, render_markdown, run_bench
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
    # RSS of the benchmark process depends on which sections ran before: only the memory section's fresh processes
    assert "peak_rss_mb" not in data and "Peak RSS of the benchmark process" not in md
    assert "each time the median of repeats" not in md  # each section says how its times are taken
    assert "Each stage the median of 1 runs after a warm-up." in md and "1 interleaved rounds (MISE, then dense)" in md


def test_each_section_records_its_checkpoint_and_device(report):
    """So that a section kept by a later run (another checkpoint, another --device) is not credited to it."""
    from voxface.bench import checkpoint_id
    from voxface.device import usable_cores

    d, res, _ = report
    cid = checkpoint_id(str(d / "tiny.pth.tar"))
    assert len(cid["sha256_1mb"]) == 12 and cid["bytes"] == (d / "tiny.pth.tar").stat().st_size
    assert res["model"]["checkpoint_id"] == cid
    for sec in ("model", "pipeline", "refine", "onnx", "memory"):
        assert res["measured"][sec]["checkpoint"] == cid, sec
        assert res["measured"][sec]["device"] == "cpu", sec
    assert "checkpoint" not in res["measured"]["startup"]  # measures no model
    assert res["pipeline"]["device"] == "cpu" and res["photos"]["device"] == "cpu"
    assert res["refine"]["device"] == "cpu"
    assert res["machine"]["cpus"] == usable_cores() and res["pipeline"]["cores"] == usable_cores()


def test_sections_hold_the_measurements(report):
    _, res, _ = report
    s = res["startup"]
    assert s["help_imports"]["torch"] is False and s["help_imports"]["open3d"] is False
    assert all(s[k] > 0 for k in ("python_s", "import_voxface_s", "voxface_help_s", "import_torch_s"))
    one = res["one_face_ms"]
    # the refine rows name the path each times: the default (here no continuous decoder: trilinear) and the head
    for stage in ("load (PNG)", "detect", "preprocess (crop)", "encode", "decode",
                  one_face_refine_label(64, "`--upsample decoder`, the default: trilinear, no continuous decoder"),
                  one_face_refine_label(64, "`--upsample head`"), "export (PLY)"):
        assert stage in one, (stage, list(one))
    assert res["model_repeat"] == 1
    assert set(res["throughput_faces_per_s"]) == {1, 2}
    p = res["pipeline"]
    assert p["faces"] == 4 and p["batch"] == 2 and p["network_faces_per_s"] > 0
    assert p["meshes_written"] + p["failed"] == 4 and math.isfinite(p["ratio"])
    assert 0 < p["cores_busy"]["network"] and 0 < p["cores_busy"]["pipeline"]  # CPU time, children's included
    assert p["core_ms_per_face"]["network"] > 0
    assert p["core_ms_per_face"]["pipeline"] is None if not p["pipeline_faces_per_s"] else p["core_ms_per_face"]["pipeline"] > 0
    ph = res["photos"]  # whole photos with detection: the tiny untrained model may fail to mesh them, not to run
    assert ph["photos"] == 2 and ph["photos_per_s"] > 0 and ph["one_process_photos_per_s"] > 0
    assert ph["detect_ms"] > 0  # measured with the photos, not taken from whichever one-face section is current
    # the tiny model's decoder has no continuous function: only the head's rows (the deform decoder adds
    # `decoder` rows: test_refine_bench_times_the_default_decoder_path_too)
    assert {r["upsample"] for r in res["refine"]["rows"]} == {"head"}
    rows = {r["resolution"]: r for r in res["refine"]["rows"]}
    assert set(rows) == {64, 128}
    assert "iou_vs_dense" in rows[64] and "iou_vs_dense" not in rows[128]  # dense capped at 64^3
    assert rows[64]["mise_points"] <= rows[64]["dense_points"]
    assert isinstance(rows[64]["differing_voxels"], int) and rows[64]["differing_voxels"] >= 0
    assert "differing_voxels" not in rows[128]
    assert rows[64]["rounds_s"]["mise"] == [rows[64]["mise_s"]] and rows[64]["rounds_s"]["dense"] == [rows[64]["dense_s"]]
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
    assert "(agreement not checked in that run)" in md  # recorded before the voxels were compared


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(VoxfaceError):
        run_bench(tmp_path / "b.md", sections=("model", "warp-drive"))


def test_no_section_is_refused_as_no_section(tmp_path, monkeypatch):
    """``run_bench(sections="")`` (or ``[]``) was refused on a CPU machine as "the cuda section needs
    a CUDA device" (the empty set is a subset of {"cuda"}), and on a GPU one wrote a report of nothing."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # the message must not depend on the machine
    for sections in ("", " , ", [], ()):
        with pytest.raises(VoxfaceError, match=r"^no bench section given; choose from startup, data, .*not written$"):
            run_bench(tmp_path / "b.md", sections=sections)
    assert not list(tmp_path.iterdir())


def test_sections_given_as_one_string_are_section_names_not_letters(tmp_path, monkeypatch):
    """``run_bench(sections="startup")`` was read letter by letter: unknown section(s) ['a', 'p', ...]."""
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: {"help_s": 0.1})
    seen = []
    monkeypatch.setattr("voxface.bench.render_markdown", lambda res: seen.append(sorted(res)) or "# report\n")
    run_bench(tmp_path / "b.md", sections="startup", keep_others=False)
    assert "startup" in seen[0] and (tmp_path / "b.md").read_text() == "# report\n"
    with pytest.raises(VoxfaceError, match=r"unknown bench section\(s\) \['warp-drive'\]"):
        run_bench(tmp_path / "c.md", sections="startup, warp-drive")


def test_a_json_report_name_is_refused_through_the_api(tmp_path, monkeypatch):
    """``run_bench("bench.json")`` wrote the numbers to bench.json and then the markdown over them."""
    from voxface.errors import InputError

    ran = []
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: ran.append(1) or {})
    for name in ("bench.json", "bench.JSON"):
        with pytest.raises(InputError, match=r"bench\.(json|JSON): the report is markdown .* \(e\.g\. bench\.md\)"):
            run_bench(tmp_path / name, sections=("startup",))
    assert not ran and not list(tmp_path.iterdir())


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
    monkeypatch.setitem(sys.modules, "onnx", None)  # the onnx extra not installed: it ran after the other sections
    with pytest.raises(VoxfaceError, match=r"onnx is not installed; pip install 'voxface\[onnx\]' \(the onnx section "
                                           r"needs it; leave it out with --only\)"):
        run_bench(out, sections=("startup", "onnx"))
    monkeypatch.delitem(sys.modules, "onnx")
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


def test_a_kept_section_that_does_not_render_is_left_out_not_this_runs_numbers(tmp_path, monkeypatch):
    """An earlier report whose JSON held a section missing a field (hand-edited, or another
    version's) failed with a KeyError traceback after this run's sections were measured, and
    wrote nothing: the run was lost. Now that section is left out with a warning line."""
    fake = {"python_s": 0.02, "import_voxface_s": 0.03, "voxface_help_s": 0.2, "import_torch_s": 1.3,
            "help_imports": {}}
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: dict(fake))
    out = tmp_path / "BENCHMARKS.md"
    earlier = {"machine": {"cpu": "EPYC", "cpus": 2, "torch": "2"}, "date": "2026-01-02 03:04 UTC",
               "memory": {"faces": 2, "batch_size": 2, "one": {"loaded_mb": 1.0, "peak_mb": 2.0}},  # no "batch"
               "cuda": {"device": "NVIDIA H200", "throughput_faces_per_s": {"16": 4000.0}}}
    out.with_suffix(".json").write_text(json.dumps(earlier))
    lines: list[str] = []
    res = run_bench(out, sections="startup", log=lines.append)
    assert "memory" not in res and "memory" not in res["measured"] and res["cuda"]["device"] == "NVIDIA H200"
    md = out.read_text()
    assert "| `voxface --help` | 0.20 |" in md and "## CUDA (NVIDIA H200)" in md and "Peak memory" not in md
    assert "memory" not in json.loads(out.with_suffix(".json").read_text())
    warned = [s for s in lines if s.startswith("warning:")]
    assert len(warned) == 1 and "its memory section could not be read (KeyError: 'batch')" in warned[0]
    out.with_suffix(".json").write_text(json.dumps({**earlier, "machine": "EPYC"}))  # not a machine record: foreign
    assert set(run_bench(out, sections="startup")["measured"]) == {"startup"}


def test_a_kept_section_measured_under_another_malloc_setting_says_so(tmp_path, monkeypatch):
    """The header states this run's malloc setting (keep_freed_memory: 8-10% of the network's time);
    a section kept from a run under the other setting was shown under it without a word."""
    fake = {"python_s": 0.02, "import_voxface_s": 0.03, "voxface_help_s": 0.2, "import_torch_s": 1.3,
            "help_imports": {}}
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: dict(fake))
    monkeypatch.setattr("voxface.bench.bench_memory", lambda *a, **k: {
        "faces": 2, "batch_size": 2, "one": {"loaded_mb": 1.0, "peak_mb": 2.0}, "batch": {"loaded_mb": 1.0, "peak_mb": 3.0}})
    out = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr("voxface.device.freed_memory_kept", True)  # as the voxface command runs
    run_bench(out, sections="startup", device="cpu")
    monkeypatch.setattr("voxface.device.freed_memory_kept", False)  # a Python session of one's own
    res = run_bench(out, sections="memory", device="cpu")
    assert res["measured"]["startup"]["freed_memory_kept"] is True
    md = out.read_text()
    assert "; malloc as the platform sets it;" in md  # the header: this run's
    startup = md.split("## Start-up")[1].split("##")[0]
    assert "*Kept from an earlier `voxface bench` run: " in startup and "glibc malloc keeping freed memory.*" in startup
    assert "Kept from an earlier" not in md.split("## Peak memory")[1]


@pytest.mark.parametrize("args, words", [
    (["--only", ""], "--only names no section; choose from startup"),
    (["--only", "startup", "-c", "{tmp}/nope.pth.tar"], "nope.pth.tar: checkpoint file not found"),
    (["--only", "refine", "--resolutions", "abc"], "--resolutions must be comma-separated whole numbers"),
    (["--only", "refine", "--resolutions", "100,0"], "--resolutions must list fine grids of at least 1 cell"),
    (["--only", "refine", "--resolutions", "100", "-c", "{ckpt}"], "coarse-to-fine resolutions [100]: each must be the "
     "model's 32 times 2, 4, 8"),
    (["--only", "startup,refine", "--resolutions", "100", "-c", "{ckpt}"], "coarse-to-fine resolutions [100]"),
    (["--only", "cuda", "--resolutions", "100,0"], "--resolutions must list fine grids of at least 1 cell"),
    (["-o", "{tmp}/rep.json"], "needs a .md name"),
    (["-o", "{tmp}"], "is a folder; name the report file"),
    (["-o", "{tmp}/afile/B.md"], "afile is a file, where a folder is needed"),
    (["-o", "{tmp}/twin/B.md"], "B.json: is a folder, where a file is to be written"),
])
def test_cli_bad_options_fail_on_one_line_before_any_section(tmp_path, monkeypatch, capsys, args, words):
    """Each was a traceback, an empty table with exit 0, a JSON twin overwriting the report, or a
    run that measured for minutes and then failed (a folder where the JSON twin goes)."""
    from voxface.models import create_model

    from .conftest import TINY_CONFIG, run_cli

    ran = []
    for name in ("bench_startup", "bench_one_face", "bench_refine"):
        monkeypatch.setattr(f"voxface.bench.{name}", lambda *a, _n=name, **k: ran.append(_n) or {})
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", create_model(TINY_CONFIG))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "twin" / "B.json").mkdir(parents=True)  # where the report's .json twin is to be written
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_cli(monkeypatch, capsys, "bench", *(a.format(tmp=tmp_path, ckpt=ckpt) for a in args))
    assert code == 1 and not ran
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_memory_alone_refuses_a_bad_checkpoint_and_names_the_model_it_measured(tmp_path, monkeypatch, capsys):
    """``--only memory -c X`` did not load X: a text file ran for seconds, exited 0 and replaced the
    earlier memory table with its error in every cell; a good X was measured under the earlier
    report's model line (another checkpoint's)."""
    from voxface.bench import checkpoint_id
    from voxface.models import create_model

    from .conftest import TINY_CONFIG, run_cli

    ran = []
    monkeypatch.setattr("voxface.bench.bench_memory", lambda ck, *a, **k: ran.append(ck) or {
        "faces": 2, "batch_size": 2, "one": {"loaded_mb": 1.0, "peak_mb": 2.0}, "batch": {"loaded_mb": 1.0, "peak_mb": 3.0}})
    out = tmp_path / "BENCHMARKS.md"
    run_bench(out, sections=("memory",), device="cpu")  # the bundled weights
    before = out.with_suffix(".json").read_bytes(), out.read_bytes()
    bad = tmp_path / "bad.pth.tar"
    bad.write_text("hello")
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--only", "memory", "-c", bad, "-o", out)
    assert code == 1 and err.strip().count("\n") == 0 and "bad.pth.tar" in err and "text file" in err, err
    assert ran == [None] and (out.with_suffix(".json").read_bytes(), out.read_bytes()) == before

    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", create_model(TINY_CONFIG))
    res = run_bench(out, checkpoint=str(ckpt), sections=("memory",), device="cpu")
    assert ran == [None, str(ckpt)] and res["model"]["checkpoint_id"] == checkpoint_id(str(ckpt))
    assert f"Model: {ckpt} (32^3 logits" in out.read_text()


def test_cli_bench_help_lists_sections(monkeypatch, capsys):
    import voxface.cli

    monkeypatch.setattr(sys, "argv", ["voxface", "bench", "--help"])
    with pytest.raises(SystemExit):
        voxface.cli.main()
    out = capsys.readouterr().out
    assert "pipeline" in out and "refine" in out and "--faces" in out
    sz = BenchSizes()  # the defaults named are the real ones
    assert f"{sz.pipeline_faces};" in out and f"{sz.cuda_pipeline_faces})" in out and "256)" not in out


@pytest.mark.parametrize("args, want", [
    ([], (BenchSizes().pipeline_faces, BenchSizes().pipeline_batch, BenchSizes().cuda_pipeline_faces,
          BenchSizes().cuda_pipeline_batch)),
    (["--faces", "64", "--batch", "8"], (64, 8, 64, 8)),
])
def test_cli_faces_and_batch_size_the_cuda_pipeline_too(tmp_path, monkeypatch, capsys, args, want):
    """``voxface bench --only cuda --faces 64 --batch 8`` ran the cuda section's pipeline on 4096 faces
    at batch 64 whatever the options said (they sized the CPU comparison alone)."""
    from .conftest import run_cli

    seen = []

    def fake(out, **k):
        seen.append(k["sizes"])
        Path(out).write_text("# report\n")

    monkeypatch.setattr("voxface.bench.run_bench", fake)
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--only", "pipeline,cuda", "-o", tmp_path / "B.md", *args)
    assert code == 0, err
    s = seen[0]
    assert (s.pipeline_faces, s.pipeline_batch, s.cuda_pipeline_faces, s.cuda_pipeline_batch) == want


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


def test_bench_refine_warms_up_each_path_and_interleaves_rounds(tiny_model, monkeypatch) -> None:
    """One warm-up call per (upsample, method) path, then ``repeat`` rounds of MISE then dense; each
    method's fastest round is reported, every round and each round's own ratio recorded, and the
    voxels the two occupancies disagree on counted."""
    import voxface.refine
    from voxface.bench import bench_refine

    calls = []
    real = voxface.refine.refine_logits

    def spy(*a, **k):
        calls.append((k["resolution"], k["method"]))
        return real(*a, **k)

    monkeypatch.setattr(voxface.refine, "refine_logits", spy)
    r = bench_refine(tiny_model, resolutions=(64,), dense_max_points=64 ** 3, repeat=3)
    assert calls == [(64, "mise"), (64, "dense")] + [(64, "mise"), (64, "dense")] * 3  # warm-up, then interleaved
    (row,) = r["rows"]
    assert r["repeat"] == 3 and row["rounds"] == 3
    assert len(row["rounds_s"]["mise"]) == len(row["rounds_s"]["dense"]) == len(row["round_speedups"]) == 3
    assert row["mise_s"] == min(row["rounds_s"]["mise"]) and row["dense_s"] == min(row["rounds_s"]["dense"])
    assert row["speedup"] == pytest.approx(row["dense_s"] / row["mise_s"])
    assert row["round_speedups"] == pytest.approx([d / m for d, m in zip(row["rounds_s"]["dense"], row["rounds_s"]["mise"])])
    assert isinstance(row["differing_voxels"], int)
    if row["differing_voxels"] == 0:
        assert row["iou_vs_dense"] == 1.0
    table = "\n".join(__import__("voxface.bench", fromlist=["_md_refine"])._md_refine(r))
    lo, hi = min(row["round_speedups"]), max(row["round_speedups"])
    assert f"{row['speedup']:.1f}x ({lo:.1f}-{hi:.1f}x)" in table and "3 interleaved rounds" in table


def test_run_bench_passes_repeat_to_the_refine_section(tmp_path, monkeypatch) -> None:
    """``make bench``'s ``--repeat 5`` reaches the coarse-to-fine comparison (it ran once, cold)."""
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    seen = {}

    def fake(model, resolutions, dense_max_points, repeat=None):
        seen.update(resolutions=resolutions, repeat=repeat)
        return {"head": "x", "coarse_resolution": 32, "rows": [], "repeat": repeat}

    monkeypatch.setattr("voxface.bench.bench_refine", fake)
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", create_model(TINY_CONFIG))
    run_bench(tmp_path / "B.md", checkpoint=str(ckpt), device="cpu", sections=("refine",),
              sizes=BenchSizes(repeat=4, refine_resolutions=(64,)))
    assert seen == {"resolutions": (64,), "repeat": 4}


def test_the_cuda_sections_grids_are_checked_before_any_section(tmp_path, monkeypatch) -> None:
    """The CUDA section runs coarse-to-fine at the same --resolutions: a grid the model cannot refine
    to left its table empty after the GPU had measured for minutes."""
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    ran = []
    monkeypatch.setattr("voxface.bench.bench_cuda", lambda *a, **k: ran.append("cuda") or {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine (the model stays on the CPU)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "GPU")
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", create_model(TINY_CONFIG))
    out = tmp_path / "B.md"
    with pytest.raises(VoxfaceError, match=r"coarse-to-fine resolutions \[100\]: each must be the model's 32 times"):
        run_bench(out, checkpoint=str(ckpt), device="cpu", sections=("cuda",), sizes=BenchSizes(refine_resolutions=(100,)))
    assert not ran and not out.exists()


def test_pipeline_names_the_batch_it_ran_at(tiny_model) -> None:
    """``--faces 3`` with the default ``--batch 16``: both sides ran 3 faces at once and the report
    said batch 16."""
    from voxface.bench import _md_pipeline, bench_pipeline

    p = bench_pipeline(tiny_model, n=3, batch=16, workers=1, rounds=1)
    assert p["faces"] == 3 and p["batch"] == 3 and p["meshes_written"] + p["failed"] == 3
    assert "batch 3," in "\n".join(_md_pipeline(p, False, 1)) and "batch 16" not in "\n".join(_md_pipeline(p, False, 1))


def test_refine_table_reports_differing_voxels_beside_the_iou() -> None:
    """An IoU of 0.9999966 (4 voxels) printed as "1.0000" read as identical grids."""
    from voxface.bench import _md_refine

    row = {"resolution": 256, "upsample": "head", "levels": 2, "mise_s": 0.8, "mise_points": 893136, "dense_s": 11.7,
           "dense_points": 256 ** 3, "speedup": 14.6, "round_speedups": [13.9, 14.6, 15.2], "points_ratio": 18.8,
           "iou_vs_dense": 0.9999966, "differing_voxels": 4}
    old = {k: v for k, v in row.items() if k not in ("differing_voxels", "round_speedups")}  # a report from before
    same = {**row, "iou_vs_dense": 1.0, "differing_voxels": 0}
    lines = _md_refine({"head": "trained", "coarse_resolution": 64, "rows": [row, old, same], "repeat": 3})
    rows = [ln for ln in lines if ln.startswith("| 256^3")]
    assert rows[0].endswith("| 14.6x (13.9-15.2x) | 18.8x | 0.9999966 | 4 |")
    assert rows[1].endswith("| 14.6x | 18.8x | 0.9999966 | not recorded |")
    assert rows[2].endswith("| 1.0000 | 0 |")


def _pipeline(**over):
    p = {"faces": 8, "batch": 2, "workers": 2, "resolution": 64, "rounds": 1, "torch_threads": 2,
         "rounds_faces_per_s": {"network": [100.0], "pipeline": [60.0]}, "network_faces_per_s": 100.0,
         "pipeline_faces_per_s": 60.0, "one_process_faces_per_s": 50.0, "ratio": 0.6, "one_process_ratio": 0.5,
         "per_face_ms": {"read crop": 0.5}, "cores_busy": {"network": 2.0, "pipeline": 1.95},
         "core_ms_per_face": {"network": 20.0, "pipeline": 32.5}, "bound": None}
    p.update(over)
    return p


def test_conclusions_are_printed_only_where_the_numbers_carry_them() -> None:
    from voxface.bench import _md_pipeline

    sets = "not idle cores, sets the ratio"
    assert sets in "\n".join(_md_pipeline(_pipeline(), True, 2))
    idle = "\n".join(_md_pipeline(_pipeline(cores_busy={"network": 2.0, "pipeline": 1.2}), True, 2))
    assert sets not in idle and "under 90% of the network's cores busy" in idle
    cheaper = "\n".join(_md_pipeline(_pipeline(core_ms_per_face={"network": 20.0, "pipeline": 19.0}), True, 2))
    assert sets not in cheaper and "1.0 ms less" in cheaper

    base = {"machine": {"cpus": 2, "torch": "t", "torch_threads": 2, "cuda": None}, "date": "d",
            "pipeline": _pipeline(device="cpu")}
    photos = {"photos": 2, "batch": 2, "workers": 2, "photos_per_s": 4.0, "one_process_photos_per_s": 3.0,
              "failed": 0, "detect_repeat": 3}
    pace = "the detector, not the network, sets the pace"
    slow = render_markdown({**base, "photos": {**photos, "detect_ms": 214.0}})  # network: 10 ms a face
    assert "Detection alone takes 214 ms" in slow and "the network's 10.0 ms a face" in slow and pace in slow
    fast = render_markdown({**base, "photos": {**photos, "detect_ms": 4.0}})
    assert "Detection alone takes 4 ms" in fast and pace not in fast

    stage = {"occupancy 64^3 (scanline)": 2.0, "occupancy 64^3 (open3d, reference)": 8.0}
    data = {"workers": 2, "samples_per_s_1_process": 10.0, "samples_per_s_2_workers": 18.0, "stage_ms": stage}
    for extra, words in (({"occupancy_differing_voxels": 0}, "(same result: no voxel differs)"),
                         ({"occupancy_differing_voxels": 5, "occupancy_voxels": 64 ** 3}, "(5 of 262,144 voxels differ)"),
                         ({}, "(agreement not checked in that run)")):
        md = render_markdown({**base, "data": {**data, **extra}})
        assert words in md and ("same result" in md) == ("occupancy_differing_voxels" in extra and not extra["occupancy_differing_voxels"])


def test_a_kept_section_renders_from_its_own_data_and_provenance() -> None:
    """``--only`` runs do not lend a kept section this run's detection time, checkpoint or device."""
    mach = {"cpu": "x", "cpus": 2, "torch": "t", "torch_threads": 2, "cuda": None}
    now = {"date": "today", "machine": "x, 2 cores, torch t"}
    ck_new = {"path": "new.pth.tar", "sha256_1mb": "aaaaaaaaaaaa", "bytes": 2_000_000}
    ck_old = {"path": "old.pth.tar", "sha256_1mb": "bbbbbbbbbbbb", "bytes": 3_000_000}
    res = {"machine": mach, "date": "today",
           "model": {"checkpoint": "new.pth.tar", "checkpoint_id": ck_new, "device": "cpu", "resolution": 64,
                     "image_size": 128, "refine_head": True},
           "one_face_ms": {"detect": 999.0}, "throughput_faces_per_s": {1: 10.0}, "model_repeat": 3,
           "pipeline": _pipeline(device="cuda:0", workers_as="mesh processes"),
           "photos": {"photos": 2, "batch": 2, "workers": 2, "photos_per_s": 4.0, "one_process_photos_per_s": 3.0,
                      "failed": 0, "detect_ms": 150.0, "detect_repeat": 3, "device": "cuda:0"},
           "measured": {"model": {**now, "checkpoint": ck_new, "device": "cpu"},
                        "pipeline": {"date": "yesterday", "machine": "GPU box, 16 cores, torch t, H200",
                                     "checkpoint": ck_old, "device": "cuda:0"}}}
    md = render_markdown(res)
    assert "Detection alone takes 150 ms" in md and "999" not in md.split("## Batch pipeline")[1]
    assert "(2 pipeline processes)" not in md and "(2 mesh processes)" in md
    pipe = md.split("## Batch pipeline against the network")[1]
    assert pipe.lstrip().startswith("*Kept from an earlier `voxface bench` run: yesterday, GPU box, 16 cores, torch t, "
                                    "H200, checkpoint old.pth.tar (sha256 of the first MiB bbbbbbbbbbbb, 3.0 MB), on cuda:0.*")
    assert "Kept from" not in md.split("## Batch pipeline")[0]  # the model section is this run's
    assert "Model: new.pth.tar (64^3 logits, 128 px crops; sha256 of the first MiB aaaaaaaaaaaa, 2.0 MB) on cpu" in md

    # the CPU pipeline's processes label and CPU-time sentence follow the section's own device
    cpu = {**res, "pipeline": _pipeline(device="cpu"), "model": {**res["model"], "device": "cuda:0"}}
    cpu_md = render_markdown(cpu)
    assert "(2 pipeline processes)" in cpu_md and "CPU time over wall time" in cpu_md

    # a report from before detection was measured with the photos: the one-face time only from the same run
    old_ph = {k: v for k, v in res["photos"].items() if k not in ("detect_ms", "detect_repeat")}
    assert "Detection alone" not in render_markdown({**res, "photos": old_ph})
    same = {**res, "photos": old_ph, "measured": {"model": res["measured"]["model"], "pipeline": res["measured"]["model"]}}
    assert "Detection alone takes 999 ms a photo (the one-face table of the same run" in render_markdown(same)


def test_a_section_kept_from_a_run_in_the_same_minute_is_still_marked(tmp_path, monkeypatch) -> None:
    """Provenance dates are to the minute: ``--only model -c A`` then ``--only onnx -c B`` within it
    showed A's one-face and throughput tables unmarked under the model line of B."""
    from voxface.bench import checkpoint_id
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    monkeypatch.setattr("voxface.bench.bench_one_face", lambda m, repeat=1: {"ms": {"encode": 1.0},
                                                                             "refine_head": "x", "repeat": 1})
    monkeypatch.setattr("voxface.bench.bench_model", lambda m, bs, r: {1: 5.0})
    monkeypatch.setattr("voxface.bench.bench_onnx", lambda m, *a: {
        "opset": 20, "max_abs_diff": {"encoder": 1e-6}, "repeat": 1, "device": "cpu",
        "speed": {"batch": 2, "threads": 1, "torch_s": {"encoder": 0.01}, "onnxruntime_s": {"encoder": 0.005},
                  "speedup": {"encoder": 2.0}}})
    monkeypatch.setattr("voxface.bench.time.strftime", lambda *a: "2026-12-06 12:00 UTC")  # one minute
    torch.manual_seed(0)
    a = save_checkpoint(tmp_path / "A.pth.tar", create_model(TINY_CONFIG))
    b = save_checkpoint(tmp_path / "B.pth.tar", create_model(TINY_CONFIG))  # other weights
    assert checkpoint_id(str(a)) != checkpoint_id(str(b))
    out = tmp_path / "B.md"
    run_bench(out, checkpoint=str(a), device="cpu", sections=("model",))
    assert "Kept from" not in out.read_text()
    run_bench(out, checkpoint=str(b), device="cpu", sections=("onnx",))
    md = out.read_text()
    for heading in ("## One face", "## Network throughput"):
        part = md.split(heading)[1]
        assert part.split("\n", 2)[2].startswith("*Kept from an earlier `voxface bench` run: 2026-12-06 12:00 UTC")
        assert f"checkpoint {a} (" in part.split("\n", 3)[2]
    assert "Kept from" not in md.split("## ONNX")[1] and f"Model: {b} (" in md


def test_the_committed_report_still_renders() -> None:
    """Sections are kept across ``--only`` runs: the committed BENCHMARKS.json, written before the
    new fields, renders, each missing field said to be unrecorded rather than guessed."""
    path = Path(__file__).resolve().parents[1] / "BENCHMARKS.json"
    if not path.exists():
        pytest.skip("no committed BENCHMARKS.json")
    res = json.loads(path.read_text())
    md = render_markdown(res)
    assert "## Coarse-to-fine" in md and "Peak RSS of the benchmark process" not in md
    assert "(same result)" not in md
    if any("differing_voxels" not in r for r in res.get("refine", {}).get("rows", [])):
        assert "not recorded" in md
    for line in md.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line


def test_throughput_is_compared_with_the_smallest_batch_measured() -> None:
    """Batch sizes without 1 (``cuda_batch_sizes=(16, 64)``) were each divided by batch 16's and the
    column still said ``vs batch 1``; a kept report's keys are strings."""
    from voxface.bench import _md_throughput

    for tp in ({16: 100.0, 64: 300.0}, {"16": 100.0, "64": 300.0}):
        lines = _md_throughput(tp, repeat=3)
        assert "| batch | faces/s | vs batch 16 |" in lines and "| 64 | 300.0 | 3.00x |" in lines
        assert not any("vs batch 1 " in ln for ln in lines)
    assert "| batch | faces/s | vs batch 1 |" in _md_throughput({1: 10.0, 4: 30.0})


def test_a_kept_pipeline_section_from_before_the_rounds_still_renders(tmp_path, monkeypatch) -> None:
    """A BENCHMARKS.json of 2026-12-02 (its pipeline without rounds or a one-process row): ``--only
    startup`` measured, then failed with KeyError 'rounds' and wrote nothing."""
    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: {
        "python_s": 0.02, "import_voxface_s": 0.03, "voxface_help_s": 0.2, "import_torch_s": 1.3, "help_imports": {}})
    out = tmp_path / "BENCHMARKS.md"
    old = {"machine": {"cpu": "AMD EPYC", "cpus": 2, "torch": "2.9.0", "torch_threads": 2, "cuda": None},
           "date": "2026-12-02 10:00 UTC",
           "pipeline": {"faces": 64, "batch": 16, "workers": 2, "resolution": 64, "meshes_written": 64, "failed": 0,
                        "pipeline_faces_per_s": 22.98, "network_faces_per_s": 50.6,
                        "network_faces_per_s_before_after": [48.9, 52.3], "ratio": 0.454,
                        "per_face_ms": {"read crop": 1.36, "marching cubes + clean-up": 20.1, "write PLY": 2.15},
                        "torch_threads": 2}}
    out.with_suffix(".json").write_text(json.dumps(old))
    run_bench(out, sections=("startup",))
    pipe = out.read_text().split("## Batch pipeline against the network")[1]
    assert pipe.lstrip().startswith("*Kept from an earlier `voxface bench` run: 2026-12-02 10:00 UTC")
    assert "How the times were taken was not recorded in that run." in pipe and "interleaved" not in pipe
    assert "| **23.0** | **45%** |" in pipe
    assert "`--workers 1`" not in pipe and "fastest of 7" not in pipe
    assert json.loads(out.with_suffix(".json").read_text())["pipeline"] == old["pipeline"]


def test_header_formats_both_load_averages() -> None:
    mach = {"cpu": "x", "cpus": 2, "torch": "t", "torch_threads": 2, "cuda": None,
            "load_average": [0.612, 1, 1], "load_average_end": [3.7312, 1, 1]}
    md = render_markdown({"machine": mach, "date": "today"})
    assert "load average 0.6 at the start, 3.7 at the end" in md


def test_machine_counts_the_usable_cores(monkeypatch) -> None:
    """``taskset -c 0`` on a many-core host: one core, not ``os.cpu_count()``."""
    import os

    from voxface.bench import machine

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    m = machine()
    assert m["cpus"] == 1 and m["cpu_count"] == os.cpu_count()


def test_machine_names_the_cuda_device_the_bench_measures(monkeypatch) -> None:
    """``voxface bench --device cuda:1`` measured the second GPU and named the first (device 0)."""
    import torch

    from voxface.bench import machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"GPU {d}")
    assert machine(torch.device("cuda:1"))["cuda"] == "GPU cuda:1"
    assert machine(torch.device("cpu"))["cuda"] == "GPU None"  # the current device (the cuda section's)
    assert machine()["cuda"] == "GPU None"


def test_the_json_is_written_before_the_markdown(tmp_path, monkeypatch) -> None:
    """A run stopped between the two renames (both files are written first, as one set: see
    test_lead_review37's all-or-nothing test) must not leave a report whose numbers the JSON lacks."""
    import os

    import voxface.mesh

    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: {
        "python_s": 0.02, "import_voxface_s": 0.03, "voxface_help_s": 0.2, "import_torch_s": 1.3, "help_imports": {}})
    order = []
    real = os.replace

    def rename(src, dst):
        order.append(Path(dst).suffix)
        if Path(dst).suffix == ".md":
            raise KeyboardInterrupt  # stopped between the two renames
        return real(src, dst)

    monkeypatch.setattr(voxface.mesh.os, "replace", rename)
    out = tmp_path / "BENCHMARKS.md"
    with pytest.raises(KeyboardInterrupt):
        run_bench(out, sections=("startup",))
    assert order == [".json", ".md"]
    assert json.loads(out.with_suffix(".json").read_text())["startup"]["voxface_help_s"] == 0.2 and not out.exists()


def test_throughput_rounds_interleave_the_batch_sizes_over_the_same_faces(tiny_model, monkeypatch) -> None:
    """The throughput table's "vs batch 1" ratios compared medians taken one batch size after
    another, so load that changed meanwhile (3.5 to 11.9 in one run here) showed as a 5x batch
    speed-up: every round now runs each batch size in turn over the same faces, after one warm-up
    call each, and the report shows the range of the rounds' own ratios."""
    import voxface.bench as bench

    calls: list[int] = []
    monkeypatch.setattr(bench, "_forward", lambda model, x: calls.append(len(x)))
    rounds = bench.throughput_rounds(tiny_model, (1, 4, 4, 3), rounds=2)
    assert set(rounds) == {1, 4, 3} and all(len(v) == 2 and min(v) > 0 for v in rounds.values())
    one_round = [1] * 4 + [4] + [3] * 2  # 4 faces each: the largest batch, in whole batches
    assert calls == [1, 4, 3] + one_round * 2
    assert bench.bench_model(tiny_model, (2,), repeat=1).keys() == {2}

    tp = {1: 10.0, 4: 30.0}
    kept = json.loads(json.dumps({"rounds": 2, "faces_per_s": {1: [10.0, 5.0], 4: [30.0, 25.0]}}))  # keys: strings
    md = "\n".join(bench._md_throughput(tp, repeat=2, rounds=kept))
    assert "2 interleaved rounds" in md and "| 4 | 30.0 | 3.00x (3.00-5.00x) |" in md and "| 1 | 10.0 | 1.00x |" in md
    old = "\n".join(bench._md_throughput(tp, repeat=5))  # a report from before the rounds
    assert "the median of 5 runs after a warm-up, one batch size after another" in old and "interleaved" not in old


def test_cuda_peak_memory_is_the_cuda_sections_own(monkeypatch) -> None:
    """``peak_gpu_mb`` read torch's peak counter without resetting it, so with the model sections run
    on the GPU first (``--device cuda``, or ``auto`` on a GPU machine) it was theirs, not the table's."""
    import types

    import voxface.bench as bench

    events: list[str] = []
    model = types.SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "GPU")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: events.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: events.append("peak") or 3 * 2**20)
    monkeypatch.setattr(bench, "bench_one_face", lambda m, repeat: events.append("one") or {"ms": {}, "repeat": 1})
    monkeypatch.setattr(bench, "_throughput", lambda m, b, r: events.append("throughput") or ({}, {}))
    monkeypatch.setattr(bench, "bench_pipeline", lambda *a: events.append("pipeline") or {})
    monkeypatch.setattr(bench, "bench_refine", lambda *a: events.append("refine") or {})
    monkeypatch.setattr("voxface.reconstruct.default_workers", lambda m: 2)
    res = bench.bench_cuda(model, BenchSizes(repeat=1))
    assert events == ["reset", "one", "throughput", "pipeline", "refine", "peak"] and res["peak_gpu_mb"] == 3.0


def test_pipeline_baseline_feeds_the_network_as_the_pipeline_does(tiny_model, monkeypatch) -> None:
    """The "network alone" side ran contiguous channels-first inputs made on the model's device, while
    the pipeline stacks its crops on the host channels last and copies each batch over: another
    memory layout for every layer, and (on a GPU) no host-to-device copy. Both sides now hand
    ``encode`` the same layout, from the host."""
    from voxface.bench import bench_pipeline

    seen: dict[str, set] = {"bench": set(), "pipeline": set()}
    side = ["bench"]
    encode = type(tiny_model).encode

    def spy(self, images):
        seen[side[0]].add((images.stride(1), images.is_contiguous(memory_format=torch.channels_last)))
        return encode(self, images)

    monkeypatch.setattr(type(tiny_model), "encode", spy)
    import voxface.reconstruct as rec

    run = rec.reconstruct_files

    def pipeline(*a, **k):
        side[0] = "pipeline"
        try:
            return run(*a, **k)
        finally:
            side[0] = "bench"

    monkeypatch.setattr(rec, "reconstruct_files", pipeline)
    bench_pipeline(tiny_model, n=3, batch=2, workers=1, rounds=1)  # in this process: every encode is seen
    assert seen["pipeline"] and seen["bench"] == seen["pipeline"] == {(1, True)}


def test_photos_compare_the_workers_in_interleaved_rounds(monkeypatch) -> None:
    """The whole-photo table compared --workers 2 with --workers 1 from one run each, one after the
    other: rounds now alternate them, each side's fastest is reported with every round, and each
    round writes into an emptied folder."""
    import types

    import voxface.bench as bench
    from voxface.reconstruct import BatchSummary

    calls: list[int] = []

    def fake(model, paths, out, *, workers, **kw):
        assert not Path(out).exists()  # the previous round's outputs are gone
        Path(out).mkdir()
        calls.append(workers)
        return BatchSummary()

    monkeypatch.setattr("voxface.reconstruct.reconstruct_files", fake)
    monkeypatch.setattr("voxface.detect.detect_faces", lambda img: [])
    ph = bench.bench_photos(types.SimpleNamespace(device=torch.device("cpu")), n=2, batch=2, workers=2, repeat=3)
    assert calls == [2, 1] * 3 and ph["rounds"] == 3
    assert ph["photos_per_s"] == max(ph["rounds_photos_per_s"]["pipeline"]) and len(ph["rounds_photos_per_s"]["one_process"]) == 3
    res = {"photos": ph, "pipeline": {"network_faces_per_s": 10.0, "batch": 2}}
    md = "\n".join(bench._md_photos(res))
    assert "3 interleaved rounds, each side's fastest reported (every round: pipeline " in md and "one run each" not in md
    old = {k: v for k, v in ph.items() if k not in ("rounds", "rounds_photos_per_s")}  # a report from before
    assert "batch 2, one run each:" in "\n".join(bench._md_photos({**res, "photos": old}))


def test_memory_probes_set_malloc_as_the_measuring_process_is_set(monkeypatch) -> None:
    """The report's header says glibc malloc keeps freed memory, as the ``voxface`` command sets it,
    but the peak-RSS processes ran with the platform's malloc: they now set it as this process is
    set, and the section records which."""
    import subprocess
    import types

    import voxface.bench as bench
    import voxface.device as device

    codes: list[str] = []

    def fake_run(cmd, **kw):
        codes.append(cmd[-1])
        return types.SimpleNamespace(returncode=0, stdout='{"loaded_mb": 1, "peak_mb": 2}\n', stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    for kept in (True, False):
        monkeypatch.setattr(device, "freed_memory_kept", kept)
        codes.clear()
        mem = bench.bench_memory(None, 2, 2)
        assert mem["freed_memory_kept"] is kept and len(codes) == 2
        assert all(c.endswith(f", {kept!r})") for c in codes), codes

    order: list[str] = []

    def load(*a, **k):
        order.append("load")
        raise RuntimeError("stop")

    monkeypatch.setattr(device, "keep_freed_memory", lambda: order.append("keep") or True)
    monkeypatch.setattr("voxface.checkpoint.load_model", load)
    for keep, want in ((True, ["keep", "load"]), (False, ["load"])):
        order.clear()
        with pytest.raises(RuntimeError, match="stop"):
            bench._memory_probe(None, "one", 1, 1, keep)
        assert order == want
    base = {"machine": {"torch": "t", "torch_threads": 1, "cuda": None}, "date": "d",
            "memory": {"faces": 2, "batch_size": 2, "one": {"loaded_mb": 1, "peak_mb": 2},
                       "batch": {"loaded_mb": 1, "peak_mb": 2}}}
    assert "Malloc in each process" not in render_markdown(base)  # a report from before: not recorded
    base["memory"]["freed_memory_kept"] = True
    assert "Malloc in each process: glibc keeping freed memory" in render_markdown(base)


def test_benchmark_scripts_say_a_voxface_error_in_one_line(tmp_path) -> None:
    """The scripts under benchmarks/ ended in a traceback without ICT-FaceKit (readout_probe.py in a
    BrokenProcessPool from its render processes, the missing data unnamed at the end), a missing
    checkpoint, or (decoder_oracle.py) its default cache not yet written: each is now one ``error:``
    line and exit status 1."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = sorted(p for p in root.glob("*.py") if not p.name.startswith("_"))
    for p in scripts:  # network_stages.py catches its own (its main returns the results to tests)
        assert p.name == "network_stages.py" or p.read_text().rstrip().endswith("run_main(main)"), p.name
    env = {k: v for k, v in os.environ.items() if k != "VOXFACE_ICT_ROOT"}
    for args, words in (([root / "readout_probe.py", "--num-train", "4", "--num", "2"], "ICT-FaceKit not found"),
                        ([root / "decoder_oracle.py", tmp_path / "missing.pth.tar"], "missing.pth.tar"),
                        ([root / "mirror_tta.py", "--num", "2"], "ICT-FaceKit not found")):
        r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=300)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and words in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_data_section_compares_in_interleaved_rounds() -> None:
    """The data section's two comparisons (1 process against the workers; scanline against open3d's
    occupancy) were each one pass or five runs of one side, then the other: ``_rounds`` now runs
    every side in turn each round after its warm-up, and the report says so (reports from before
    still say how theirs were taken)."""
    from voxface.bench import _rounds

    calls: list[str] = []
    secs = _rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3 and all(len(v) == 3 and min(v) >= 0 for v in secs.values())
    assert _rounds({"a": lambda: calls.append("x")}, rounds=0, warmup=0)["a"]  # at least one round

    base = {"machine": {"torch": "t", "torch_threads": 1, "cuda": None}, "date": "d"}
    data = {"workers": 2, "samples_per_s_1_process": 10.0, "samples_per_s_2_workers": 18.0,
            "timed_samples": {"1_process": 8, "workers": 32}, "stage_repeat": 5,
            "stage_ms": {"occupancy 64^3 (scanline)": 2.0, "occupancy 64^3 (open3d, reference)": 8.0}}
    old = render_markdown({**base, "data": data})
    assert "one timed pass each after a warm-up" in old and "5 runs after a warm-up, one stage after another" in old
    new = render_markdown({**base, "data": {**data, "rounds": 2, "stage_interleaved": True,
                                            "rounds_samples_per_s": {"1_process": [9.0, 10.0], "workers": [18.0, 17.0]}}})
    assert ("2 interleaved rounds after a warm-up (a pass of 8 samples in 1 process, then 32 over the workers), each "
            "side's fastest reported (every round: 1 process 9.0, 10.0; workers 18.0, 17.0 samples/s)") in new
    assert "5 interleaved runs (every stage in turn)" in new and "one timed pass" not in new


def test_pipeline_table_says_when_crops_failed() -> None:
    """The batch-pipeline table's faces/s counts the meshes written (the network's every crop), but a
    run in which crops failed (a checkpoint whose grids hold no surface) showed only a low ratio:
    the report now says how many failed."""
    from voxface.bench import _md_pipeline

    p = {"faces": 8, "batch": 4, "workers": 1, "resolution": 64, "torch_threads": 1, "network_faces_per_s": 10.0,
         "pipeline_faces_per_s": 4.0, "ratio": 0.4, "per_face_ms": {"read crop": 1.0}, "failed": 3}
    assert "3 of the 8 crops failed in the last round" in "\n".join(_md_pipeline(p, False, 1))
    assert "failed" not in "\n".join(_md_pipeline({**p, "failed": 0}, False, 1))


def test_onnx_rounds_say_how_many_calls_each_round_took() -> None:
    """``onnx_speed`` splits ``repeat`` calls between its rounds (``ceil(repeat / rounds)`` each);
    the report said each round was the median of all ``repeat`` (5 where each round took 2)."""
    path = Path(__file__).resolve().parents[1] / "BENCHMARKS.json"
    if not path.exists():
        pytest.skip("no committed BENCHMARKS.json")
    res = json.loads(path.read_text())
    if "onnx" not in res or not res["onnx"]["speed"].get("rounds"):
        pytest.skip("the committed report has no ONNX rounds")
    res["onnx"]["repeat"], res["onnx"]["speed"]["rounds"] = 5, 3
    assert "each round the median of 2 calls" in render_markdown(res).split("## ONNX")[1]
    res["onnx"]["repeat"] = 6
    assert "each round the median of 2 calls" in render_markdown(res).split("## ONNX")[1]
    res["onnx"]["repeat"] = 7
    assert "each round the median of 3 calls" in render_markdown(res).split("## ONNX")[1]


@pytest.mark.parametrize("kind, calls", [("cpu", []), ("cuda", ["cuda"]), ("mps", ["mps"])])
def test_timings_wait_for_the_accelerator_they_ran_on(monkeypatch, kind, calls):
    """CUDA and MPS queue kernels asynchronously: a timer that does not wait times the launch."""
    from types import SimpleNamespace

    from voxface import bench

    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: seen.append("cuda"))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: seen.append("mps"))
    bench._sync(SimpleNamespace(device=torch.device(kind)))
    assert seen == calls

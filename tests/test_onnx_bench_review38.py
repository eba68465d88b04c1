"""Review 38 of the ONNX export, the benchmark command and device selection: ``voxface/onnx.py``,
``voxface/bench.py``, ``voxface/cli/_bench.py``, ``voxface/device.py``."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_a_graph_too_large_for_one_onnx_file_is_refused_before_anything_is_written(tiny_model, tmp_path, monkeypatch,
                                                                                    part):
    """A graph whose weights pass protobuf's 2 GiB (repro: a tiny config with encoder readout flatten,
    readout_channels 368: 2.07 GiB of encoder weights) was exported for minutes: torch's exporter
    spilled every weight into a loose file named after it in the output folder (8 files, 2.2 GB,
    left there), then onnx.save failed with protobuf's 'EncodeError: Failed to serialize proto' (a
    traceback in the CLI). The export is refused first, in one line naming the graph and its size,
    with nothing made. The limit is lowered here to the tiny model's sizes."""
    pytest.importorskip("onnx")
    import voxface.onnx as vo
    from voxface.errors import VoxfaceError

    size = {n: 4 * sum(t.numel() for t in (*getattr(tiny_model, n).parameters(), *getattr(tiny_model, n).buffers()))
            for n in ("encoder", "decoder")}
    monkeypatch.setattr(vo, "MAX_GRAPH_WEIGHT_BYTES", size[part] - 1, raising=False)
    assert size["encoder"] < size["decoder"]  # the encoder, checked first, passes the decoder's limit
    out = tmp_path / "new" / "graphs"
    ckpt = tmp_path / "big.pth"
    with pytest.raises(VoxfaceError) as e:
        vo.export_onnx(tiny_model, out, check=False, speed=False, checkpoint=ckpt)
    msg = str(e.value)
    assert msg.startswith(f"{ckpt}: the {part}'s weights take ") and "one ONNX graph holds at most" in msg
    assert "\n" not in msg
    assert not (tmp_path / "new").exists()  # nothing made, not even the folder


@pytest.fixture
def graphs_of(tiny_model, tmp_path):
    """``make(encoder_example, **export_kwargs)``: the tiny model's graphs in a folder, the encoder
    replaced by one exported by hand from ``encoder_example`` (a foreign exporter's graph)."""
    pytest.importorskip("onnxruntime")
    import warnings

    import torch

    from voxface.onnx import _graphs, export_onnx

    out = tmp_path / "g"
    export_onnx(tiny_model, out, check=False, speed=False)

    def make(example, model=tiny_model, **kwargs):
        enc, _ = _graphs(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(enc, (example,), str(out / "encoder.onnx"), input_names=["image"],
                              output_names=["z_id", "z_exp", "pose"], opset_version=20, dynamo=False, **kwargs)
        return out

    return make


def test_a_graph_of_a_fixed_batch_is_one_line_in_the_check_and_the_timing(tiny_model, graphs_of):
    """check_onnx and onnx_speed of an encoder exported without a dynamic batch axis (torch.onnx.export
    of a batch of 2, the tutorials' way): the check raised onnxruntime's own InvalidArgument ('Got
    invalid dimensions for input: image for the following indices\\n index: 0 Got: 1 Expected: 2\\n
    ...', three lines, no VoxfaceError), and the timing said 'onnxruntime failed at batch 4 (...); a
    smaller --batch needs less memory', a memory hint for a graph that runs no batch but 2. Both say
    that the graph has no dynamic batch axis, in one line naming it, before any run."""
    import torch

    from voxface.errors import VoxfaceError
    from voxface.onnx import check_onnx, onnx_speed

    out = graphs_of(torch.rand(2, 3, tiny_model.image_size, tiny_model.image_size))
    with pytest.raises(VoxfaceError) as e:
        check_onnx(tiny_model, out)
    assert str(e.value) == (f"{out / 'encoder.onnx'}: takes a fixed batch of 2, no dynamic batch axis as voxface's "
                            "graphs have: export them with voxface export-onnx")
    with pytest.raises(VoxfaceError, match=r"encoder.onnx: takes a fixed batch of 2, no dynamic batch axis"):
        onnx_speed(tiny_model, out, batch=4, repeat=1)


def test_a_float16_graph_is_one_line_in_the_check(tiny_config, tiny_model, graphs_of):
    """An encoder exported from a half-precision copy takes float16: check_onnx fed it float32 and
    raised onnxruntime's 'INVALID_ARGUMENT : Unexpected input data type. Actual: (tensor(float)) ,
    expected: (tensor(float16))'. It is one line naming the graph and what it takes."""
    import torch

    from voxface.errors import VoxfaceError
    from voxface.models import create_model
    from voxface.onnx import check_onnx

    s = tiny_model.image_size
    out = graphs_of(torch.rand(2, 3, s, s).half(), model=create_model(tiny_config).eval().half(),
                    dynamic_axes={"image": {0: "batch"}})
    with pytest.raises(VoxfaceError) as e:
        check_onnx(tiny_model, out)
    assert str(e.value) == (f"{out / 'encoder.onnx'}: takes image as tensor(float16); voxface's graphs take float32 "
                            "(tensor(float)): export them with voxface export-onnx")


@pytest.mark.parametrize("earlier", [True, False])
def test_sigterm_in_voxface_bench_says_the_report_is_not_written(tmp_path, monkeypatch, capsys, earlier):
    """SIGTERM (a job's time limit) in `voxface bench`, minutes into its sections, ended with a bare
    'terminated' (since the root group took SIGTERM as Ctrl-C; before, no word at all), where
    export-onnx says what became of its output: a user could not tell whether BENCHMARKS.md held a
    partial run. It says the report was not written, and that an earlier one is left as it was
    (the report is written all at once after the last section); exit 143, the earlier files unchanged."""
    import json
    import os
    import signal
    import sys
    import time

    import voxface.bench
    import voxface.cli

    out = tmp_path / "B.md"
    if earlier:
        out.write_text("# voxface benchmarks\n\nan earlier run\n")
        out.with_suffix(".json").write_text(json.dumps({"machine": {}, "date": "2026-12-01 00:00 UTC"}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def startup(*args, **kwargs):  # the first section, well under way
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this

    monkeypatch.setattr(voxface.bench, "bench_startup", startup)
    monkeypatch.setattr(sys, "argv", ["voxface", "bench", "--only", "startup", "-o", str(out)])
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        voxface.cli.main()
    assert e.value.code == 143 and signal.getsignal(signal.SIGTERM) is previous
    err = capsys.readouterr().err.splitlines()
    assert err == ["bench: startup", f"error: terminated; {out} not written"
                   + (" (the earlier report there is left as it was)" if earlier else "")]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_onnx_tables_say_their_times_are_a_batchs(tmp_path):
    """The ONNX tables of BENCHMARKS.md and onnx.md headed their columns 'PyTorch ms' and
    'onnxruntime ms' beside 'batch 4': the times are of a whole batch (encoder 14.6 ms for 4 crops),
    read as a face's against the one-face table (encode 8.5 ms). The columns say 'ms a batch'; the
    report's parity line says what it was measured on (random crops at batch 1 and 3, check_onnx)."""
    from pathlib import Path

    from voxface.bench import render_markdown
    from voxface.onnx import OnnxExport, _markdown

    speed = {"batch": 4, "threads": 2, "rounds": 3, "torch_s": {"encoder": 0.0146, "decoder": 0.0528},
             "onnxruntime_s": {"encoder": 0.0117, "decoder": 0.1185}, "speedup": {"encoder": 1.25, "decoder": 0.45},
             "speedup_range": {"encoder": [1.2, 1.3], "decoder": [0.4, 0.5]}}
    diff = {"z_id": 2e-6, "z_exp": 3e-7, "pose": 5e-7, "logits": 2.5e-5}
    res = {"machine": {"torch": "2", "torch_threads": 2, "cuda": None}, "date": "2026-12-07 00:00 UTC",
           "onnx": {"opset": 20, "max_abs_diff": diff, "speed": speed, "repeat": 3, "device": "cpu"}}
    md = render_markdown(res)
    assert "| graph (batch 4, 2 threads) | PyTorch ms a batch | onnxruntime ms a batch | speed-up |" in md
    assert "| encoder | 14.6 | 11.7 | 1.25x (1.20-1.30x) |" in md
    assert "largest difference to PyTorch (random crops, batch 1 and 3): z_id 2.0e-06" in md
    sig = {g: {"inputs": {"x": ["B", 1]}, "outputs": {"y": ["B", 1]}} for g in ("encoder", "decoder")}
    onnx_md = _markdown(OnnxExport(Path("encoder.onnx"), Path("decoder.onnx"), 20, diff, speed, sig))
    assert "| graph | PyTorch ms a batch of 4 | onnxruntime ms a batch of 4 | speed-up | rounds' range |" in onnx_md
    assert "| encoder | 14.6 | 11.7 | 1.25x | 1.20-1.30x |" in onnx_md

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

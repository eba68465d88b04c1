"""Where the network's time goes, stage by stage, against batch size: a diagnosis for the GPU
table's per-face slowdown above batch 16 (BENCHMARKS.md, H100: 2,365 faces/s at 16, 1,032 at 64).

    python benchmarks/network_stages.py [--checkpoint CKPT] [--device auto] [--batch-sizes 1,4,16,64,256]
                                        [--repeat 5] [--json OUT.json]

For each batch size, on random crops, the median over ``--repeat`` runs (after one warm-up) of:
``encode``; the decoder's ``features`` (its convolution stack); ``sample`` (fields and the template
sampled through the warp: ``logits_from_features``); ``to host`` (the logits copied to host memory
as ``voxface bench`` and the batch pipeline do, pageable); and, for comparison, the same copy into a
reused pinned buffer (``to host, pinned``), the one change that would not alter any number the
pipeline computes. An accelerator is synchronised around every stage, so each is its own time.
Prints a table of milliseconds per face, and the pipeline's sum (``encode + features + sample +
to host``) as faces per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from _cli import at_least, number_list  # beside this script

from voxface.bench import _sync
from voxface.checkpoint import load_model
from voxface.errors import VoxfaceError
from voxface.mesh import atomic_write_bytes, check_file_name, output_problem

STAGES = ("encode", "features", "sample", "to host", "to host, pinned")


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def stage_times(model: Any, batch: int, repeat: int = 5) -> dict[str, float]:
    """Median seconds of each of :data:`STAGES` for one batch of ``batch`` random crops."""
    dev = model.device
    sync = lambda: _sync(model)  # noqa: E731 - CUDA and MPS (Apple silicon) alike: an MPS stage timed its launch
    s = model.image_size
    x = torch.rand(batch, 3, s, s, device=dev)
    dec = model.decoder
    pinned = None
    runs: dict[str, list[float]] = {k: [] for k in STAGES}
    with torch.inference_mode():
        for r in range(int(repeat) + 1):  # the first run warms up (allocations, kernel selection)
            t_enc, lat = _timed(lambda: model.encode(x), sync)
            z = torch.cat([lat.z_id, lat.z_exp], dim=1).to(next(dec.parameters()).dtype)
            t_feat, f = _timed(lambda: dec.features(z), sync)
            t_samp, logits = _timed(lambda: dec.logits_from_features(f).float(), sync)
            t_host, _ = _timed(lambda: logits.cpu().numpy(), sync)
            if dev.type == "cuda":
                if pinned is None or pinned.shape != logits.shape:
                    pinned = torch.empty(logits.shape, dtype=logits.dtype, pin_memory=True)
                t_pin, _ = _timed(lambda: pinned.copy_(logits, non_blocking=True).numpy(), sync)
            else:
                t_pin = t_host  # host memory already: nothing to pin
            if r:
                for k, v in zip(STAGES, (t_enc, t_feat, t_samp, t_host, t_pin)):
                    runs[k].append(v)
    return {k: statistics.median(v) for k, v in runs.items()}


def table(results: dict[int, dict[str, float]]) -> str:
    """Markdown: milliseconds per face of each stage, and the pipeline's faces per second."""
    lines = ["| batch | " + " | ".join(f"{k} ms/face" for k in STAGES) + " | faces/s |",
             "|---" * (len(STAGES) + 2) + "|"]
    for b, t in sorted(results.items()):
        total = sum(t[k] for k in STAGES[:4])
        lines.append(f"| {b} | " + " | ".join(f"{1000 * t[k] / b:.3f}" for k in STAGES) + f" | {b / total:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-sizes", type=number_list(int, minimum=1), default=[1, 4, 16, 64, 256],
                    help="comma-separated (default: 1,4,16,64,256)")
    ap.add_argument("--repeat", type=at_least(1), default=5)
    ap.add_argument("--json", default=None, help="also write the seconds per batch here")
    args = ap.parse_args(argv)
    try:  # no such device, a bad checkpoint, a --json that cannot be written: one line, no traceback
        if args.json is not None:  # before the timing, not after it (a lent GPU's minutes)
            check_file_name(args.json)
            problem = output_problem(Path(args.json))
            if problem:
                raise VoxfaceError(problem, args.json)
        model = load_model(args.checkpoint, device=args.device).eval()
        name = (torch.cuda.get_device_name(model.device) if model.device.type == "cuda"
                else f"cpu, {torch.get_num_threads()} threads")
        results = {b: stage_times(model, b, args.repeat) for b in dict.fromkeys(args.batch_sizes)}
        print(f"network stages on {name} (torch {torch.__version__}), median of {args.repeat}")
        print(table(results))
        if args.json is not None:
            atomic_write_bytes(args.json, json.dumps({"device": name, "seconds": results}, indent=1).encode())
    except VoxfaceError as e:
        raise SystemExit(f"error: {e}") from None
    return results


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)

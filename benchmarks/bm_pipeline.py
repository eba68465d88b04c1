"""Batch pipeline against the network, with today's ``extract_mesh`` and with
``benchmarks/extract_mesh_fast.patch`` applied (in memory; no file of the package is changed).

    nice -n 19 .venv/bin/python benchmarks/bm_pipeline.py CKPT [--faces 64] [--batch 16] [--rounds 3]

Prints, as JSON: per-face ``extract_mesh`` time of both versions on the bundled face (and
whether they give the same mesh), and the ``reconstruct_files`` / network throughput ratio of
both, measured interleaved ``--rounds`` times (medians), the network timed right before and
after each pipeline run. The patch replaces ``mesh.volume`` (all mass properties) by a signed
volume and the face-adjacency component labelling by a sparse vertex graph.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def patched_mesh_module(folder: Path):
    """``voxface/mesh.py`` with the patch applied, imported as ``voxface._mesh_patched``."""
    src = folder / "mesh.py"
    src.write_text((ROOT / "voxface" / "mesh.py").read_text())
    subprocess.run(["patch", "-s", str(src), str(ROOT / "benchmarks" / "extract_mesh_fast.patch")], check=True)
    spec = importlib.util.spec_from_file_location("voxface._mesh_patched", src)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "voxface"
    sys.modules["voxface._mesh_patched"] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import voxface.mesh as vm
    from voxface.bench import _astronaut_crop, _forward, _median_time, _write_crops
    from voxface.checkpoint import load_model
    from voxface.reconstruct import reconstruct_files

    model = load_model(args.checkpoint, device="cpu")
    orig = vm.extract_mesh
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        fast = patched_mesh_module(d).extract_mesh
        _, crop = _astronaut_crop(model)
        logits = _forward(model, torch.from_numpy(crop).permute(2, 0, 1)[None])[0, 0]
        a, b = orig(logits, model.grid).mesh, fast(logits, model.grid).mesh
        out = {"same_mesh": bool(np.array_equal(a.faces, b.faces) and np.allclose(a.vertices, b.vertices)),
               "extract_ms": {"current": _median_time(lambda: orig(logits, model.grid), 10) * 1e3,
                              "patched": _median_time(lambda: fast(logits, model.grid), 10) * 1e3}}
        paths = _write_crops(model, args.faces, d / "in")
        x = torch.rand(args.batch, 3, model.image_size, model.image_size)

        def network() -> float:
            t = time.perf_counter()
            for _ in range(args.faces // args.batch):
                _forward(model, x)
            return args.batch * (args.faces // args.batch) / (time.perf_counter() - t)

        network()
        ratios: dict[str, list[float]] = {"current": [], "patched": []}
        for r in range(args.rounds):
            for name, fn in (("current", orig), ("patched", fast)):
                vm.extract_mesh = fn  # reconstruct_files imports it at call time
                try:
                    n0 = network()
                    t = time.perf_counter()
                    reconstruct_files(model, paths, d / f"out{r}{name}", detect=False, batch_size=args.batch,
                                      workers=args.workers, progress=False)
                    pipe = args.faces / (time.perf_counter() - t)
                    n1 = network()
                finally:
                    vm.extract_mesh = orig
                ratios[name].append(2 * pipe / (n0 + n1))
        out["pipeline_over_network"] = {k: {"median": statistics.median(v), "runs": v} for k, v in ratios.items()}
        out.update(faces=args.faces, batch=args.batch, workers=args.workers, torch_threads=torch.get_num_threads())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

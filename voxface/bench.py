"""``voxface bench``: measured speed, written to BENCHMARKS.md and BENCHMARKS.json.

These machines are shared and noisy, so every comparison is a ratio of two measurements taken in
the same run, and each timing is the median of several repeats.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _median_time(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def machine() -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (OSError, ValueError):
        pass
    return info


def bench_data(n: int = 96, workers: int = 2, ict_root: str | None = None) -> dict[str, Any]:
    """Samples/s of (128x128 crop + 64^3 occupancy + 2048 surface points), 1 process vs ``workers``."""
    import multiprocessing as mp

    from .data.ict import load_ict
    from .data.synthetic import FaceSampler

    sampler = FaceSampler(load_ict(ict_root), seed=0)
    sampler.sample(0, 64, swap=False, n_points=2048)
    t = time.perf_counter()
    m = max(8, n // 4)
    for i in range(m):
        sampler.sample(i, 64, swap=False, n_points=2048)
    single = m / (time.perf_counter() - t)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, _bench_init, (ict_root,)) as pool:
        pool.map(_bench_one, range(workers * 2))  # warm up each worker
        t = time.perf_counter()
        pool.map(_bench_one, range(n), chunksize=4)
        multi = n / (time.perf_counter() - t)
    # stage split of one sample (single process)
    stages = {}
    idx = 1000
    a, e = sampler.id_coeffs(idx), sampler.exp_coeffs(idx)
    stages["mesh assembly"] = _median_time(lambda: sampler.head.person(a).full_vertices(e))
    person = sampler.head.person(a)
    verts = person.full_vertices(e)
    stages["render (ray cast + shade + background + photometric)"] = _median_time(lambda: sampler.render(idx, verts))
    from .config import FrameConfig
    from .frame import Grid

    grid = Grid.from_config(FrameConfig(), 64)
    closed = person.closed_head(e)
    stages["occupancy 64^3 (scanline)"] = _median_time(lambda: sampler.occupancy(closed, grid))
    from .occupancy import occupancy_grid

    stages["occupancy 64^3 (open3d list_intersections, reference)"] = _median_time(
        lambda: occupancy_grid(closed, sampler.head.faces, grid, method="raycast"))
    stages["2048 surface points"] = _median_time(lambda: sampler.surface_points(idx, closed, 2048))
    return {"samples_per_s_1_process": single, f"samples_per_s_{workers}_workers": multi, "workers": workers,
            "stage_ms": {k: v * 1000 for k, v in stages.items()}}


_bench_state: dict[str, Any] = {}


def _bench_init(ict_root: str | None) -> None:
    from .data.ict import load_ict
    from .data.synthetic import FaceSampler

    _bench_state["s"] = FaceSampler(load_ict(ict_root), seed=0)


def _bench_one(i: int) -> int:
    _bench_state["s"].sample(i, 64, swap=False, n_points=2048)
    return i


def bench_model(model: Any, batch_sizes=(1, 4, 16), repeat: int = 3) -> dict[str, Any]:
    """Forward throughput (faces/s) of encode+decode against batch size."""
    import torch

    out = {}
    s = model.image_size
    for b in batch_sizes:
        x = torch.rand(b, 3, s, s, device=model.device)

        def run():
            with torch.inference_mode():
                lat = model.encode(x)
                model.decode(lat.z_id, lat.z_exp)

        out[b] = b / _median_time(run, repeat=repeat)
    return out


def bench_one_face(model: Any) -> dict[str, float]:
    """Per-stage time (ms) of reconstructing the bundled photo, end to end."""
    import skimage.data
    import torch

    from .detect import detect_faces, face_crop_box, crop_image
    from .image import load_image
    from .mesh import export_mesh, extract_mesh

    photo = skimage.data.astronaut()
    st: dict[str, float] = {}
    img = load_image(photo)
    st["detect"] = _median_time(lambda: detect_faces(img))
    box = face_crop_box(detect_faces(img)[0])
    st["preprocess (crop)"] = _median_time(lambda: crop_image(img, box, model.image_size))
    crop = torch.from_numpy(crop_image(img, box, model.image_size)).permute(2, 0, 1)[None].to(model.device)
    with torch.inference_mode():
        st["encode"] = _median_time(lambda: model.encode(crop))
        lat = model.encode(crop)
        st["decode"] = _median_time(lambda: model.decode(lat.z_id, lat.z_exp))
        logits = model.decode(lat.z_id, lat.z_exp)[0, 0].float().cpu().numpy()
    st["marching cubes + clean-up"] = _median_time(lambda: extract_mesh(logits, model.grid))
    mesh = extract_mesh(logits, model.grid).mesh
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        st["export (ply)"] = _median_time(lambda: export_mesh(mesh, Path(d) / "m.ply"))
    return {k: v * 1000 for k, v in st.items()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(out_md: str | os.PathLike = "BENCHMARKS.md", *, checkpoint: str | None = None, device: str = "auto",
              sections: tuple[str, ...] = ("data", "model"), ict_root: str | None = None, data_samples: int = 96) -> dict:
    """Run the selected sections and write ``out_md`` and its ``.json`` twin."""
    from .checkpoint import load_model
    from .mesh import atomic_write_bytes

    res: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "data" in sections:
        res["data"] = bench_data(data_samples, ict_root=ict_root)
    if "model" in sections:
        model = load_model(checkpoint, device=device)
        res["one_face_ms"] = bench_one_face(model)
        res["throughput_faces_per_s"] = bench_model(model)
        res["peak_rss_mb"] = peak_rss_mb()
    md = render_markdown(res)
    out_md = Path(out_md)
    atomic_write_bytes(out_md, md.encode())
    atomic_write_bytes(out_md.with_suffix(".json"), json.dumps(res, indent=1, default=str).encode())
    return res


def render_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# voxface benchmarks", "",
             "Produced by `voxface bench` (`make bench`); every comparison is a ratio measured in the same run, "
             "each time the median of repeats. Machine: "
             f"{m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GB, torch {m['torch']} "
             f"({m['torch_threads']} threads), CUDA: {m['cuda'] or 'none'}; {res['date']}.", ""]
    if "data" in res:
        d = res["data"]
        w = d["workers"]
        lines += ["## Synthetic data generation", "",
                  "One sample = 128x128 crop (2x supersampled ray cast, shading, background, photometric noise) "
                  "+ exact 64^3 occupancy + 2048 surface points with normals.", "",
                  "| processes | samples/s |", "|---|---|",
                  f"| 1 | {d['samples_per_s_1_process']:.1f} |",
                  f"| {w} workers | {d[f'samples_per_s_{w}_workers']:.1f} |", "",
                  "| stage (1 sample, 1 process) | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in d["stage_ms"].items()]
        sl = d["stage_ms"]
        ref = [v for k, v in sl.items() if "reference" in k]
        fast = [v for k, v in sl.items() if "scanline" in k]
        if ref and fast:
            lines += ["", f"Scanline occupancy is {ref[0] / fast[0]:.1f}x faster than open3d's ray listing on the same head (same result)."]
        lines += [""]
    if "one_face_ms" in res:
        lines += ["## One face, end to end (bundled photo)", "", "| stage | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in res["one_face_ms"].items()]
        lines += ["", f"Peak RSS of the benchmark process: {res['peak_rss_mb']:.0f} MB.", "",
                  "## Network throughput (encode + decode, no meshing)", "", "| batch | faces/s | vs batch 1 |", "|---|---|---|"]
        tp = res["throughput_faces_per_s"]
        b1 = tp[min(tp)]
        lines += [f"| {b} | {v:.1f} | {v / b1:.2f}x |" for b, v in tp.items()]
        lines += [""]
    return "\n".join(lines) + "\n"

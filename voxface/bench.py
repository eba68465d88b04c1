"""``voxface bench``: measured speed and memory, written to BENCHMARKS.md and BENCHMARKS.json.

These machines are shared and noisy, so every comparison is a ratio of two measurements taken in
the same run (interleaved where it matters), and the load average is recorded beside the numbers.
How each section takes its times (the median of repeats after a warm-up, or each side's fastest
of interleaved rounds) is recorded with it and said in its part of the report. Sections (``run_bench(sections=...)``):

==========  ========================================================================================
startup     wall time of ``voxface --help`` and ``import voxface`` (and whether ``--help`` imports torch or
            open3d), against ``import torch``; fresh subprocesses
data        synthetic ICT-FaceKit sample generation, 1 process vs workers (needs the ICT data)
model       one face per stage (load, detect, preprocess, encode, decode, refine, marching cubes,
            export); network throughput against batch size
pipeline    end-to-end ``reconstruct_files`` on N ready crops (``detect=False``, meshes written to a
            temporary folder) against the network's own forward throughput at the same batch size
refine      coarse-to-fine (MISE) against dense evaluation of the refinement head at 128^3 / 256^3:
            time (interleaved rounds after a warm-up), evaluated points, IoU and differing voxels
onnx        onnxruntime against PyTorch (parity and speed)
memory      peak RSS of one face and of a batch, each in a fresh subprocess
cuda        the model sections again on CUDA (only where CUDA is available): one face per stage,
            network throughput to larger batches, the batch pipeline against the network, and
            coarse-to-fine against dense evaluation
==========  ========================================================================================
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

# numpy is imported where it is used: ``voxface --help`` imports this module for BenchSizes' defaults
if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

#: Every section :func:`run_bench` knows, in report order.
SECTIONS = ("startup", "data", "model", "pipeline", "refine", "onnx", "memory", "cuda")

#: The keys of a :func:`run_bench` result that each section writes.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "startup": ("startup",), "data": ("data",),
    "model": ("one_face_ms", "one_face_refine_head", "throughput_faces_per_s", "throughput_rounds", "model_repeat"),
    "pipeline": ("pipeline", "photos"), "refine": ("refine",), "onnx": ("onnx",), "memory": ("memory",),
    "cuda": ("cuda",),
}


@dataclass
class BenchSizes:
    """How much work each section does (the defaults keep ``voxface bench`` to a few minutes on a
    2-core CPU for the shipped 64^3 model; tests pass tiny ones).

    Attributes:
        repeat: repeats per timing (the median is reported), and the interleaved rounds of the
            comparisons: data, throughput, pipeline, photos, coarse-to-fine (each side's fastest is
            reported).
        batch_sizes: batch sizes of the throughput table.
        pipeline_faces / pipeline_batch / pipeline_workers: the ``reconstruct_files`` comparison.
        pipeline_photos: whole photos through the same pipeline with face detection (0: skip).
        refine_resolutions: fine grids of the coarse-to-fine section (each the model's ``R``
            times a power of 2; others are skipped).
        dense_max_points: dense evaluation is skipped above this many points.
        onnx_batch: batch of the onnxruntime speed comparison.
        memory_faces / memory_batch: the batch of the peak-RSS measurement.
        data_samples: samples of the data section.
        startup_repeat: runs of each startup command.
        cuda_batch_sizes / cuda_pipeline_faces / cuda_pipeline_batch / cuda_pipeline_workers: the
            same measurements on CUDA, sized for a GPU (meshing and writing then run in
            ``cuda_pipeline_workers`` processes beside the network; ``None``: ``reconstruct_files``' default).
    """

    repeat: int = 3
    batch_sizes: tuple[int, ...] = (1, 4, 16)
    pipeline_faces: int = 512
    pipeline_batch: int = 16
    pipeline_workers: int = 2
    pipeline_photos: int = 32
    refine_resolutions: tuple[int, ...] = (128, 256)
    dense_max_points: int = 256 ** 3
    onnx_batch: int = 4
    memory_faces: int = 32
    memory_batch: int = 16
    data_samples: int = 96
    startup_repeat: int = 3
    cuda_batch_sizes: tuple[int, ...] = (1, 16, 64, 256)
    cuda_pipeline_faces: int = 4096  # the mesh processes start in about a second: enough faces to amortise it
    cuda_pipeline_batch: int = 64
    cuda_pipeline_workers: int | None = None  # None: reconstruct_files' default on a GPU (voxface.reconstruct.default_workers)


def _times(fn: Callable[[], Any], repeat: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def _median_time(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    return statistics.median(_times(fn, repeat, warmup))


def _best_time(fn: Callable[[], Any], repeat: int = 7, warmup: int = 1) -> float:
    """The fastest of ``repeat`` runs: a cost on a shared machine (slower runs are other work's)."""
    return min(_times(fn, repeat, warmup))


def _cpu_seconds() -> float:
    """CPU time (user + system, s) of this process and of its children that have been waited for:
    a forked pipeline process counts once the pool that ran it is shut down."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def machine(device: "torch.device | None" = None) -> dict[str, Any]:
    """Python, platform, CPU model, usable cores (``cpus``: :func:`voxface.device.usable_cores`, the
    process's CPU affinity) and ``os.cpu_count()``, memory, torch version and threads, CUDA device, load,
    and whether glibc keeps freed memory (:func:`voxface.device.keep_freed_memory`, which the
    ``voxface`` command sets). The CUDA device named is ``device`` when it is one (``cuda:1``: the
    second GPU, which the bench then measures), else torch's current one."""
    import torch

    from . import device as dev

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": dev.usable_cores(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": (torch.cuda.get_device_name(device if device is not None and device.type == "cuda" else None)
                     if torch.cuda.is_available() else None),
            "freed_memory_kept": dev.freed_memory_kept}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (OSError, ValueError):
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        pass
    return info


# ------------------------------------------------------------------------------------ startup


_PROBE_HELP = (
    "import sys, json\n"
    "from voxface.cli import main\n"
    "sys.argv = ['voxface', '--help']\n"
    "import io, contextlib\n"
    "buf = io.StringIO()\n"
    "try:\n"
    "    with contextlib.redirect_stdout(buf):\n"
    "        main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(json.dumps({m: m in sys.modules for m in ('torch', 'open3d', 'trimesh', 'skimage', 'numpy')}))\n"
)


def _wall(cmd: list[str], repeat: int) -> float:
    ts = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, timeout=600)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_startup(repeat: int = 3) -> dict[str, Any]:
    """Seconds of ``voxface --help``, ``python -c 'import voxface'``, ``import torch`` and a bare
    interpreter (fresh subprocesses, median of ``repeat``), and which heavy modules ``--help`` imports."""
    py = sys.executable
    script = Path(py).parent / "voxface"
    help_cmd = [str(script), "--help"] if script.exists() else [py, "-c", _PROBE_HELP]
    res: dict[str, Any] = {
        "python_s": _wall([py, "-c", "pass"], repeat),
        "import_voxface_s": _wall([py, "-c", "import voxface"], repeat),
        "voxface_help_s": _wall(help_cmd, repeat),
        "import_torch_s": _wall([py, "-c", "import torch"], repeat),
        "repeat": max(1, repeat),
    }
    r = subprocess.run([py, "-c", _PROBE_HELP], capture_output=True, text=True, timeout=600)
    res["help_imports"] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}
    return res


# --------------------------------------------------------------------------------------- data


def bench_data(n: int = 96, workers: int = 2, ict_root: str | None = None, rounds: int = 1) -> dict[str, Any]:
    """Samples/s of (128x128 crop + 64^3 occupancy + 2048 surface points), 1 process vs ``workers``
    (``rounds`` interleaved rounds after a warm-up, each a pass of ``max(8, n // 4)`` samples in this
    process, then ``n`` over the workers; each side's fastest reported, every round in
    ``rounds_samples_per_s``), the median time of each stage of one sample (5 interleaved runs after
    a warm-up: the scanline and the reference occupancy are compared), and how many of the 64^3
    voxels the scanline occupancy and open3d's ray listing (the reference) disagree on."""
    import multiprocessing as mp

    import numpy as np

    from .data.ict import load_ict
    from .data.synthetic import FaceSampler

    sampler = FaceSampler(load_ict(ict_root), seed=0)
    sampler.sample(0, 64, swap=False, n_points=2048)
    m = max(8, n // 4)

    def one_process() -> None:
        for i in range(m):
            sampler.sample(i, 64, swap=False, n_points=2048)

    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, _bench_init, (ict_root,)) as pool:
        pool.map(_bench_one, range(workers * 2))  # warm up each worker
        secs = _rounds({"1_process": one_process, "workers": lambda: pool.map(_bench_one, range(n), chunksize=4)},
                       rounds, warmup=0)  # warm already
    per_s = {"1_process": [m / t for t in secs["1_process"]], "workers": [n / t for t in secs["workers"]]}
    # stage split of one sample (single process)
    idx = 1000
    a, e = sampler.id_coeffs(idx), sampler.exp_coeffs(idx)
    person = sampler.head.person(a)
    verts = person.full_vertices(e)
    from .config import FrameConfig
    from .frame import Grid
    from .occupancy import occupancy_grid

    grid = Grid.from_config(FrameConfig(), 64)
    closed = person.closed_head(e)
    # the reference with the sampler's own rule: rule="auto" timed a winding check of every edge (~2.5 ms of
    # ~18 here) that the scanline side, given the head's rule, is spared
    rule = sampler.head.occupancy_rule
    fns = {"mesh assembly": lambda: sampler.head.person(a).full_vertices(e),
           "render (rasterize + shade + edge anti-aliasing + background + photometric)": lambda: sampler.render(idx, verts),
           "occupancy 64^3 (scanline)": lambda: sampler.occupancy(closed, grid),
           "occupancy 64^3 (open3d list_intersections, reference)":
               lambda: occupancy_grid(closed, sampler.head.faces, grid, method="raycast", rule=rule),
           "2048 surface points": lambda: sampler.surface_points(idx, closed, 2048)}
    stages = {k: statistics.median(v) for k, v in _rounds(fns, 5).items()}
    scan = np.asarray(sampler.occupancy(closed, grid)) > 0
    ray = np.asarray(occupancy_grid(closed, sampler.head.faces, grid, method="raycast", rule=rule)) > 0
    return {"samples_per_s_1_process": max(per_s["1_process"]), f"samples_per_s_{workers}_workers": max(per_s["workers"]),
            "workers": workers, "rounds": max(1, int(rounds)), "rounds_samples_per_s": per_s,
            "timed_samples": {"1_process": m, "workers": n}, "stage_repeat": 5, "stage_interleaved": True,
            "stage_ms": {k: v * 1000 for k, v in stages.items()},
            "occupancy_differing_voxels": int(np.count_nonzero(scan != ray)), "occupancy_voxels": int(scan.size)}


def _rounds(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each of ``fns`` in each of ``rounds`` interleaved rounds (each one in turn, every
    round), after ``warmup`` calls each: a drifting load on a shared machine slows all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, int(rounds))):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t)
    return out


_bench_state: dict[str, Any] = {}


def _bench_init(ict_root: str | None) -> None:
    from .data.ict import load_ict
    from .data.synthetic import FaceSampler
    from .data.workers import limit_threads

    limit_threads(1)  # as the cache writer's workers: one thread each, no oversubscription
    _bench_state["s"] = FaceSampler(load_ict(ict_root), seed=0)


def _bench_one(i: int) -> int:
    _bench_state["s"].sample(i, 64, swap=False, n_points=2048)
    return i


# -------------------------------------------------------------------------------------- model


def _forward(model: Any, x: Any) -> Any:
    """encode + decode + logits to host memory: what the batch pipeline runs per batch."""
    import torch

    with torch.inference_mode():
        lat = model.encode(x)
        return model.decode(lat.z_id, lat.z_exp).float().cpu().numpy()


def _sync(model: Any) -> None:
    from .device import synchronize

    synchronize(model.device)


def bench_model(model: Any, batch_sizes: Sequence[int] = (1, 4, 16), repeat: int = 3) -> dict[int, float]:
    """Forward throughput (faces/s) of encode + decode (logits copied to host) against batch size:
    each batch size's fastest of ``repeat`` interleaved rounds (:func:`throughput_rounds`)."""
    return {b: max(v) for b, v in throughput_rounds(model, batch_sizes, repeat).items()}


def _throughput(model: Any, batch_sizes: Sequence[int], rounds: int) -> tuple[dict[int, float], dict[str, Any]]:
    """``(each batch size's fastest faces/s, {"rounds", "faces_per_s": every round's})``: the report's two keys."""
    tp = throughput_rounds(model, batch_sizes, rounds)
    return {b: max(v) for b, v in tp.items()}, {"rounds": max(1, int(rounds)), "faces_per_s": tp}


def throughput_rounds(model: Any, batch_sizes: Sequence[int] = (1, 4, 16), rounds: int = 3) -> dict[int, list[float]]:
    """Faces/s of encode + decode (logits copied to host) of random inputs, per batch size, in each of
    ``rounds`` interleaved rounds.

    Every batch size is warmed up once; then each round runs every batch size in turn over the same
    number of faces (the largest batch size, rounded up to whole batches), so a drifting load on a
    shared machine slows every batch size of a round alike and each round's ratios are fair.
    Returns ``{batch: [faces/s of round 1, round 2, ...]}``.
    """
    import torch

    s = model.image_size
    sizes = list(dict.fromkeys(int(b) for b in batch_sizes))  # each once: a repeated size was timed twice a round
    faces = max(sizes)
    xs = {b: torch.rand(b, 3, s, s, device=model.device) for b in sizes}

    def run(b: int) -> float:
        calls = -(-faces // b)
        t = time.perf_counter()
        for _ in range(calls):
            _forward(model, xs[b])  # ends in a copy to the host: synchronised
        return calls * b / (time.perf_counter() - t)

    for b in sizes:  # warm-up: first-use allocations (and kernel selection on a GPU) out of the rounds
        _forward(model, xs[b])
    out: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(max(1, int(rounds))):
        for b in sizes:
            out[b].append(run(b))
    return out


def _astronaut_crop(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The bundled photo (scikit-image's astronaut, uint8) and its face crop ``(S, S, 3)`` float32."""
    import skimage.data

    from .reconstruct import prepare_crops

    photo = skimage.data.astronaut()
    return photo, prepare_crops(photo, model.image_size)[0][0]


def _with_head(model: Any) -> tuple[Any, str]:
    """``model`` when it has a refinement head, else a copy with an untrained one (timing only)."""
    if getattr(model, "refiner", None) is not None:
        return model, "trained"
    import copy

    from .refine import add_refine_head

    m = copy.deepcopy(model)
    add_refine_head(m)
    return m.eval(), "untrained (zero-initialised: timing is real, output equals trilinear upsampling)"


def bench_one_face(model: Any, repeat: int = 5) -> dict[str, Any]:
    """Per-stage time (ms) of reconstructing the bundled photo, end to end, in one process.

    Stages: load (PNG file to array), detect, preprocess (crop), encode, decode, refine
    (coarse-to-fine to ``2 R``, each path labelled: ``--upsample decoder``, what ``voxface
    reconstruct`` runs by default, and ``--upsample head``), marching cubes + clean-up at ``R`` and
    at ``2 R`` (the default path's grid), export (PLY). Each the median of ``repeat`` runs after a
    warm-up. Stages that fail on this model (e.g. an untrained model with no surface) are ``None``.
    """
    import torch

    from .detect import crop_image, detect_faces, face_crop_box
    from .image import load_image
    from .mesh import export_mesh, extract_mesh
    from .refine import refine_logits, upsample_method
    from .viz import save_png

    photo, _ = _astronaut_crop(model)
    st: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory() as d:
        png = save_png(photo, Path(d) / "photo.png")
        st["load (PNG)"] = _median_time(lambda: load_image(png), repeat)
        img = load_image(png)
        st["detect"] = _median_time(lambda: detect_faces(img), repeat)
        box = face_crop_box(detect_faces(img)[0])
        st["preprocess (crop)"] = _median_time(lambda: crop_image(img, box, model.image_size), repeat)
        crop = torch.from_numpy(crop_image(img, box, model.image_size)).permute(2, 0, 1)[None].to(model.device)
        with torch.inference_mode():
            st["encode"] = _median_time(lambda: (model.encode(crop), _sync(model)), repeat)
            lat = model.encode(crop)
            st["decode"] = _median_time(lambda: (model.decode(lat.z_id, lat.z_exp), _sync(model)), repeat)
            logits = model.decode(lat.z_id, lat.z_exp)[0, 0].float().cpu().numpy()
        R = model.config.decoder.resolution
        head_model, head = _with_head(model)
        default = upsample_method(model, "decoder")  # what `voxface reconstruct --resolution 2R` runs by default
        fine = None
        for label, m, up in (("`--upsample decoder`, the default" + ("" if default == "decoder" else
                              f": {default}, no continuous decoder"), model, "decoder"),
                             ("`--upsample head`", head_model, "head")):
            # the first run warms up (kept out of the median)
            times = [refine_logits(m, lat.z_id, lat.z_exp, resolution=2 * R, upsample=up)[0]
                     for _ in range(max(1, repeat) + 1)]
            st[one_face_refine_label(2 * R, label)] = statistics.median(r.stats["seconds"] for r in times[1:])
            fine = fine or times[-1]
        mesh = None
        for label, vol, grid in ((f"{R}^3", logits, model.grid), (f"{2 * R}^3, refined by `--upsample decoder`", fine.logits, fine.grid)):
            try:
                st[f"marching cubes + clean-up ({label})"] = _median_time(lambda: extract_mesh(vol, grid), repeat)
                mesh = mesh or extract_mesh(vol, grid).mesh
            except Exception:  # noqa: BLE001 - e.g. no surface in an untrained model's grid
                st[f"marching cubes + clean-up ({label})"] = None
        st["export (PLY)"] = (_median_time(lambda: export_mesh(mesh, Path(d) / "m.ply"), repeat)
                              if mesh is not None else None)
    return {"ms": {k: (v * 1000 if v is not None else None) for k, v in st.items()}, "refine_head": head,
            "repeat": max(1, repeat)}


def one_face_refine_label(resolution: int, path: str) -> str:
    """The one-face table's refine row, named by the path it times."""
    return f"refine (coarse-to-fine to {resolution}^3, {path})"


# ----------------------------------------------------------------------------------- pipeline


def _write_crops(model: Any, n: int, folder: Path) -> list[Path]:
    """``n`` distinct ready crops (the bundled face, shifted, flipped, brightened) as PNG files."""
    import numpy as np

    from .viz import save_png

    _, crop = _astronaut_crop(model)
    base = (np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        im = np.roll(base, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        if i % 2:
            im = im[:, ::-1]
        im = np.clip(im.astype(np.int16) + int(rng.integers(-20, 21)), 0, 255).astype(np.uint8)
        paths.append(save_png(np.ascontiguousarray(im), folder / f"face_{i:04d}.png"))
    return paths


def bench_pipeline(model: Any, n: int = 512, batch: int = 16, workers: int = 2, rounds: int = 3) -> dict[str, Any]:
    """End-to-end :func:`voxface.reconstruct.reconstruct_files` throughput against the network alone.

    ``n`` ready crops (PNG) are reconstructed with ``detect=False`` at the model's resolution,
    meshes (PLY) written to a temporary folder, with ``workers`` (on the CPU: that many pipeline
    processes) and in one process (``workers=1``: the network on all threads, then each batch's
    meshes). The network's own throughput is encode + decode (+ logits to host) of random inputs
    of the crops' shape and memory layout (stacked on the host channels last, as the pipeline stacks
    its crops, and copied to the model's device a batch at a time), as many faces (``n``) in batches
    of ``batch``, in this process. Both sides are measured warm (the network
    after a warm-up pass; the pipeline after one batch in this process, which imports what
    meshing and writing use, a one-time ~0.7 s a long batch amortises and forked pipeline
    processes inherit), in ``rounds`` interleaved rounds (network, pipeline, one process), and
    each reports its fastest round: on a shared machine a slow round is other work's, and
    interleaving gives every side the same chances. ``ratio`` = pipeline / network faces per
    second. Each side's CPU time (user + system, the pipeline processes' included) over its wall
    time gives ``cores_busy`` and, per face, ``core_ms_per_face``: how busy the pipeline keeps the
    machine, and what a face costs it in core-time against the network. Also the per-face cost
    (fastest of 7) of the work the pipeline adds (reading a crop, meshing, writing), one thread,
    and what that work caps the ratio at with the cores as busy as the network keeps them
    (``bound`` = network core-ms per face / (that + the added work)); pipeline processes can pass
    it, since one-thread networks lose nothing to thread synchronisation.
    """
    import torch

    from .device import usable_cores
    from .mesh import extract_mesh
    from .reconstruct import prepare_crops, reconstruct_files, worker_kind

    s = model.image_size
    batch = min(int(batch), int(n))  # the batch both sides run at (and the report names) with fewer faces than --batch
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "crops"
        src.mkdir()
        paths = _write_crops(model, n, src)
        # the network side's inputs are laid out as the pipeline's: crops stacked on the host
        # (B, S, S, 3) and viewed channels first (channels-last strides, which the layers keep), and
        # copied to the model's device a batch at a time (a no-op on the CPU)
        x = torch.rand(batch, s, s, 3).permute(0, 3, 1, 2)
        full, rest = divmod(n, batch)
        xr = torch.rand(rest, s, s, 3).permute(0, 3, 1, 2) if rest else None

        def network() -> tuple[float, float]:
            c, t = _cpu_seconds(), time.perf_counter()
            for _ in range(full):
                _forward(model, x.to(model.device))
            if xr is not None:
                _forward(model, xr.to(model.device))
            _sync(model)
            wall = time.perf_counter() - t
            return n / wall, (_cpu_seconds() - c) / wall

        def pipeline(w: int, name: str) -> tuple[float, float, Any]:
            out = Path(d) / name
            shutil.rmtree(out, ignore_errors=True)
            c, t = _cpu_seconds(), time.perf_counter()
            summary = reconstruct_files(model, paths, out, detect=False, batch_size=batch, workers=w, progress=False)
            wall = time.perf_counter() - t
            return (summary.faces / wall if summary.faces else 0.0), (_cpu_seconds() - c) / wall, summary

        network()  # warm-up
        reconstruct_files(model, paths[:batch], Path(d) / "warm-up", detect=False, batch_size=batch, workers=1,
                          progress=False)
        nets, pipes, ones = [], [], []  # (faces/s, cores busy) per round
        for _ in range(max(1, int(rounds))):
            nets.append(network())
            pipe, busy, summary = pipeline(workers, "out")
            pipes.append((pipe, busy))
            if workers > 1:
                ones.append(pipeline(1, "out-1")[:2])
        # per-face cost of the non-network work, single-threaded
        crop = prepare_crops(paths[0], s, detect=False)[0][0]
        logits = _forward(model, torch.from_numpy(crop).permute(2, 0, 1)[None].to(model.device))[0, 0]
        extra: dict[str, float | None] = {"read crop": _best_time(lambda: prepare_crops(paths[0], s, detect=False))}
        try:
            res = extract_mesh(logits, model.grid)
            extra["marching cubes + clean-up"] = _best_time(lambda: extract_mesh(logits, model.grid))
            extra["write PLY"] = _best_time(lambda: res.save(Path(d) / "one.ply"))
        except Exception:  # noqa: BLE001 - an untrained model may have no surface
            extra["marching cubes + clean-up"] = extra["write PLY"] = None
    (net, net_busy), (pipe, pipe_busy) = max(nets), max(pipes)
    one = max(ones)[0] if ones else pipe
    threads = torch.get_num_threads()
    # core-time a face, each side's fastest round: (cores busy) / (faces/s)
    core_ms = {"network": 1000.0 * net_busy / net, "pipeline": 1000.0 * pipe_busy / pipe if pipe else None}
    bound = None
    if model.device.type == "cpu" and None not in extra.values():
        bound = core_ms["network"] / (core_ms["network"] + 1000.0 * sum(extra.values()))
    return {"faces": n, "batch": batch, "workers": workers, "resolution": model.config.decoder.resolution,
            "rounds": len(nets), "meshes_written": summary.faces, "failed": len(summary.failed),
            "pipeline_faces_per_s": pipe, "one_process_faces_per_s": one, "network_faces_per_s": net,
            "rounds_faces_per_s": {"network": [r[0] for r in nets], "pipeline": [r[0] for r in pipes],
                                   "one_process": [r[0] for r in ones or pipes]},
            "cores_busy": {"network": net_busy, "pipeline": pipe_busy}, "core_ms_per_face": core_ms,
            "ratio": pipe / net if net else 0.0, "one_process_ratio": one / net if net else 0.0, "bound": bound,
            "per_face_ms": {k: (v * 1000 if v is not None else None) for k, v in extra.items()},
            "torch_threads": threads, "device": str(model.device), "cores": usable_cores(),
            "workers_as": worker_kind(model, workers, n, batch)}


def bench_photos(model: Any, n: int = 32, batch: int = 16, workers: int = 2, repeat: int = 3) -> dict[str, Any]:
    """Whole photos through :func:`voxface.reconstruct.reconstruct_files` with face detection.

    ``n`` copies of the bundled photo (512x512 PNG, each shifted by a few pixels, every other one
    mirrored), ``workers`` pipeline processes against one process, in ``repeat`` interleaved rounds,
    each side's fastest reported (a slow round on a shared machine is other work's; every round's in
    ``rounds_photos_per_s``). ``detect_ms``: face
    detection alone on the first photo in this process (median of ``repeat`` after a warm-up),
    measured here so that the report compares it with this run's numbers; with the network's time
    a face beside it, it shows what limits a folder of real photos.
    """
    import numpy as np
    import skimage.data

    from .detect import detect_faces
    from .image import load_image
    from .reconstruct import reconstruct_files
    from .viz import save_png

    photo = skimage.data.astronaut()
    batch = min(int(batch), int(n))  # the batch the pipeline runs at (and the report names)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "photos"
        src.mkdir()
        paths = []
        for i in range(n):
            im = np.roll(photo, (int(rng.integers(-8, 9)), int(rng.integers(-8, 9))), axis=(0, 1))
            paths.append(save_png(np.ascontiguousarray(im[:, ::-1] if i % 2 else im), src / f"photo_{i:04d}.png"))

        def run(w: int) -> tuple[float, int]:
            out = Path(d) / f"out-{w}"
            shutil.rmtree(out, ignore_errors=True)  # each round writes every photo afresh
            t = time.perf_counter()
            summary = reconstruct_files(model, paths, out, detect=True, batch_size=batch, workers=w, progress=False)
            return n / (time.perf_counter() - t), len(summary.failed)  # files handled (a failure counts too)

        img = load_image(paths[0])
        detect_s = _median_time(lambda: detect_faces(img), repeat)
        pipes: list[float] = []
        ones: list[float] = []
        for _ in range(max(1, int(repeat))):  # interleaved: drifting load slows both sides alike
            pipe, failed = run(workers)
            pipes.append(pipe)
            if workers > 1:
                ones.append(run(1)[0])
    return {"photos": n, "batch": batch, "workers": workers, "photos_per_s": max(pipes),
            "one_process_photos_per_s": max(ones or pipes), "rounds": len(pipes),
            "rounds_photos_per_s": {"pipeline": pipes, "one_process": ones or pipes},
            "failed": failed, "detect_ms": detect_s * 1000, "detect_repeat": max(1, repeat),
            "device": str(model.device)}


# ------------------------------------------------------------------------------------- refine


def bench_refine(model: Any, resolutions: Sequence[int] = (128, 256), dense_max_points: int = 256 ** 3,
                 repeat: int = 3) -> dict[str, Any]:
    """Coarse-to-fine (MISE) against dense evaluation, on the bundled face, for each way a finer
    grid is filled (``--upsample``): the refinement head, and the decoder's own continuous function
    (the default; :func:`voxface.refine.upsample_method`, skipped for a decoder without one).

    Per fine resolution ``R_f`` (a multiple ``R * 2^k`` of the model's ``R``; others skipped) and
    ``upsample``: seconds and evaluated points of each method (the coarse decode excluded: both
    share it), the speed-up and point ratio, and the agreement of the two occupancies (IoU and the
    number of differing voxels; dense skipped above ``dense_max_points``). Each (upsample, method)
    path is warmed up once at the smallest grid (the first call allocates and, on a GPU, loads
    kernels); then ``repeat`` interleaved rounds (MISE, then dense) per row, each method's fastest
    round reported (``mise_s``, ``dense_s``; ``speedup`` = fastest dense / fastest MISE), every
    round's times in ``rounds_s`` and each round's own ratio in ``round_speedups``. Without a
    trained head an untrained one is used (real cost, trilinear output).
    """
    import numpy as np
    import torch

    from .refine import logit_iou, refine_logits, upsample_method

    _, crop = _astronaut_crop(model)
    m, head = _with_head(model)
    with torch.inference_mode():
        lat = m.encode(torch.from_numpy(crop).permute(2, 0, 1)[None].to(m.device))
    R = m.config.decoder.resolution
    upsamples = ["head"] + (["decoder"] if upsample_method(m, "decoder") == "decoder" else [])
    rounds = max(1, int(repeat))

    def levels_of(rf: int) -> int | None:
        k = np.log2(rf / R) if rf > R else 0
        return int(k) if k >= 1 and float(k).is_integer() else None

    def run(rf: int, method: str, up: str) -> Any:
        out = refine_logits(m, lat.z_id, lat.z_exp, resolution=rf, method=method, upsample=up)[0]
        _sync(m)
        return out

    valid = [rf for rf in resolutions if levels_of(rf) is not None]
    if valid:  # one warm-up call per path, at the smallest grid: keep first-use costs out of the times
        for up, method in itertools.product(upsamples, ("mise", "dense")):
            if method == "mise" or min(valid) ** 3 <= dense_max_points:
                run(min(valid), method, up)
    rows = []
    for rf, up in itertools.product(resolutions, upsamples):
        k = levels_of(rf)
        if k is None:
            continue
        with_dense = rf ** 3 <= dense_max_points
        mise_ts: list[float] = []
        dense_ts: list[float] = []
        mise = dense = None
        for _ in range(rounds):  # interleaved: drifting load affects both methods alike
            mise = run(rf, "mise", up)
            mise_ts.append(mise.stats["seconds"])
            if with_dense:
                dense = None  # free the previous round's grid first
                dense = run(rf, "dense", up)
                dense_ts.append(dense.stats["seconds"])
        row: dict[str, Any] = {"resolution": rf, "upsample": up, "levels": k, "rounds": rounds,
                               "mise_s": min(mise_ts), "mise_points": mise.stats["points"], "dense_points": rf ** 3,
                               "mise_level_points": [lv["points"] for lv in mise.stats["levels"]],
                               "decode_s": mise.stats["decode_seconds"], "rounds_s": {"mise": mise_ts}}
        if dense is not None:
            row["rounds_s"]["dense"] = dense_ts
            a, b = mise.logits > 0.0, dense.logits > 0.0  # the level logit_iou compares at
            row.update(dense_s=min(dense_ts), speedup=min(dense_ts) / row["mise_s"],
                       round_speedups=[d / t for d, t in zip(dense_ts, mise_ts)],
                       iou_vs_dense=logit_iou(mise.logits, dense.logits),
                       differing_voxels=int(np.count_nonzero(a != b)))
            del dense, a, b
        row["points_ratio"] = rf ** 3 / max(1, row["mise_points"])
        rows.append(row)
    return {"head": head, "coarse_resolution": R, "rows": rows, "repeat": rounds, "warmup": True,
            "device": str(m.device)}


# --------------------------------------------------------------------------------------- onnx


def bench_onnx(model: Any, batch: int = 4, repeat: int = 5) -> dict[str, Any]:
    """Export to a temporary folder; parity (largest |difference|) and speed against PyTorch (CPU:
    :func:`voxface.onnx.onnx_speed`, each runtime's fastest of interleaved rounds, ``repeat`` calls
    in all split between the rounds: each round the median of ``ceil(repeat / rounds)``)."""
    from .onnx import export_onnx

    with tempfile.TemporaryDirectory() as d:
        res = export_onnx(model, d, batch=batch, repeat=repeat)
        return {"opset": res.opset, "max_abs_diff": res.max_abs_diff, "speed": res.speed, "repeat": max(1, repeat),
                "device": "cpu"}


# ------------------------------------------------------------------------------------- memory


def _memory_probe(checkpoint: str | None, mode: str, n: int, batch: int, keep_freed: bool = False) -> None:
    """Child process of :func:`bench_memory`: print ``{"loaded_mb", "peak_mb"}`` as JSON (``keep_freed``:
    malloc set as the ``voxface`` command sets it, :func:`voxface.device.keep_freed_memory`)."""
    from .checkpoint import load_model
    from .device import keep_freed_memory

    if keep_freed:
        keep_freed_memory()
    from .reconstruct import reconstruct_files, reconstruct_image

    model = load_model(checkpoint, device="cpu")
    loaded = peak_rss_mb()
    if mode == "one":
        import skimage.data

        try:
            reconstruct_image(model, skimage.data.astronaut())
        except Exception:  # noqa: BLE001 - an untrained model may have no surface; memory still counts
            pass
    else:
        with tempfile.TemporaryDirectory() as d:
            paths = _write_crops(model, n, Path(d))
            reconstruct_files(model, paths, Path(d) / "out", detect=False, batch_size=batch, progress=False)
    # the largest peak of the pipeline processes reconstruct_files may have run (forked: the pages
    # they share with this process count in both)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    kids_mb = kids / 2**20 if sys.platform == "darwin" else kids / 1024
    print(json.dumps({"loaded_mb": loaded, "peak_mb": peak_rss_mb(), "children_peak_mb": kids_mb}))


def bench_memory(checkpoint: str | None, n: int = 32, batch: int = 16) -> dict[str, Any]:
    """Peak RSS (MB) of a fresh process reconstructing one photo, and one reconstructing ``n`` crops
    in batches of ``batch`` (``reconstruct_files``); each also reports its RSS once the model is loaded.
    The fresh processes set malloc as this one is set (``freed_memory_kept``: as the ``voxface`` command
    sets it, :func:`voxface.device.keep_freed_memory`), the setting the report's header states."""
    from . import device

    keep = bool(device.freed_memory_kept)
    out: dict[str, Any] = {"faces": n, "batch_size": batch, "freed_memory_kept": keep}
    for mode in ("one", "batch"):
        code = (f"from voxface.bench import _memory_probe; "
                f"_memory_probe({checkpoint!r}, {mode!r}, {int(n)}, {int(batch)}, {keep!r})")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            out[mode] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB).

    Linux: ``VmHWM`` of ``/proc/self/status`` (``getrusage``'s ``ru_maxrss`` would carry over the
    parent's peak into a freshly executed child); elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / 2**20 if sys.platform == "darwin" else ru / 1024  # bytes on macOS, KiB elsewhere


# --------------------------------------------------------------------------------------- cuda


def bench_cuda(model: Any, sizes: "BenchSizes | None" = None) -> dict[str, Any] | None:
    """The model sections on CUDA; ``None`` without CUDA.

    A copy of ``model`` on ``cuda`` (the model itself when it is there already) is measured as the
    CPU sections measure theirs: :func:`bench_one_face` (``one_face_ms``), :func:`bench_model`
    over ``sizes.cuda_batch_sizes`` (``throughput_faces_per_s``), :func:`bench_pipeline` with
    ``sizes.cuda_pipeline_*`` (``pipeline``; on an accelerator ``reconstruct_files`` meshes and
    writes in processes beside the network) and :func:`bench_refine` (``refine``: MISE against
    dense on the GPU, where dense evaluation is one large batched pass); ``peak_gpu_mb``: the most
    GPU memory allocated during these (the peak counter is reset first).
    """
    import copy

    import torch

    if not torch.cuda.is_available():
        return None
    sz = sizes or BenchSizes()
    m = model if model.device.type == "cuda" else copy.deepcopy(model).to("cuda")
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(m.device)}
    # the peak is this section's: the model sections run on the GPU first (--device cuda, or auto on
    # a GPU machine) and their dense grids counted in it
    torch.cuda.reset_peak_memory_stats(m.device)
    one = bench_one_face(m, repeat=sz.repeat)
    res["one_face_ms"], res["model_repeat"] = one["ms"], one["repeat"]
    res["throughput_faces_per_s"], res["throughput_rounds"] = _throughput(m, sz.cuda_batch_sizes, sz.repeat)
    from .reconstruct import default_workers

    workers = sz.cuda_pipeline_workers or default_workers(m)
    res["pipeline"] = bench_pipeline(m, sz.cuda_pipeline_faces, sz.cuda_pipeline_batch, workers, sz.repeat)
    res["refine"] = bench_refine(m, sz.refine_resolutions, sz.dense_max_points, sz.repeat)
    res["peak_gpu_mb"] = torch.cuda.max_memory_allocated(m.device) / 2**20
    return res


# ---------------------------------------------------------------------------------------- run


def run_bench(out_md: str | os.PathLike = "BENCHMARKS.md", *, checkpoint: str | None = None, device: str = "auto",
              sections: str | Sequence[str] = SECTIONS, ict_root: str | None = None, data_samples: int | None = None,
              sizes: BenchSizes | None = None, log: Callable[[str], None] | None = None,
              keep_others: bool = True) -> dict:
    """Run the selected sections and write ``out_md`` and its ``.json`` twin; return the results.

    With ``keep_others`` (the default) the sections of an earlier report at ``out_md`` (read from its
    ``.json`` twin) that this run does not measure are kept, each marked with the date and machine
    it was measured on: ``--only cuda --device cuda`` on a GPU machine adds the CUDA table to the
    CPU report, ``--only pipeline`` refreshes one section. Ratios are still each measured in one run.

    Args:
        out_md: the markdown report (``.json`` beside it holds every number).
        checkpoint: the model (default: the bundled weights).
        device: ``auto``, ``cpu``, ``cuda``... for the model sections (the ``memory`` and ``onnx``
            sections always run on the CPU; ``cuda`` adds a CUDA table when CUDA is available).
        sections: a subset of :data:`SECTIONS`; one name, or names joined by commas, as a string.
        ict_root: the ICT-FaceKit folder the ``data`` section renders from (default:
            ``$VOXFACE_ICT_ROOT``).
        data_samples: samples the ``data`` section renders (default: ``sizes``').
        sizes: :class:`BenchSizes` (``data_samples`` overrides its ``data_samples``).
        log: called with a line as each section starts.
        keep_others: keep the earlier report's sections this run does not measure (above).

    Returns:
        The results as written to the ``.json`` twin: each section's numbers under its keys
        (:data:`SECTION_KEYS`), with ``machine``, ``date``, ``seconds`` and ``measured`` (where and
        when each section was measured).

    Raises:
        voxface.VoxfaceError: an unknown or empty ``sections``, an ``out_md`` :func:`check_report_path`
            refuses (a ``.json`` name, a folder, a path that cannot be written: the report or its twin),
            a device this machine does not have; checked before any section runs.
    """
    from .checkpoint import load_model
    from .errors import InputError, VoxfaceError
    from .mesh import atomic_write_files

    # before the sections (minutes), not after them; an earlier twin that is no report (unreadable, foreign)
    # is replaced here, as _keep_other_sections ignores it (the CLI refuses it: foreign=True)
    check_report_path(out_md, foreign=False)
    if isinstance(sections, str):  # "model" was read as the sections m, o, d, e, l
        sections = tuple(s.strip() for s in sections.split(",") if s.strip())
    sections = tuple(sections)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise InputError(f"unknown bench section(s) {unknown}; known: {', '.join(SECTIONS)}")
    if not sections:  # the empty set is a subset of {"cuda"}: it was refused as the cuda section on a CPU
        raise InputError(f"no bench section given; choose from {', '.join(SECTIONS)}; {out_md} not written")
    import torch

    from .device import resolve_device

    resolved = resolve_device(device)  # a device this machine does not have fails now, before any section runs
    if set(sections) <= {"cuda"} and not torch.cuda.is_available():
        raise VoxfaceError(f"the cuda section needs a CUDA device and this machine has none; {out_md} not written")
    if "data" in sections:  # needs ICT-FaceKit: say so before the other sections run, not after
        from .data.ict import find_root

        try:
            find_root(ict_root)
        except VoxfaceError as e:
            raise VoxfaceError(f"{e} (the data section needs it; leave it out with --only)") from None
    if "onnx" in sections:  # the onnx extra: say so now, not after the sections before it have run
        from .onnx import need_packages

        try:
            need_packages()
        except VoxfaceError as e:
            raise VoxfaceError(f"{e} (the onnx section needs it; leave it out with --only); {out_md} not written") from None
    sz = sizes or BenchSizes()
    if data_samples is not None:
        sz = BenchSizes(**{**asdict(sz), "data_samples": int(data_samples)})
    say = log or (lambda s: None)
    res: dict[str, Any] = {"machine": machine(resolved), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "sizes": asdict(sz), "seconds": {}}
    t_all = time.perf_counter()

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        say(f"bench: {name}")
        t = time.perf_counter()
        out = fn()
        res["seconds"][name] = time.perf_counter() - t
        return out

    model = None  # loaded (and its coarse-to-fine grids checked) before any section runs
    # memory measures the model in fresh processes, but loading it here too refuses a bad checkpoint
    # before any section runs, and names the model it measured on the report's model line
    if set(sections) & set(_MODEL_SECTIONS):
        model = load_model(checkpoint, device=device)
        # a grid the head cannot refine to was skipped, leaving an empty table (the cuda section's too)
        if "refine" in sections or ("cuda" in sections and torch.cuda.is_available()):
            from .refine import refine_resolution_ok, refine_resolutions

            R = model.config.decoder.resolution
            bad = [r for r in sz.refine_resolutions if not refine_resolution_ok(r, R)]
            if bad or not sz.refine_resolutions:
                raise VoxfaceError(f"coarse-to-fine resolutions {list(sz.refine_resolutions)}: each must be the "
                                   f"model's {R} times 2, 4, 8, ... ({refine_resolutions(R)}); {out_md} not written")
        if "onnx" in sections:  # a graph over 2 GiB cannot be exported: refused now, not after the sections before it
            from .onnx import _check_graph_sizes

            try:
                _check_graph_sizes(model, checkpoint)
            except VoxfaceError as e:
                raise VoxfaceError(f"{e.problem} (the onnx section exports it; leave it out with --only); "
                                   f"{out_md} not written", e.path) from None
        res["model"] = {"checkpoint": str(checkpoint) if checkpoint else "bundled", "device": str(model.device),
                        "checkpoint_id": checkpoint_id(checkpoint),
                        "resolution": model.config.decoder.resolution, "image_size": model.image_size,
                        "refine_head": getattr(model, "refiner", None) is not None}
    if "startup" in sections:
        res["startup"] = timed("startup", lambda: bench_startup(sz.startup_repeat))
    if "data" in sections:
        res["data"] = timed("data", lambda: bench_data(sz.data_samples, ict_root=ict_root, rounds=sz.repeat))
    if "model" in sections:
        one = timed("one face", lambda: bench_one_face(model, repeat=sz.repeat))
        res["one_face_ms"], res["one_face_refine_head"] = one["ms"], one["refine_head"]
        res["throughput_faces_per_s"], res["throughput_rounds"] = timed(
            "throughput", lambda: _throughput(model, sz.batch_sizes, sz.repeat))
        res["model_repeat"] = one["repeat"]  # the one-face stages: median of this many
    if "pipeline" in sections:
        res["pipeline"] = timed("pipeline", lambda: bench_pipeline(model, sz.pipeline_faces, sz.pipeline_batch,
                                                                   sz.pipeline_workers, sz.repeat))
        if sz.pipeline_photos:
            res["photos"] = timed("photos", lambda: bench_photos(model, sz.pipeline_photos, sz.pipeline_batch,
                                                                 sz.pipeline_workers, sz.repeat))
    if "refine" in sections:
        res["refine"] = timed("refine", lambda: bench_refine(model, sz.refine_resolutions, sz.dense_max_points,
                                                             sz.repeat))
    if "onnx" in sections:
        cpu = model if model.device.type == "cpu" else load_model(checkpoint, device="cpu")
        res["onnx"] = timed("onnx", lambda: bench_onnx(cpu, sz.onnx_batch, sz.repeat))
    if "memory" in sections:
        res["memory"] = timed("memory", lambda: bench_memory(checkpoint, sz.memory_faces, sz.memory_batch))
    if "cuda" in sections and model is not None:
        cuda = timed("cuda", lambda: bench_cuda(model, sz))
        if cuda is not None:
            res["cuda"] = cuda
    res["seconds"]["total"] = time.perf_counter() - t_all
    try:
        res["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    out_md = Path(out_md)
    res["measured"] = {}
    cid = res["model"]["checkpoint_id"] if model is not None else checkpoint_id(checkpoint)
    for sec in sections:
        if not any(k in res for k in SECTION_KEYS[sec]):
            continue
        prov: dict[str, Any] = {"date": res["date"], "machine": machine_line(res["machine"]),
                                "freed_memory_kept": bool(res["machine"].get("freed_memory_kept"))}
        if sec in _MODEL_SECTIONS:  # what each section measured, so that a kept one is not credited to a later model
            prov["checkpoint"] = cid
            prov["device"] = (str(model.device) if sec in _DEVICE_SECTIONS
                              else res["cuda"]["device"] if sec == "cuda" else "cpu")
        res["measured"][sec] = prov
    if keep_others:
        _keep_other_sections(res, out_md.with_suffix(".json"), say)
    md = render_markdown(res)
    # all or nothing: a full disk or an interrupt between two writes left a new .json beside the old .md
    atomic_write_files([(out_md.with_suffix(".json"), json.dumps(res, indent=1, default=str).encode()),
                        (out_md, md.encode())])
    return res


def check_report_path(out_md: str | os.PathLike, option: str = "out_md", *, foreign: bool = True) -> None:
    """Refuse, before any section runs, a report path :func:`run_bench` cannot write (or, with
    ``foreign``, must not replace).

    Refused (:class:`~voxface.errors.InputError` naming the file, one line): a ``.json`` name (its twin
    would be itself), a folder, a report or ``.json`` twin that cannot be written (a file among its
    folders, a folder that refuses a file: :func:`voxface.mesh.output_problem`), and with ``foreign``
    (``voxface bench -o``) an existing report or twin that is no ``voxface bench`` report (``NOTES.md``
    with a ``NOTES.json`` beside it, a ``package.json``): it would be replaced. An earlier report and
    empty files (what a failed write leaves) are not refused. ``option`` names what to change in that
    message (the CLI's ``-o``). Creates nothing.
    """
    from .errors import InputError
    from .mesh import output_problem

    out = Path(out_md)
    if out.suffix.lower() == ".json":  # its twin would be itself: the markdown overwrote the numbers
        raise InputError(f"the report is markdown and needs another name than its .json twin "
                         f"(e.g. {out.with_suffix('.md').name})", out)
    if out.is_dir():
        raise InputError(f"is a folder; name the report file (e.g. {out / 'BENCHMARKS.md'})", out)
    twin = out.with_suffix(".json")
    for path in (out, twin):  # the .json twin is written first: a folder there failed after every section
        problem = output_problem(path)
        if problem is not None:
            raise InputError(problem, path)
    for path, ours in ((out, _is_bench_markdown), (twin, _is_bench_json)) if foreign else ():
        if path.is_file() and not ours(path):
            raise InputError("exists and is not a `voxface bench` report; the report would replace it: name "
                             f"another {option}, or remove this file first", path)


def _is_bench_markdown(path: Path) -> bool:
    """Whether ``path`` is what ``voxface bench`` writes as its report (its first line), or empty."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return not head.strip() or head.startswith(b"# voxface benchmarks")


def _is_bench_json(path: Path) -> bool:
    """Whether ``path`` is a report's ``.json`` twin (an object with ``machine`` and ``date``, as
    :func:`_keep_other_sections` reads it), or empty."""
    try:
        if path.stat().st_size == 0:
            return True
        with open(path, "rb") as fh:
            if fh.read(1).lstrip() != b"{":  # not a JSON object: no need to read a big binary file
                return False
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("machine"), dict) and "date" in data


#: Sections that measure the model (their provenance records its checkpoint and device).
_MODEL_SECTIONS = ("model", "pipeline", "refine", "onnx", "memory", "cuda")
#: Sections that run on the model's device (``--device``); onnx and memory always run on the CPU.
_DEVICE_SECTIONS = ("model", "pipeline", "refine")


def checkpoint_id(checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """Which weights a run measured: the path as given (``bundled`` for the default weights), the
    file's size and a short content hash (``sha256_1mb``: the first 12 hex digits of the SHA-256
    of the file's first MiB, which with the size tells checkpoints apart without reading them whole)."""
    from .checkpoint import DEFAULT_WEIGHTS

    path = Path(checkpoint) if checkpoint else DEFAULT_WEIGHTS
    out: dict[str, Any] = {"path": str(checkpoint) if checkpoint else "bundled"}
    try:
        with open(path, "rb") as f:
            out["sha256_1mb"] = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12]
        out["bytes"] = path.stat().st_size
    except OSError:
        pass
    return out


def checkpoint_line(cid: dict[str, Any] | None) -> str:
    """``path (sha256 of the first MiB abc..., N MB)`` of a :func:`checkpoint_id`."""
    if not cid:
        return "checkpoint not recorded"
    extra = ([f"sha256 of the first MiB {cid['sha256_1mb']}"] if cid.get("sha256_1mb") else []) + (
        [f"{cid['bytes'] / 1e6:.1f} MB"] if cid.get("bytes") is not None else [])
    return f"checkpoint {cid.get('path', '?')}" + (f" ({', '.join(extra)})" if extra else "")


def machine_line(m: dict[str, Any]) -> str:
    """One line naming a :func:`machine` description: CPU, cores, torch, CUDA device."""
    return (f"{m.get('cpu', '?')}, {m.get('cpus')} cores, torch {m.get('torch', '?')}"
            + (f", {m['cuda']}" if m.get("cuda") else ""))


def _keep_other_sections(res: dict[str, Any], old_json: Path, warn: Callable[[str], None] | None = None) -> None:
    """Copy into ``res`` the sections of the report at ``old_json`` that this run did not measure
    (a ``cuda`` section asked for on a machine without CUDA measures nothing, so a GPU run's table
    stays), with their provenance (``res["measured"]``: date and machine per section, and for the
    sections that measure the model its checkpoint and device where recorded). An unreadable
    or foreign file is ignored: the new report then holds this run's sections alone. A section
    (or model line) that does not render (a hand-edited file, fields missing) is left out, with a
    ``warning:`` line through ``warn``: it failed with a traceback after this run's measurements,
    which were lost."""
    try:
        old = json.loads(old_json.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(old, dict) or not isinstance(old.get("machine"), dict) or "date" not in old:
        return

    def renders(what: str) -> bool:
        try:
            render_markdown(res)
        except Exception as e:  # noqa: BLE001 - whatever the old file holds, this run's numbers are written
            (warn or (lambda s: None))(f"warning: {old_json}: its {what} could not be read "
                                       f"({type(e).__name__}: {e}); left out of the new report")
            return False
        return True

    if "model" not in res and isinstance(old.get("model"), dict):  # the model the kept sections measured
        res["model"] = old["model"]
        if not renders("model line"):
            del res["model"]
    for sec, keys in SECTION_KEYS.items():
        if sec in res["measured"] or not any(k in old for k in keys):
            continue
        for k in keys:
            if k in old:
                res[k] = old[k]
        prov = old["measured"].get(sec) if isinstance(old.get("measured"), dict) else None
        res["measured"][sec] = prov = (dict(prov) if isinstance(prov, dict) else
                                       {"date": old["date"], "machine": machine_line(old["machine"])})
        if "freed_memory_kept" not in prov and prov.get("date") == old["date"] and "freed_memory_kept" in old["machine"]:
            prov["freed_memory_kept"] = bool(old["machine"]["freed_memory_kept"])  # measured in that run
        if not renders(f"{sec} section"):
            for k in keys:
                res.pop(k, None)
            del res["measured"][sec]


# ----------------------------------------------------------------------------------- markdown

#: Markdown headings of each section (their first words), for the provenance lines of kept sections.
_HEADINGS = {"## Start-up": "startup", "## Synthetic data": "data", "## One face": "model",
             "## Network throughput": "model", "## Batch pipeline": "pipeline",
             "## Coarse-to-fine": "refine", "## ONNX": "onnx", "## Peak memory": "memory", "## CUDA": "cuda"}


def _kept_note(sec: str, prov: dict[str, Any], res: dict[str, Any]) -> str:
    """The provenance line of a section kept from an earlier run: date and machine, and (sections
    that measure the model) its checkpoint and device where they differ from this report's model
    line or were not recorded; its malloc setting where it differs from the one the header states."""
    parts = [prov["date"], prov["machine"]]
    kept_malloc = prov.get("freed_memory_kept")  # the header states this run's malloc setting, not the kept one's
    if kept_malloc is not None and bool(kept_malloc) != bool((res.get("machine") or {}).get("freed_memory_kept")):
        parts.append("glibc malloc keeping freed memory" if kept_malloc else "malloc as the platform sets it")
    if sec in _MODEL_SECTIONS:
        cur = res.get("model") or {}
        cid = prov.get("checkpoint")
        if cid is None:
            parts.append("checkpoint not recorded")
        elif cid != cur.get("checkpoint_id"):
            parts.append(checkpoint_line(cid))
        if sec in _DEVICE_SECTIONS:
            dev = prov.get("device")
            if dev is None:
                parts.append("device not recorded")
            elif dev != cur.get("device"):
                parts.append(f"on {dev}")
    return f"*Kept from an earlier `voxface bench` run: {', '.join(parts)}.*"


def _mark_kept_sections(lines: list[str], res: dict[str, Any]) -> list[str]:
    """After the heading of each section measured in an earlier run than this report's, a line
    saying when and where, and with which checkpoint on which device."""
    out = []
    for line in lines:
        out.append(line)
        sec = next((v for k, v in _HEADINGS.items() if line.startswith(k)), None)
        prov = (res.get("measured") or {}).get(sec) if sec else None
        if prov and _kept(sec, prov, res):
            out += ["", _kept_note(sec, prov, res)]
    return out


def _kept(sec: str, prov: dict[str, Any], res: dict[str, Any]) -> bool:
    """Whether a section's provenance is another run's than this report's: another date (to the
    minute) or machine, or (two runs in one minute) a recorded checkpoint or device other than the
    report's model line, which is this run's when it measured a model."""
    if (prov.get("date"), prov.get("machine")) != (res.get("date"), machine_line(res.get("machine") or {})):
        return True
    if prov.get("freed_memory_kept") not in (None, bool((res.get("machine") or {}).get("freed_memory_kept"))):
        return True
    cur = res.get("model") or {}
    return sec in _MODEL_SECTIONS and (
        prov.get("checkpoint") not in (None, cur.get("checkpoint_id"))
        or (sec in _DEVICE_SECTIONS and prov.get("device") not in (None, cur.get("device"))))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _fmt_load(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) else str(x)


def _one_face_label(k: str) -> str:
    """Reports from before the refine rows named their path timed ``--upsample head`` as plain
    ``refine (coarse-to-fine to N^3)``: name it."""
    if k.startswith("refine (coarse-to-fine to ") and k.endswith("^3)"):
        return k[:-1] + ", `--upsample head`)"
    return k


def _md_one_face(ms: dict[str, float | None], h: str = "##", repeat: int | None = None) -> list[str]:
    """The one-face per-stage table of a :func:`bench_one_face` result (ms)."""
    how = (f"Each stage the median of {repeat} runs after a warm-up." if repeat
           else "How the times were taken was not recorded in that run.")
    return [f"{h} One face, end to end (bundled photo)", "", how, "", "| stage | ms |", "|---|---|",
            *[f"| {_one_face_label(k)} | {_ms(v)} |" for k, v in ms.items()], ""]


def _md_throughput(tp: dict, h: str = "##", repeat: int | None = None,
                   rounds: dict[str, Any] | None = None) -> list[str]:
    """The network throughput table of a :func:`bench_model` result (faces/s by batch size); with
    ``rounds`` (:func:`throughput_rounds`' every round, recorded since the rounds were interleaved)
    the range of the rounds' own ratios beside each; ``repeat``: a report from before, whose batch
    sizes were each the median of that many runs, one batch size after another."""
    first = min(tp, key=int)  # the smallest batch measured (BenchSizes.batch_sizes need not hold 1)
    b1 = tp[first]
    per = {int(b): v for b, v in ((rounds or {}).get("faces_per_s") or {}).items()}  # a kept report's keys are strings
    if rounds and per:
        faces = max(per)
        how = [f"Random inputs; each batch size warmed up once, then {rounds['rounds']} interleaved rounds (every "
               f"batch size in turn, each over the same {faces} faces), each batch size's fastest round reported; "
               f"vs batch {first} = fastest over fastest, with the range of the rounds' own ratios in brackets "
               "(every round is in BENCHMARKS.json).", ""]
    elif repeat:
        how = [f"Random inputs; each batch size the median of {repeat} runs after a warm-up, one batch size after "
               "another.", ""]
    else:
        how = []

    def ratio(b: Any, v: float) -> str:
        txt = f"{v / b1:.2f}x"
        mine, base = per.get(int(b)), per.get(int(first))
        if mine and base and len(mine) > 1 and int(b) != int(first):
            rs = [m / f for m, f in zip(mine, base)]
            txt += f" ({min(rs):.2f}-{max(rs):.2f}x)"
        return txt

    return [f"{h} Network throughput (encode + decode + logits to host, no meshing)", "", *how,
            f"| batch | faces/s | vs batch {first} |", "|---|---|---|",
            *[f"| {b} | {v:.1f} | {ratio(b, v)} |" for b, v in tp.items()], ""]


def _md_pipeline(p: dict[str, Any], procs: bool, cores: int | None, h: str = "##") -> list[str]:
    """The batch-pipeline table (``procs``: the workers were pipeline processes, i.e. the network ran on the CPU;
    a report from before the interleaved rounds says that how its times were taken was not recorded)."""
    how = ("Both sides warm (the network after a "
           "warm-up pass, the pipeline after one batch in this process, which imports what meshing and writing "
           f"use: once, and forked pipeline processes inherit it), {p['rounds']} interleaved rounds, each side's "
           "fastest reported (every round: "
           + "; ".join(f"{k.replace('_', ' ')} " + ", ".join(f"{v:.1f}" for v in vals)
                       for k, vals in p["rounds_faces_per_s"].items()) + " faces/s)."
           if p.get("rounds") and p.get("rounds_faces_per_s") else "How the times were taken was not recorded in that run.")
    lines = [f"{h} Batch pipeline against the network", "",
             f"`reconstruct_files` on {p['faces']} ready crops (`detect=False`, {p['resolution']}^3, PLY meshes "
             f"written to a temporary folder), batch {p['batch']}, against encode + decode of random inputs of the "
             f"crops' shape, as many faces at the same batch size, in one process on {p['torch_threads']} threads. "
             + how, "",
             "| | faces/s | vs network |", "|---|---|---|",
             f"| network alone | {p['network_faces_per_s']:.1f} | 100% |",
             f"| **pipeline, `--workers {p['workers']}`**"
             + (f" ({p['workers']} {p['workers_as']})" if p.get("workers_as", "threads") != "threads"
                else f" ({p['workers']} pipeline processes)" if procs else "")
             + f" | **{p['pipeline_faces_per_s']:.1f}** | **{100 * p['ratio']:.0f}%** |"]
    if p["workers"] > 1 and "one_process_faces_per_s" in p:
        lines.append(f"| pipeline, `--workers 1` (one process: network, then the batch's meshes) | "
                     f"{p['one_process_faces_per_s']:.1f} | {100 * p['one_process_ratio']:.0f}% |")
    if p.get("failed"):  # its faces/s counts the meshes written; the network's, every crop
        lines += ["", f"{p['failed']} of the {p['faces']} crops failed in the last round (no mesh written: "
                      "the pipeline's faces/s counts meshes written, the network's every crop)."]
    lines += ["", "Work the pipeline adds per face, one thread"
              + (" (fastest of 7, as each side's fastest round above)" if p.get("rounds") else "") + ": "
              + ", ".join(f"{k} {_ms(v)} ms" for k, v in p["per_face_ms"].items()) + "."]
    busy, cms = p.get("cores_busy"), p.get("core_ms_per_face")
    if busy and cms and cms.get("pipeline") and procs:
        cores = cores or p["torch_threads"]
        added = cms["pipeline"] - cms["network"]
        full = busy["pipeline"] >= 0.9 * busy["network"]
        if added > 0 and full:  # the conclusion only where the numbers carry it
            why = "what reading, meshing and writing add, not idle cores, sets the ratio."
        elif not full:
            why = ("the pipeline keeps under 90% of the network's cores busy, so idle cores hold the ratio "
                   "down as well as the added work.")
        else:
            why = "the added work costs no more core-time than the network alone here."
        lines += [f"CPU time over wall time (the pipeline processes' included), the same fastest rounds: the "
                  f"network keeps {busy['network']:.2f} of the {cores} cores busy and spends "
                  f"{cms['network']:.1f} ms of core-time a face; the pipeline keeps {busy['pipeline']:.2f} busy "
                  f"and spends {cms['pipeline']:.1f} ms a face, {abs(added):.1f} ms {'more' if added >= 0 else 'less'}: "
                  + why]
    if p.get("bound") is not None:
        lines += [f"With the cores as busy as the network keeps them, the added work above caps the ratio at "
                  f"{100 * p['bound']:.0f}% (the network's core-ms a face over that plus the added work); "
                  "pipeline processes run one-thread networks, which lose nothing to thread synchronisation, "
                  "so they can pass it."]
    lines += [""]
    return lines


def _iou_cell(row: dict[str, Any]) -> str:
    if "iou_vs_dense" not in row:
        return "-"
    iou = row["iou_vs_dense"]
    txt = f"{iou:.4f}"
    return f"{iou:.7f}" if iou < 1 and txt == "1.0000" else txt  # not "1.0000" when voxels differ


def _md_refine(r: dict[str, Any], h: str = "##") -> list[str]:
    """The coarse-to-fine against dense table of a :func:`bench_refine` result."""
    rounds = r.get("repeat")
    how = (f"Each path warmed up once; then {rounds} interleaved rounds (MISE, then dense) per row, each method's "
           "fastest round reported; speed-up = fastest dense / fastest MISE, with the range of the rounds' own "
           "ratios in brackets (every round's times are in BENCHMARKS.json)." if rounds
           else "One run of each method (recorded before this section took rounds): each speed-up is a single "
                "measurement.")
    lines = [f"{h} Coarse-to-fine (MISE) against dense evaluation", "",
             "A finer grid's cell centres filled from the "
             f"{r['coarse_resolution']}^3 decoder output (its time excluded: both methods share it) by the "
             "refinement head (`--upsample head`) or by the decoder's own continuous function (`--upsample decoder`, "
             f"the default). Head: {r['head']}. {how}", "",
             "| grid | `--upsample` | levels | MISE s | MISE points | dense s | dense points | speed-up | fewer points "
             "| IoU MISE vs dense | voxels differing |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        dense_s = f"{row['dense_s']:.3g}" if "dense_s" in row else "skipped"
        sp = f"{row['speedup']:.1f}x" if "speedup" in row else "-"
        rs = row.get("round_speedups") or []
        if len(rs) > 1:
            sp += f" ({min(rs):.1f}-{max(rs):.1f}x)"
        diff = (f"{row['differing_voxels']:,}" if "differing_voxels" in row
                else "-" if "iou_vs_dense" not in row else "not recorded")
        lines.append(f"| {row['resolution']}^3 | {row.get('upsample', 'head')} | {row['levels']} | {row['mise_s']:.3g} | "
                     f"{row['mise_points']:,} | {dense_s} | {row['dense_points']:,} | {sp} | {row['points_ratio']:.1f}x "
                     f"| {_iou_cell(row)} | {diff} |")
    lines += [""]
    return lines


def _section_device(res: dict[str, Any], sec: str, data: dict[str, Any]) -> str:
    """The device a section ran on: its own record, else its provenance's, else (reports from
    before either was recorded) the report's model line."""
    return (data.get("device") or ((res.get("measured") or {}).get(sec) or {}).get("device")
            or (res.get("model") or {}).get("device", "cpu"))


def _same_run(res: dict[str, Any], a: str, b: str) -> bool:
    """Whether sections ``a`` and ``b`` of a report were measured in the same run."""
    pa, pb = ((res.get("measured") or {}).get(s) or {} for s in (a, b))
    return bool(pa) and (pa.get("date"), pa.get("machine")) == (pb.get("date"), pb.get("machine"))


def _md_photos(res: dict[str, Any]) -> list[str]:
    ph = res["photos"]
    rounds = ph.get("rounds_photos_per_s")
    how = (f"{ph['rounds']} interleaved rounds, each side's fastest reported (every round: "
           + "; ".join(f"{k.replace('_', ' ')} " + ", ".join(f"{v:.1f}" for v in vals) for k, vals in rounds.items())
           + " photos/s)" if ph.get("rounds") and rounds else "one run each")
    lines = [f"Whole photos (the bundled one, 512x512 PNG, shifted and mirrored: {ph['photos']} files) with "
             f"face detection, batch {ph['batch']}, {how}:", "",
             "| | photos/s |", "|---|---|",
             f"| pipeline, `--workers {ph['workers']}` | {ph['photos_per_s']:.1f} |"]
    if ph["workers"] > 1:
        lines.append(f"| pipeline, `--workers 1` | {ph['one_process_photos_per_s']:.1f} |")
    lines += [""]
    # detection measured with the photos (a report from before: the one-face table, only when the same run measured it)
    detect, where = ph.get("detect_ms"), f"median of {ph.get('detect_repeat', '?')} runs in this process"
    if detect is None and _same_run(res, "model", "pipeline"):
        detect, where = (res.get("one_face_ms") or {}).get("detect"), "the one-face table of the same run"
    net = (res.get("pipeline") or {}).get("network_faces_per_s")
    failed = f" {ph['failed']} photos failed." if ph["failed"] else ""
    if detect is not None:
        text = (f"Detection alone takes {detect:.0f} ms a photo ({where}; its scan split between this process's "
                "threads, one thread in each pipeline process)")
        if net:
            net_ms = 1000.0 / net
            text += f", against the network's {net_ms:.1f} ms a face at batch {res['pipeline']['batch']}"
            text += (": the detector, not the network, sets the pace for real photos." if detect > net_ms else ".")
        else:
            text += "."
        lines += [text + failed, ""]
    elif ph["failed"]:
        lines += [f"{ph['failed']} photos failed.", ""]
    return lines


def render_markdown(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md text of a :func:`run_bench` result (also of reports written before a field
    was recorded: each section is rendered from what it holds)."""
    m = res["machine"]
    load = m.get("load_average")
    lines = ["# voxface benchmarks", "",
             "Produced by `voxface bench` (`make bench`); every comparison is a ratio of measurements taken in the "
             "same run, and each section says how its times are taken (the median of repeats, or each side's "
             "fastest of interleaved rounds). Machine: "
             f"{m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GB, torch {m['torch']} "
             f"({m['torch_threads']} threads), CUDA: {m['cuda'] or 'none'}"
             + ("; glibc malloc keeps freed memory (`voxface.device.keep_freed_memory`, as the `voxface` command "
                "sets it)" if m.get("freed_memory_kept") else "; malloc as the platform sets it")
             + f"; {res['date']}"
             + (f"; load average {_fmt_load(load[0])} at the start, {_fmt_load(m.get('load_average_end', ['?'])[0])} "
                "at the end (other work on the machine slows every number alike)" if load else "") + ".", ""]
    if "model" in res:
        mm = res["model"]
        cid = mm.get("checkpoint_id") or {}
        ck = "; ".join([f"sha256 of the first MiB {cid['sha256_1mb']}"] if cid.get("sha256_1mb") else [])
        ck += f", {cid['bytes'] / 1e6:.1f} MB" if ck and cid.get("bytes") is not None else ""
        lines += [f"Model: {mm['checkpoint']} ({mm['resolution']}^3 logits, {mm['image_size']} px crops"
                  + (f"; {ck}" if ck else "") + ") on "
                  f"{mm['device']}; refinement head: {'yes' if mm['refine_head'] else 'none in the checkpoint'}.", ""]
    if "startup" in res:
        s = res["startup"]
        imp = s.get("help_imports", {})
        heavy = [k for k in ("torch", "open3d") if imp.get(k)]
        lines += ["## Start-up (fresh processes)", ""]
        if s.get("repeat"):
            lines += [f"Each command the median of {s['repeat']} runs.", ""]
        lines += ["| command | s |", "|---|---|",
                  f"| `python -c pass` | {s['python_s']:.2f} |",
                  f"| `python -c 'import voxface'` | {s['import_voxface_s']:.2f} |",
                  f"| `voxface --help` | {s['voxface_help_s']:.2f} |",
                  f"| `python -c 'import torch'` (for scale) | {s['import_torch_s']:.2f} |", "",
                  "`voxface --help` imports " + (", ".join(heavy) if heavy else "neither torch nor open3d") + ".", ""]
    if "data" in res:
        d = res["data"]
        w = d["workers"]
        lines += ["## Synthetic data generation", "",
                  "One sample = 128x128 crop (exact rasterized ray hits, shading, 2x2 supersampling at edges, "
                  "background, photometric noise) + exact 64^3 occupancy + 2048 surface points with normals.", ""]
        ts, rs = d.get("timed_samples"), d.get("rounds_samples_per_s")
        stage_how = (f"stage times each the median of {d.get('stage_repeat', 5)} "
                     + ("interleaved runs (every stage in turn) after a warm-up." if d.get("stage_interleaved")
                        else "runs after a warm-up, one stage after another."))
        if ts and rs and d.get("rounds"):
            lines += [f"Samples/s: {d['rounds']} interleaved rounds after a warm-up (a pass of {ts['1_process']} "
                      f"samples in 1 process, then {ts['workers']} over the workers), each side's fastest reported "
                      "(every round: " + "; ".join(
                          f"{'1 process' if k == '1_process' else k} " + ", ".join(f"{v:.1f}" for v in vals)
                          for k, vals in rs.items()) + f" samples/s); {stage_how}", ""]
        elif ts:
            lines += [f"Samples/s: one timed pass each after a warm-up ({ts['1_process']} samples in 1 process, "
                      f"{ts['workers']} over the workers); {stage_how}", ""]
        lines += ["| processes | samples/s |", "|---|---|",
                  f"| 1 | {d['samples_per_s_1_process']:.1f} |",
                  f"| {w} workers | {d[f'samples_per_s_{w}_workers']:.1f} |", "",
                  "| stage (1 sample, 1 process) | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in d["stage_ms"].items()]
        sl = d["stage_ms"]
        ref = [v for k, v in sl.items() if "reference" in k]
        fast = [v for k, v in sl.items() if "scanline" in k]
        if ref and fast:
            nd = d.get("occupancy_differing_voxels")
            same = ("agreement not checked in that run" if nd is None else "same result: no voxel differs" if nd == 0
                    else f"{nd:,} of {d.get('occupancy_voxels', 64 ** 3):,} voxels differ")
            lines += ["", f"Scanline occupancy is {ref[0] / fast[0]:.1f}x faster than open3d's ray listing on the "
                          f"same head ({same})."]
        lines += [""]
    if "one_face_ms" in res:
        lines += _md_one_face(res["one_face_ms"], repeat=res.get("model_repeat"))
        lines += [f"Refinement head: {res.get('one_face_refine_head', '?')}.", ""]
        lines += _md_throughput(res["throughput_faces_per_s"], repeat=res.get("model_repeat"),
                                rounds=res.get("throughput_rounds"))
    if "pipeline" in res:
        p = res["pipeline"]
        procs = p["workers"] > 1 and _section_device(res, "pipeline", p) == "cpu"
        lines += _md_pipeline(p, procs, p.get("cores"))
    if "photos" in res:
        lines += _md_photos(res)
    if "refine" in res:
        lines += _md_refine(res["refine"])
    if "onnx" in res:
        o = res["onnx"]
        sp = o["speed"]
        per_round = -(-int(o["repeat"]) // int(sp["rounds"])) if o.get("repeat") and sp.get("rounds") else "?"
        how = (f"Each runtime's fastest of {sp['rounds']} interleaved rounds, each round the median of "
               f"{per_round} calls after a warm-up; the speed-up's range is that of the rounds' own ratios."
               if sp.get("rounds") else "How the times were taken was not recorded in that run.")
        lines += ["## ONNX (onnxruntime against PyTorch, CPU)", "",
                  f"Opset {o['opset']}; largest difference to PyTorch (random crops, batch 1 and 3): "
                  + ", ".join(f"{k} {v:.1e}" for k, v in o["max_abs_diff"].items()) + ". " + how, "",
                  f"| graph (batch {sp['batch']}, {sp['threads']} threads) | PyTorch ms a batch | onnxruntime ms a batch "
                  "| speed-up |", "|---|---|---|---|"]
        for k in sp["torch_s"]:
            rng = (sp.get("speedup_range") or {}).get(k)
            lines.append(f"| {k} | {sp['torch_s'][k] * 1e3:.1f} | {sp['onnxruntime_s'][k] * 1e3:.1f} | {sp['speedup'][k]:.2f}x"
                         + (f" ({rng[0]:.2f}-{rng[1]:.2f}x)" if rng else "") + " |")
        lines += [""]
    if "memory" in res:
        mem = res["memory"]

        def cell(x: dict, k: str) -> str:
            return f"{x[k]:.0f}" if k in x else x.get("error", "?")

        kids = mem["batch"].get("children_peak_mb") or 0
        kept = mem.get("freed_memory_kept")  # recorded since the processes set malloc as the bench's own
        lines += ["## Peak memory (fresh process each, CPU)", ""]
        if kept is not None:
            lines += ["Malloc in each process: " + (
                "glibc keeping freed memory, as the `voxface` command sets it." if kept
                else "as the platform sets it (the `voxface` command has glibc keep freed memory)."), ""]
        lines += ["| run | RSS after loading the model, MB | peak RSS, MB |", "|---|---|---|",
                  f"| one photo (`reconstruct_image`, detection) | {cell(mem['one'], 'loaded_mb')} | {cell(mem['one'], 'peak_mb')} |",
                  f"| {mem['faces']} crops, batch {mem['batch_size']} (`reconstruct_files`) | {cell(mem['batch'], 'loaded_mb')} | "
                  f"{cell(mem['batch'], 'peak_mb')}" + (f"; each pipeline process at most {kids:.0f} (forked: the pages "
                                                         "they share with the parent count in both)" if kids else "") + " |", ""]
    if "cuda" in res:
        c = res["cuda"]
        # how that run meshed: reports from before the mesh processes (no `workers_as`) used writer threads
        meshed = (c.get("pipeline") or {}).get("workers_as", "threads")
        where = ("in processes beside it" if meshed == "mesh processes"
                 else "in threads of that process (a run from before meshing moved to processes beside the GPU)")
        lines += [f"## CUDA ({c['device']})", "",
                  "The model sections again with the model on the GPU (same checkpoint; reading crops stays on "
                  f"the CPU in threads of the network's process, meshing and writing {where})"
                  + (f"; peak GPU memory allocated {c['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in c else "") + ".", ""]
        if "one_face_ms" in c:
            lines += _md_one_face(c["one_face_ms"], "###", repeat=c.get("model_repeat"))
        lines += _md_throughput(c["throughput_faces_per_s"], "###", repeat=c.get("model_repeat"),
                                rounds=c.get("throughput_rounds"))
        if "pipeline" in c:
            lines += _md_pipeline(c["pipeline"], False, None, "###")
        if "refine" in c:
            lines += _md_refine(c["refine"], "###")
        lines += [f"{k}: {v:.1f} ms." for k, v in c.get("refine_ms", {}).items()]  # reports written before 2026-12-05
    lines = _mark_kept_sections(lines, res)
    if res.get("seconds"):
        lines += [f"Bench wall time: {res['seconds'].get('total', 0):.0f} s ("
                  + ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds"].items() if k != "total") + ")."]
    return "\n".join(lines) + "\n"

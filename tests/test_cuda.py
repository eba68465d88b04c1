"""The model, reconstruction, coarse-to-fine, the batch pipeline, training and the bench on CUDA.

Skipped where CUDA is not available (CI, and any machine without a GPU): voxface runs everywhere
on the CPU and these tests check that what ``--device auto`` picks on a GPU machine gives the CPU's
answers. ``VOXFACE_TEST_ACCEL=cpu`` runs them against the CPU itself (a check of the tests'
own logic on a machine without a GPU; every comparison then holds exactly).

Tolerances: CUDA convolutions run in TF32 by default (PyTorch's ``allow_tf32`` for cuDNN), about
three decimal digits, so logits are compared through the occupancy they give (IoU) and latents
to 1e-2; training under bf16 autocast is compared for finiteness and a falling loss, and a
resumed run against an uninterrupted one to a tolerance (cuDNN's backward kernels may sum in any
order, so runs need not agree bit for bit as they do on the CPU).
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

ACCEL = os.environ.get("VOXFACE_TEST_ACCEL", "cuda")

pytestmark = pytest.mark.skipif(ACCEL == "cuda" and not torch.cuda.is_available(),
                                reason="no CUDA device on this machine (the CPU paths are tested everywhere else)")


@pytest.fixture(scope="module")
def models():
    """The bundled model on the CPU and on the accelerator (module-wide: loading takes a second)."""
    from voxface import load_model

    return load_model(device="cpu"), load_model(device=ACCEL)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """The bundled photo's face crop, ``(S, S, 3)`` float32 in [0, 1], framed as training crops are."""
    import skimage.data

    from voxface.reconstruct import prepare_crops

    return prepare_crops(skimage.data.astronaut(), 128)[0][0]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_the_bundled_model_gives_the_cpus_answer(models, crop):
    cpu, acc = models
    assert acc.device.type == ACCEL and cpu.device.type == "cpu"
    x = torch.from_numpy(crop).permute(2, 0, 1)[None]
    with torch.inference_mode():
        lc, la = cpu.encode(x), acc.encode(x.to(acc.device))
        gc = cpu.decode(lc.z_id, lc.z_exp)[0, 0].numpy()
        ga = acc.decode(la.z_id.to(acc.device), la.z_exp.to(acc.device))[0, 0].float().cpu().numpy()
    for name in ("z_id", "z_exp"):
        torch.testing.assert_close(getattr(la, name).cpu(), getattr(lc, name), rtol=1e-2, atol=1e-2, msg=name)
    assert ga.shape == gc.shape == (64, 64, 64)
    assert _iou(ga, gc) >= 0.995
    assert np.abs(ga - gc).max() < 0.05 * np.abs(gc).max()


def test_the_public_api_takes_cpu_tensors_on_an_accelerator(models, crop):
    """The README's API on a GPU model: a CPU batch to ``encode``, the CPU codes of ``voxface.latent``
    to ``decode``, its logits to ``extract_mesh``; results on the model's device."""
    import voxface
    from voxface import latent

    _, acc = models
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].double()  # CPU, float64, as numpy / 255 gives
    lat = acc.encode(x)
    assert lat.z_id.device.type == ACCEL
    codes = latent.interpolate(acc, crop, lat.to("cpu"), steps=3, detect=False)  # CPU codes
    logits = acc.decode(codes.z_id, codes.z_exp)
    assert logits.device.type == ACCEL and logits.shape == (3, 1, 64, 64, 64)
    assert voxface.extract_mesh(logits[0], acc.grid).mesh.is_watertight


def test_decoded_codes_keep_their_pose_on_the_cpu(models, crop):
    """``latent.decode`` of codes read from a photo on a GPU model: ``Reconstruction.pose`` stayed on
    the GPU while ``rec.latents`` (and its pose) were moved to the CPU, as the docstring says both are."""
    from voxface import latent

    _, acc = models
    lat = acc.encode(torch.from_numpy(crop).permute(2, 0, 1)[None].to(acc.device))
    rec = latent.decode(acc, lat)[0]
    assert rec.pose is not None and rec.pose.rotation.device.type == "cpu"
    assert rec.latents.pose is not None and torch.equal(rec.pose.rotation, rec.latents.pose.rotation)
    assert rec.mesh.is_watertight


def test_reconstruct_on_the_accelerator_matches_the_cpu(models):
    """The Python API end to end (detection, crop, network, marching cubes): the same watertight head."""
    import skimage.data

    cpu, acc = models
    photo = skimage.data.astronaut()
    rc, ra = cpu.reconstruct(photo), acc.reconstruct(photo)
    assert ra.mesh.is_watertight and rc.mesh.is_watertight
    assert abs(ra.mesh.volume - rc.mesh.volume) <= 0.005 * rc.mesh.volume
    assert abs(len(ra.mesh.faces) - len(rc.mesh.faces)) <= 0.01 * len(rc.mesh.faces)
    from voxface.rotation import geodesic_degrees

    assert float(geodesic_degrees(ra.pose.rotation.cpu(), rc.pose.rotation)[0]) < 0.5  # the same head pose
    torch.testing.assert_close(ra.pose.translation.cpu(), rc.pose.translation, rtol=0, atol=1e-2)


@pytest.mark.parametrize("resolution", [128, 256])
def test_coarse_to_fine_on_the_accelerator(models, crop, resolution):
    """MISE agrees with dense evaluation on the accelerator, and with the CPU's MISE."""
    from voxface.refine import logit_iou, refine_logits

    cpu, acc = models
    x = torch.from_numpy(crop).permute(2, 0, 1)[None]
    with torch.inference_mode():
        lat = acc.encode(x.to(acc.device))
        mise = refine_logits(acc, lat.z_id, lat.z_exp, resolution=resolution, method="mise")[0]
        dense = refine_logits(acc, lat.z_id, lat.z_exp, resolution=resolution, method="dense")[0]
        on_cpu = refine_logits(cpu, lat.z_id.cpu(), lat.z_exp.cpu(), resolution=resolution, method="mise")[0]
    assert mise.logits.shape == (resolution,) * 3
    assert mise.stats["points"] < resolution ** 3 / 3
    assert logit_iou(mise.logits, dense.logits) >= 0.99
    assert logit_iou(mise.logits, on_cpu.logits) >= 0.99


def test_the_batch_pipeline_on_the_accelerator_writes_every_mesh(models, crop, tmp_path):
    """On an accelerator ``reconstruct_files`` meshes and writes in threads beside the network: every input
    gets its mesh, none fails, and a mesh matches the CPU's of the same crop."""
    from voxface.reconstruct import reconstruct_files
    from voxface.viz import save_png

    cpu, acc = models
    src = tmp_path / "crops"
    src.mkdir()
    base = (np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)
    paths = [save_png(np.roll(base, (i % 5 - 2, i // 5 % 5 - 2), axis=(0, 1)), src / f"f{i:03d}.png") for i in range(40)]
    s = reconstruct_files(acc, paths, tmp_path / "gpu", detect=False, batch_size=8, workers=3, progress=False)
    assert s.faces == 40 and not s.failed
    assert all((tmp_path / "gpu" / f"f{i:03d}.ply").is_file() for i in range(40))
    c = reconstruct_files(cpu, paths[:1], tmp_path / "cpu", detect=False, batch_size=8, workers=1, progress=False)
    assert c.faces == 1
    import trimesh

    mg, mc = trimesh.load(tmp_path / "gpu" / "f000.ply"), trimesh.load(tmp_path / "cpu" / "f000.ply")
    assert abs(mg.volume - mc.volume) <= 0.005 * mc.volume


def test_training_on_the_accelerator_learns_resumes_and_loads_on_the_cpu(tmp_path):
    """Toy training on the accelerator under autocast (bf16 where supported): finite losses that fall,
    a resume that continues to the uninterrupted run's weights (to a tolerance: see the module
    docstring), and checkpoints that load on a machine without the accelerator."""
    from voxface.checkpoint import load_checkpoint, load_model
    from voxface.train import train

    from .test_train import tiny

    cfg = tiny(total_steps=24, val_every=8, ckpt_every=8, amp="auto")
    train(copy.deepcopy(cfg), tmp_path / "a", device=ACCEL, progress=False)
    ck = load_checkpoint(tmp_path / "a" / "last.pth.tar")  # map_location="cpu"
    losses = [r["total"] for r in ck["loss_history"]]
    assert losses and all(np.isfinite(losses)), losses
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
    assert all(v.device.type == "cpu" for v in ck["state_dict"].values())
    m = load_model(tmp_path / "a" / "best.pth.tar", device="cpu")
    assert m.device.type == "cpu"

    train(copy.deepcopy(cfg), tmp_path / "b", device=ACCEL, progress=False, stop_at=12)
    train(None, tmp_path / "b", resume=tmp_path / "b" / "last.pth.tar", device=ACCEL, progress=False)
    kb = load_checkpoint(tmp_path / "b" / "last.pth.tar")
    assert kb["step"] == ck["step"] == 24
    assert [r["step"] for r in kb["loss_history"]] == [r["step"] for r in ck["loss_history"]]
    for k, v in ck["state_dict"].items():
        if v.is_floating_point():
            torch.testing.assert_close(kb["state_dict"][k], v, rtol=2e-2, atol=2e-3, msg=k)


def test_bench_adds_a_cuda_table(tmp_path):
    """``voxface bench --only cuda`` on a GPU machine: the model sections again on the GPU, in their own table."""
    if ACCEL != "cuda":
        pytest.skip("the bench's cuda section measures CUDA only")
    from voxface.bench import BenchSizes, run_bench

    sizes = BenchSizes(repeat=1, refine_resolutions=(128,), cuda_batch_sizes=(1, 8), cuda_pipeline_faces=32,
                       cuda_pipeline_batch=8, cuda_pipeline_workers=2)
    res = run_bench(tmp_path / "BENCHMARKS.md", sections=("cuda",), device="cuda", sizes=sizes)
    c = res["cuda"]
    assert set(c["throughput_faces_per_s"]) == {1, 8} and min(c["throughput_faces_per_s"].values()) > 0
    assert c["pipeline"]["meshes_written"] == 32 and c["pipeline"]["failed"] == 0
    (row,) = c["refine"]["rows"]
    assert row["resolution"] == 128 and row["iou_vs_dense"] >= 0.99
    assert c["one_face_ms"]["encode"] > 0 and c["peak_gpu_mb"] > 0
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert f"## CUDA ({c['device']})" in md and "### Batch pipeline against the network" in md
    assert "### Coarse-to-fine (MISE) against dense evaluation" in md

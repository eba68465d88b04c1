"""The bundled weights (``voxface/weights/vox-cpk.pth.tar``): what ships, what it does on the demo
photo, and that the README's model card states what the file's own evaluation measured.

Skipped with a reason where the weights are not installed (``make weights`` makes them).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import voxface
from voxface.checkpoint import load_checkpoint

from .test_data import needs_ict

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = voxface.DEFAULT_WEIGHTS

pytestmark = pytest.mark.skipif(not WEIGHTS.exists(), reason=f"no bundled weights at {WEIGHTS} (make weights)")


@pytest.fixture(scope="module")
def ck() -> dict:
    return load_checkpoint(WEIGHTS, map_location="cpu")


@pytest.fixture(scope="module")
def model():
    return voxface.load_model(device="cpu")


@pytest.fixture(scope="module")
def astronaut(model):
    import skimage.data

    return model.reconstruct(skimage.data.astronaut())


def test_shipped_file_is_small_self_describing_and_without_resume_state(ck) -> None:
    assert WEIGHTS.stat().st_size <= 25 * 2**20
    assert ck["optimizer"] is None and ck.get("scheduler") is None and ck.get("rng") is None
    from voxface.checkpoint import RESUME_EXTRA

    assert not set(RESUME_EXTRA) & set(ck["extra"])  # nor the trainer's resume state in extra
    floats = [v for v in ck["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert ck["config"]["decoder"]["resolution"] == 64
    assert ck["config"]["encoder"]["z_id"] == 100 and ck["config"]["encoder"]["z_exp"] == 53
    assert len(ck["loss_history"]) == ck["step"] > 0  # one record per training step
    assert ck["prior"]["z_id_std"].shape == (100,) and ck["prior"]["z_exp_std"].shape == (53,)
    ev = ck["extra"]["evaluation"]
    assert ev["num"] >= 200 and ev["resolution"] == 64


def test_load_model_without_arguments_is_the_shipped_model(model, ck) -> None:
    assert model.grid.resolution == 64
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float16 storage, float32 compute
    sd = model.state_dict()
    for k, v in ck["state_dict"].items():
        assert torch.equal(sd[k].to(v.dtype), v), k


def test_demo_photo_gives_a_clean_face_mesh_turned_like_the_photo(astronaut, model) -> None:
    mesh = astronaut.mesh
    assert mesh.is_watertight and mesh.body_count == 1 and mesh.volume > 0
    assert model.grid.contains(mesh.vertices).all()
    # a head of canonical size: the RMS radius of its surface vertices (neck and cap included, so
    # above the 88 mm of the ICT vertices the frame normalises) within 15% of the mean head's,
    # decoded from the zero codes by the same model
    from voxface.mesh import extract_mesh

    with torch.no_grad():
        mean_logits = model.decode(torch.zeros(1, 100), torch.zeros(1, 53))[0, 0].numpy()
    mean_mesh = extract_mesh(mean_logits, model.grid).mesh
    rms = lambda v: float(np.sqrt(((v - v.mean(0)) ** 2).sum(1).mean()))  # noqa: E731
    r, r_mean = rms(mesh.vertices), rms(mean_mesh.vertices)
    assert 0.85 < r / r_mean < 1.15, (r, r_mean)
    assert 0.7 < mesh.volume / mean_mesh.volume < 1.3
    # the astronaut looks roughly at the camera: a near-frontal predicted rotation
    R = astronaut.pose.rotation[0].detach().cpu().numpy()
    frontal = np.diag([1.0, -1.0, -1.0])  # canonical -> OpenCV camera for a face looking into it
    angle = np.degrees(np.arccos(np.clip((np.trace(frontal.T @ R) - 1) / 2, -1, 1)))
    assert angle < 35, angle


def test_reconstruction_is_deterministic(model, astronaut) -> None:
    import skimage.data

    again = model.reconstruct(skimage.data.astronaut())
    np.testing.assert_array_equal(again.logits, astronaut.logits)


def _card_row(metric: str) -> tuple[float, float]:
    """(model mean, model median) of the README model card's row for ``metric``: the table
    ``voxface evaluate`` prints, pasted into the card."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^\| " + re.escape(metric) + r" \| ([-0-9.]+) \| ([-0-9.]+) \|", text, re.M)
    assert m, f"README model card has no row for {metric!r}"
    return float(m.group(1)), float(m.group(2))


def test_readme_model_card_states_the_embedded_evaluation(ck) -> None:
    model = ck["extra"]["evaluation"]["summary"]["model"]
    for metric in ("iou", "face_chamfer_l1", "chamfer_l1", "pose_deg", "swap_iou"):
        mean, median = _card_row(metric)
        assert mean == pytest.approx(model[metric]["mean"], abs=1e-4), metric
        assert median == pytest.approx(model[metric]["median"], abs=1e-4), metric


@pytest.mark.ict
@needs_ict
def test_on_unseen_faces_pose_is_learnt_and_shapes_beat_the_mean_head(model) -> None:
    """A fresh seed range (not the card's). What these weights do (model card): predict the head
    pose (median 3.6 degrees on the card's 200 faces) and reconstruct heads closer than the mean
    head (IoU +0.034, face Chamfer-L1 0.77x on those faces). 24 faces of this range; the bars
    leave room for the noise of so few faces."""
    from voxface.evaluate import evaluate

    rep, _ = evaluate(model, num=24, seed=7_000_001, points=5000, progress=False)
    s = rep.summary()
    assert s["model"]["iou"]["mean"] > s["baseline"]["iou"]["mean"] + 0.01
    assert s["model"]["face_chamfer_l1"]["mean"] < s["baseline"]["face_chamfer_l1"]["mean"]
    assert s["model"]["pose_deg"]["median"] < 8  # poses span yaw +-60, pitch +-25, roll +-15


def test_shipped_file_was_trained_by_the_committed_stage_configs(ck) -> None:
    """The file is stage 3 of `make weights`: its training config is configs/voxface-64-finetune.yaml,
    which starts from stage 2 (configs/voxface-64-encoder.yaml), which starts from stage 1; its
    refinement head is the one the Makefile's two refine-train lines train."""
    import yaml

    def train_section(name: str) -> dict:
        return yaml.safe_load((ROOT / "configs" / name).read_text())["train"]

    shipped = ck["extra"]["run_config"]["train"]
    stage3 = train_section("voxface-64-finetune.yaml")
    for k, v in stage3.items():
        if k == "loss":
            for lk, lv in v.items():
                assert shipped["loss"][lk] == lv, lk
        else:
            assert shipped[k] == (list(v) if isinstance(v, list) else v), k
    stage2 = train_section("voxface-64-encoder.yaml")
    assert stage3["init_from"] == "runs/voxface-64-encoder/last.pth.tar"
    assert stage2["init_from"] == "runs/voxface-64/best.pth.tar"
    assert set(stage2["freeze"]) == set(stage3["freeze"]) == {"decoder", "refiner"}
    # the released decoder is stage 1's: the file's architecture is configs/voxface-64.yaml's
    stage1 = yaml.safe_load((ROOT / "configs" / "voxface-64.yaml").read_text())["model"]
    assert ck["config"]["decoder"] == {**ck["config"]["decoder"], **stage1["decoder"]}
    assert ck["config"]["encoder"] == {**ck["config"]["encoder"], **stage1["encoder"]}
    # the head: trained as the Makefile's two refine-train lines say, a fresh head on stage 3's
    # data, then the same head on configs/voxface-64-refine.yaml's
    make = (ROOT / "Makefile").read_text()
    lines = re.findall(r"refine-train -c (\S+) \\\n\s*(.*)", make)
    assert [c for c, _ in lines] == ["$(RUN3)/best.pth.tar", "$(RUN3)/refined-true.pth.tar"], lines

    def option(line: str, name: str) -> str:
        return re.search(rf"--{name} (\S+)", line).group(1)

    first, second = lines[0][1], lines[1][1]
    rt = ck["extra"]["refine_train"]
    prev = rt["previous"]
    assert "--fresh" in first and prev["fresh"] is True and prev["data"] == ck["extra"]["run_config"]["data"]
    assert prev["config"]["latents"] == option(first, "latents") == "true"
    assert prev["config"]["steps"] == int(option(first, "steps"))
    assert "--fresh" not in second and rt["fresh"] is False
    assert rt["config"]["latents"] == option(second, "latents") == "both"
    assert rt["config"]["steps"] == int(option(second, "steps"))
    assert rt["config"]["lr"] == float(option(second, "lr"))
    assert rt["data"] == yaml.safe_load((ROOT / option(second, "config")).read_text())["data"]
    assert ck["config"]["refine"] is not None


def test_voxface_demo_as_make_demo_runs_it(monkeypatch, capsys, tmp_path) -> None:
    """``voxface demo -o DIR`` (what ``make demo`` runs): the photo, the mesh, its latents and the
    picture are written, each printed; the mesh is closed and the picture is the 4-panel PNG."""
    import trimesh

    from voxface.image import load_image

    from .conftest import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "demo", "-o", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    printed = re.findall(r"^(?:photo|output):\s+(\S+)$", out, flags=re.M)
    names = sorted(Path(p).name for p in printed)
    assert names == ["astronaut.png", "astronaut_mesh.npz", "astronaut_mesh.ply", "astronaut_mesh_camera.obj",
                     "astronaut_mesh_preview.png"], out
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == names  # it writes what it lists
    assert all(Path(p).is_file() for p in printed)
    mesh = trimesh.load(tmp_path / "demo" / "astronaut_mesh.ply", process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert (tmp_path / "demo" / "astronaut_mesh_camera.obj").is_file()
    with np.load(tmp_path / "demo" / "astronaut_mesh.npz") as z:
        assert z["z_id"].shape[-1] == 100 and z["z_exp"].shape[-1] == 53
    picture = load_image(tmp_path / "demo" / "astronaut_mesh_preview.png")
    assert picture.shape[1] > 2 * picture.shape[0]  # crop, overlay, front and side views side by side
    assert re.search(r"^mesh:\s+\d+ vertices, \d+ faces, watertight=True$", out, flags=re.M)
    # each angle's sign said (only yaw's was: a reader of 'pitch -7' could not tell up from down)
    assert re.search(r"^pose:\s+yaw [+-]\d+, pitch [+-]\d+, roll [+-]\d+ degrees \(yaw > 0: turned to the subject's "
                     r"left; pitch > 0: face down; roll > 0: tilted towards the right shoulder\)$", out, flags=re.M), out
    timings = re.search(r"^timings: load_detect_crop \d+ ms, encode \d+ ms, decode \d+ ms.*$", out, flags=re.M)
    assert timings and " mesh " not in timings.group(0)  # the mesh stages' sum beside them read as a stage
    assert not list((tmp_path / "demo").glob(".*.tmp"))
    # run again into the same folder: its own photo is rewritten; a user's astronaut.png never is
    assert run_cli(monkeypatch, capsys, "demo", "-o", tmp_path / "demo", "--device", "cpu")[0] == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "astronaut.png").write_bytes(b"my own picture")
    code, _, err = run_cli(monkeypatch, capsys, "demo", "-o", mine, "--device", "cpu")
    assert code == 1 and "astronaut.png: exists and is not the bundled photo" in err
    assert (mine / "astronaut.png").read_bytes() == b"my own picture" and len(list(mine.iterdir())) == 1
    code, _, err = run_cli(monkeypatch, capsys, "demo", "-o", tmp_path / "bad", "-c", tmp_path / "nope.pth.tar")
    assert code == 1 and "not found" in err and not (tmp_path / "bad").exists()
    # a write that fails (a full disk) leaves neither the photo nor the folders the run made
    import errno

    import voxface.mesh

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(voxface.mesh, "atomic_write_files", full)
    code, _, err = run_cli(monkeypatch, capsys, "demo", "-o", tmp_path / "full" / "demo", "--device", "cpu")
    assert code == 1 and "No space left on device" in err and not (tmp_path / "full").exists(), err


@pytest.mark.ict
@needs_ict
def test_error_regions_script_splits_the_error_front_and_back() -> None:
    """benchmarks/error_regions.py (the model card's "where the gap is") on 8 faces: a row per
    decoding, the mean head removes nothing, the true coefficients more than the encoder's codes,
    and most of the mean head's wrong cells lie behind the head's centre."""
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "error_regions.py"), "--num", "8"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {m[0].strip(): [float(v) for v in m[1:]]
            for m in re.findall(r"^\| ([^|]+) \| (\d+) \| (\d+) \| (-?[\d.]+)% \| (-?[\d.]+)% \|$", out, re.M)}
    assert set(rows) == {"mean head", "encoder's codes", "encoder's expression, mean identity (z_id = 0)",
                         "true coefficients (decoder alone)"}, out
    assert rows["mean head"][2:] == [0.0, 0.0]
    assert rows["true coefficients (decoder alone)"][3] > rows["encoder's codes"][3] > 0
    assert rows["mean head"][1] > rows["mean head"][0]  # behind the centre dominates
    assert int(re.search(r"wrong cells: (\d+)% behind", out)[1]) > 50


@pytest.mark.ict
@needs_ict
def test_jitter_tta_script_averages_the_codes_of_shifted_and_scaled_crops() -> None:
    """benchmarks/jitter_tta.py (the model card's test-time jitter) on 4 faces: a row per setting
    with its number of encodes, IoUs of real reconstructions, and averaging shortens the codes."""
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "jitter_tta.py"), "--num", "4"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = re.findall(r"^\| ([^|]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [int(r[1]) for r in rows] == [1, 9, 9, 19, 19], out
    assert all(0.7 < float(r[2]) < 1.0 for r in rows), out
    assert all(float(r[3]) < float(rows[0][3]) for r in rows[1:]), out


@pytest.mark.ict
@needs_ict
def test_pose_offaxis_script_scores_the_pose_along_the_ray_too() -> None:
    """benchmarks/pose_offaxis.py (the model card's pose paragraph) on 6 evaluation faces: both errors,
    the off-axis angle and its correlation are printed; heads are off the axis by a few degrees."""
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "pose_offaxis.py", "--num", "6"], capture_output=True, text=True,
                         check=True, cwd=ROOT / "benchmarks").stdout
    assert out.startswith("6 faces of seed 2000003"), out
    cam = float(re.search(r"camera-frame rotation: median ([\d.]+)", out)[1])
    ray = float(re.search(r"along the ray: median ([\d.]+)", out)[1])
    off = float(re.search(r"off-axis angle: median ([\d.]+)", out)[1])
    assert 0 < ray < 15 and 0 < cam < 15 and 0.5 < off < 10, out
    assert re.search(r"correlation with the camera-frame error -?[\d.]+$", out.strip()), out


@pytest.mark.ict
@needs_ict
def test_refine_ablation_script_compares_the_head_with_the_decoder_and_the_grid() -> None:
    """benchmarks/refine_ablation.py (the model card's 128^3 comparison) on 4 faces: for both kinds of
    codes a 64^3 row, a head row and a row of the decoder's own function; the two 128^3 surfaces
    differ (the head is used), and the true coefficients score above the encoder's codes."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "refine_ablation.py"), "--num", "4"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {(m[0], m[1]): [float(v) for v in m[2].split(" | ")]
            for m in re.findall(r"^\| (encoder|true) \| ([^|]+?) \| ([\d. |]+?) \|$", out, re.M)}
    assert set(rows) == {(c, s) for c in ("encoder", "true")
                         for s in ("64^3 grid", "128^3 head of bundled", "128^3 decoder's own function")}, out
    assert all(len(v) == 7 for v in rows.values())
    for codes in ("encoder", "true"):
        assert rows[(codes, "128^3 head of bundled")] != rows[(codes, "128^3 decoder's own function")]
    assert rows[("true", "64^3 grid")][0] > rows[("encoder", "64^3 grid")][0]  # IoU


def _readme_block(heading: str) -> str:
    """The first ```python block under the README's ``## heading``."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch) -> None:
    """The README's "Python API" and "Latent research" code runs unchanged on the shipped weights
    (its photos are the astronaut crop written under the names the snippets use)."""
    import skimage.data

    from PIL import Image

    monkeypatch.chdir(tmp_path)
    photo = skimage.data.astronaut()
    for name in ("photo.jpg", "a.jpg", "b.jpg", "smile.jpg", "neutral.jpg"):
        Image.fromarray(np.ascontiguousarray(photo if name != "b.jpg" else photo[:, ::-1])).save(name)
    api: dict = {"batch": torch.rand(2, 3, 128, 128)}
    exec(compile(_readme_block("Python API"), "README.md: Python API", "exec"), api)
    assert api["mesh"].is_watertight and (tmp_path / "out" / "photo.ply").exists()
    assert tuple(api["logits"].shape) == (2, 1, 64, 64, 64)
    assert len(api["recs"]) == 8
    research: dict = {}
    exec(compile(_readme_block("Latent research"), "README.md: Latent research", "exec"), research)
    assert len(research["recs"]) == 8 and len(research["faces"]) == 16
    assert all(r.mesh.is_watertight for r in research["recs"])


def test_inspect_shows_the_config_prior_and_embedded_evaluation(ck) -> None:
    """What the README says `voxface inspect` shows of the shipped file is there, and agrees with it."""
    from voxface.checkpoint import inspect_checkpoint

    info = inspect_checkpoint(WEIGHTS)
    assert info.prior == {"kind": ck["prior"]["kind"], "num_samples": int(ck["prior"]["num_samples"]),
                          "z_id": 100, "z_exp": 53}
    assert info.evaluation == ck["extra"]["evaluation"] and info.released_from == ck["extra"]["released_from"]
    text = info.format()
    iou = ck["extra"]["evaluation"]["summary"]["model"]["iou"]["mean"]
    assert re.search(rf"^evaluation\s+200 unseen faces .* IoU {iou:.4g} \(mean head 0\.83", text, flags=re.M), text
    assert re.search(r"^config\s+decoder: name deform, resolution 64", text, flags=re.M), text
    assert re.search(r"^prior\s+\S+, fitted on \d+ training latents \(z_id 100, z_exp 53\)", text, flags=re.M), text


def test_expressions_are_set_by_name_and_the_prior_directions_are_annotated(model, ck) -> None:
    """The shipped z_exp coordinates are the ARKit blendshape weights, named in the prior
    (``release --annotate 256``, as the Makefile releases it): ``set_expression(jawOpen=1)`` on the
    neutral mean face opens the mouth (a visible change: the occupancy moves by several percent),
    a misspelt name gets suggestions; the identity directions follow ICT identity modes."""
    from voxface import latent
    from voxface.metrics import iou

    assert "--annotate 256" in (ROOT / "Makefile").read_text()
    names = latent.expression_names(model)
    assert names is not None and len(names) == 53 and "jawOpen" in names
    assert ck["prior"]["z_id_pca"]["coeff_correlation"].shape[1] == 100
    assert any(d.match for d in latent.principal_directions(model, "identity", k=4))
    mean = latent.mean_latents(model)
    neutral = latent.set_expression(model, mean, {}, reset=True)
    open_jaw = latent.set_expression(model, mean, {"jawOpen": 1.0}, reset=True)
    assert float(open_jaw.z_exp.sum()) == 1.0 and float(open_jaw.z_exp[0, names.index("jawOpen")]) == 1.0
    assert torch.equal(open_jaw.z_id, mean.z_id)
    with torch.no_grad():
        a, b = (model.decode(x.z_id, x.z_exp)[0, 0] > 0 for x in (neutral, open_jaw))
    assert iou(a.numpy(), b.numpy()) < 0.97
    with pytest.raises(voxface.VoxfaceError, match="no expression coefficient 'jawopen'; did you mean jawOpen"):
        latent.set_expression(model, mean, {"jawopen": 1.0})

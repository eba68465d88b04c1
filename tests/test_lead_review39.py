"""Defects the lead found in session 39, each with the test that failed before its fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxface.errors import InputError, InputTypeError
from voxface.models import create_model

from .conftest import SMALL_CONFIG as SMALL
from .test_reconstruct_review33 import tiny_ckpt, tiny_model  # noqa: F401 - the same module fixtures


@pytest.mark.parametrize("keep, error, words", [("3", InputTypeError, "keep_meshes must be an integer"),
                                                (2.5, InputTypeError, "keep_meshes must be an integer"),
                                                (-1, InputError, "keep_meshes must be at least 0")])
def test_evaluate_refuses_a_bad_keep_meshes_before_any_work(keep, error, words, tmp_path: Path) -> None:
    """evaluate(keep_meshes="3") failed in a '>' between str and int after the baseline and the first
    block of faces were rendered and scored; -1 quietly kept none. One line naming the argument, before
    the ICT model is read (the missing folder is never reached)."""
    from voxface.evaluate import evaluate

    torch.manual_seed(0)
    model = create_model(SMALL).eval()
    with pytest.raises(error, match=f"^{words}"):
        evaluate(model, num=4, points=1000, ict_root=str(tmp_path / "missing"), progress=False, keep_meshes=keep)


def test_check_folder_names_every_sample_the_scan_refuses(tmp_path: Path, monkeypatch, capsys) -> None:
    """`data check-folder` stopped at the first crop without ground truth (or with a bad JSON): a folder
    of thousands named one bad sample a run, though the docs promise an ``error:`` line for each. Two
    crops without ground truth and one bad JSON: three lines and the count, the good samples checked."""
    from .conftest import run_cli
    from .test_folder_review39 import _sample

    data = tmp_path / "faces"
    for i in range(4):
        _sample(data, f"good_{i}", seed=i)
    _sample(data, "bad_json", seed=7)
    (data / "bad_json.json").write_text("{")
    for stem in ("no_mesh_1", "no_mesh_2"):
        _sample(data, stem, seed=8)
        (data / f"{stem}.npz").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", data, "--resolution", 16,
                             "--image-size", 8, "--cache-dir", tmp_path / "cache")
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err, err
    named = sorted(line.split(": ")[1] for line in lines[:-1])
    assert named == sorted(str(data / f) for f in ("bad_json.json", "no_mesh_1.png", "no_mesh_2.png")), err
    assert all(line.startswith("error: ") for line in lines), err
    assert lines[-1] == f"error: {data}: 3 of 7 samples cannot be used (each listed above); fix or remove them " \
                        "and check again", err


def test_init_checkpoint_refuses_a_model_key_left_out_of_its_section(tmp_path: Path, monkeypatch, capsys) -> None:
    """``init-checkpoint -c`` read the file's model: section alone, so an ``encoder:`` left at the top
    level by its indent was dropped: a default-encoder checkpoint (z_id 128, not 8) written without a
    word, where ``voxface train`` and ``create_model`` refuse the file (ff757c1). One line, nothing written."""
    from .conftest import run_cli

    bad = tmp_path / "indent.yaml"
    bad.write_text("model:\n  decoder:\n    name: deform\nencoder:\n  z_id: 8\n", encoding="utf-8")
    out = tmp_path / "x.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "init-checkpoint", "-c", bad, "-o", out)
    assert code == 1 and err == (f"error: {bad}: encoder: is a key of the model: section, found at the top level "
                                 "of the config: indent it under model:\n"), err
    assert not out.exists()


def test_latent_pages_share_a_face_budget(tmp_path: Path, monkeypatch, capsys, tiny_ckpt) -> None:
    """`voxface sample -n 1024` put every mesh on index.html at up to 20,000 faces: about 190 KB a face
    at 64^3, a 195 MB page no browser opens. The page's meshes share PAGE_FACES (the mesh files keep
    every face): 20,000 a mesh up to 100 meshes, then the budget shared, never under 2,000."""
    import voxface.cli._latent as latent_cli
    import voxface.html
    from .conftest import run_cli

    assert [latent_cli.page_faces(n) for n in (1, 100, 101, 400, 1024, 10_000)] == [20000, 20000, 19801, 5000,
                                                                                    2000, 2000]
    asked = []
    real = voxface.html.save_mesh_page

    def save_mesh_page(*args, **kwargs):
        asked.append(kwargs["max_faces"])
        return real(*args, **kwargs)

    monkeypatch.setattr(voxface.html, "save_mesh_page", save_mesh_page)
    monkeypatch.setattr(latent_cli, "PAGE_FACES", 4 * 2500)
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 4, "-c", tiny_ckpt, "-o", tmp_path / "s",
                           "--size", 32, "--device", "cpu")
    assert code == 0, err
    assert asked == [2500] and (tmp_path / "s" / "index.html").is_file()


def test_divergence_advice_is_one_that_works(tmp_path: Path, monkeypatch) -> None:
    """A divergence said 'lower train.lr, or resume from last.pth.tar': a resume repeats the run's
    steps exactly (and diverged again at the same step, reproduced by the train reviewer), and a
    resume with a lower train.lr is refused as another run. The advice is now a fresh start with a
    lower lr, or a new run from last.pth.tar through train.init_from."""
    import voxface.train as vt
    from voxface.errors import VoxfaceError

    from .test_train import tiny

    real = vt.compute_losses

    def nan_at_step_2(*args, **kwargs):
        total, terms = real(*args, **kwargs)
        nan_at_step_2.calls += 1
        if nan_at_step_2.calls == 2:
            terms["total"] = float("nan")
        return total, terms

    nan_at_step_2.calls = 0
    monkeypatch.setattr(vt, "compute_losses", nan_at_step_2)
    with pytest.raises(VoxfaceError) as e:
        vt.train(tiny(total_steps=4), tmp_path / "run", progress=False)
    last = tmp_path / "run" / "last.pth.tar"
    assert str(e.value) == (f"training diverged: the loss is nan at step 2 (a resume repeats the same steps and "
                            f"diverges again: lower train.lr and start again (--overwrite), or start a new run from "
                            f"{last} (train.init_from) with a lower train.lr)")
    assert "resume from" not in str(e.value)

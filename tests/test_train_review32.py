"""Review 32: training and the refinement head (resume of a finished run, ...)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from voxface.errors import ConfigError
from voxface.train import train

from .test_train import tiny


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_resuming_a_finished_run_trains_nothing_and_leaves_its_files(tmp_path, monkeypatch, capsys) -> None:
    """``voxface train --resume run/last.pth.tar`` on a run that had finished rewrote last.pth.tar (a new
    prior fit, a new elapsed time) and appended a second start and end record to log.jsonl, whose time
    went backwards. It now says the run is finished in one note line, exits 0 with the run's summary,
    and every file of the run is byte-identical; the dry run says the same; the API returns the run's
    result with steps_run 0."""
    from .conftest import run_cli

    run = tmp_path / "run"
    done = train(tiny(total_steps=4, val_every=2, ckpt_every=2), run, progress=False)
    last = run / "last.pth.tar"
    before = _files(run)
    code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", last, "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert err.strip() == (f"note: {last}: its run finished at step 4: nothing to train, and its "
                           "files are left as they are; pass --steps above 4 to train further"), err
    assert out.startswith(f"step 4: best val IoU {done.best_val_iou:.4f} (step {done.best_step})"), out
    assert out.rstrip().endswith(str(run)), out
    assert _files(run) == before
    assert [r["event"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())].count("start") == 1
    # --steps equal to the step reached is the same run's end; the dry run says what the run would
    code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", last, "--steps", "4", "--dry-run")
    assert code == 0 and "its run finished at step 4" in err and yaml.safe_load(out)["train"]["total_steps"] == 4, err
    # -o another folder is not where the run is: said, and nothing made there (the run's files are not carried)
    for dry in ((), ("--dry-run",)):
        code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", last, "-o", tmp_path / "b", *dry)
        assert code == 0 and f"are left as they are ({tmp_path / 'b'} is not used)" in err, err
        assert not (tmp_path / "b").exists()
    res = train(None, resume=last, progress=False)
    assert (res.steps, res.steps_run, res.interrupted) == (4, 0, False)
    assert res.out_dir == run and res.last_checkpoint == last and res.best_checkpoint == run / "best.pth.tar"
    assert (res.best_val_iou, res.best_step, res.final_val_iou) == (done.best_val_iou, done.best_step,
                                                                   done.final_val_iou)
    assert res.final_loss == done.final_loss and res.mean_shape_iou == done.mean_shape_iou
    # a config given must still describe the run
    with pytest.raises(ConfigError, match=r"differs from the run .*train.lr 0.1 \(the run: 0.003\)"):
        train(tiny(total_steps=4, val_every=2, ckpt_every=2, lr=0.1), run, resume=last, progress=False)
    assert _files(run) == before
    capsys.readouterr()
    # past the end stays refused; beyond it the run goes on
    res = train(None, resume=last, progress=False, steps=6)
    assert (res.steps, res.steps_run) == (6, 2) and _files(run)["last.pth.tar"] != before["last.pth.tar"]


def test_a_resume_shortened_to_the_step_reached_still_finishes_the_run(tmp_path, capsys) -> None:
    """A run stopped at step 2 of 4 and resumed with ``steps=2`` is not finished: the resume ends it there
    (the final validation, the latent prior in last.pth.tar, the end record), as before."""
    run = tmp_path / "run"
    train(tiny(total_steps=4, val_every=0, ckpt_every=0), run, progress=False, stop_at=2)
    res = train(None, resume=run / "last.pth.tar", progress=False, steps=2)
    assert "finished" not in capsys.readouterr().err
    assert (res.steps, res.steps_run, res.interrupted) == (2, 0, False) and res.best_step == 2
    end = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["interrupted"] is False


@pytest.mark.parametrize("bad, words", [
    ({"weight_decay": -0.1}, "refine: weight_decay -0.1 must be a finite number >= 0"),
    ({"weight_decay": float("nan")}, "refine: weight_decay nan must be a finite number >= 0"),
    ({"steps": 2.5}, "refine: steps 2.5 must be a whole number"),
    ({"batch_size": 2.0}, "refine: batch_size 2.0 must be a whole number"),
    ({"points": 64.5}, "refine: points 64.5 must be a whole number"),
    ({"steps": True}, "refine: steps True must be a whole number"),
])
def test_train_refiner_refuses_a_bad_weight_decay_or_count_before_the_head_changes(bad, words, one_torch_thread):
    """train_refiner with ``weight_decay`` -0.1 or NaN was AdamW's raw ``ValueError`` and ``steps`` 2.5 (or a
    float batch_size / points) a ``TypeError`` of range/randint, each after the data was built and a head
    added to the model; ``steps=True`` trained one step. Each is now a ConfigError before anything
    changes, and whole numbers of numpy's types still train."""
    import numpy as np

    from voxface.models import create_model
    from voxface.refine import RefineTrainConfig, train_refiner

    from .conftest import SMALL_CONFIG, TOY_DATA

    base = dict(steps=2, batch_size=2, points=64, resolution=0, log_every=1)
    model = create_model(SMALL_CONFIG)
    with pytest.raises(ConfigError) as ei:
        train_refiner(model, TOY_DATA, RefineTrainConfig(**{**base, **bad}))
    assert str(ei.value) == words and model.refiner is None and model.config.refine is None
    res = train_refiner(model, TOY_DATA, RefineTrainConfig(**{**base, "steps": np.int64(2)}))
    assert [r["step"] for r in res.history] == [1, 2] and model.refiner is not None


def test_refine_logits_defaults_to_the_head_and_decode_at_to_the_decoder_as_documented(one_torch_thread) -> None:
    """refine_logits' ``upsample`` default ("head") differs from decode_at's / reconstruct's ("decoder"):
    its docstring now says so and how to get their surface; the two defaults are what it says."""
    import inspect

    from voxface.config import RefineConfig
    from voxface.models import create_model
    from voxface.reconstruct import decode_at
    from voxface.refine import add_refine_head, refine_logits

    from .conftest import SMALL_CONFIG

    doc = inspect.getdoc(refine_logits)
    assert 'the default here, unlike' in doc and 'pass ``upsample="decoder"`` for their surface' in doc
    torch.manual_seed(0)
    model = create_model(SMALL_CONFIG).eval()
    add_refine_head(model, RefineConfig(hidden=8, layers=1, pe_freqs=1))
    z_id, z_exp = torch.zeros(1, 8), torch.zeros(1, 4)
    assert refine_logits(model, z_id, z_exp, resolution=32)[0].head is True
    assert refine_logits(model, z_id, z_exp, resolution=32, upsample="decoder")[0].head is False
    assert decode_at(model, z_id, z_exp, 32)[2]["head"] is False


def test_a_diverging_refinement_head_is_refused_not_written(tmp_path, monkeypatch, one_torch_thread) -> None:
    """refine-train with a learning rate that diverges (--lr 1e30) trained on NaN losses, printed
    ``"loss": NaN`` (invalid JSON), exited 0 and wrote a checkpoint whose head weights were all NaN.
    train_refiner now raises at the first loss that is not finite (before its step), or when the last
    step left weights that are not finite; refine_checkpoint then writes nothing."""
    from voxface.checkpoint import save_checkpoint
    from voxface.errors import VoxfaceError
    from voxface.models import create_model
    from voxface.refine import RefineTrainConfig, refine_checkpoint, train_refiner

    from .conftest import SMALL_CONFIG, TOY_DATA

    cfg = RefineTrainConfig(steps=20, batch_size=2, points=256, resolution=0, log_every=5, warmup=0, lr=1e30)
    with pytest.raises(VoxfaceError, match=r"^refine: training diverged: the loss is nan at step \d+ \(lr 1e\+30: "
                                           r"lower it, --lr for voxface refine-train\); nothing is written$"):
        train_refiner(create_model(SMALL_CONFIG), TOY_DATA, cfg)
    src = save_checkpoint(tmp_path / "src.pth.tar", create_model(SMALL_CONFIG),
                          extra={"run_config": {"data": TOY_DATA}})
    with pytest.raises(VoxfaceError, match="training diverged"):
        refine_checkpoint(src, tmp_path / "out.pth.tar", TOY_DATA, cfg, device="cpu")
    assert not (tmp_path / "out.pth.tar").exists()
    # an update that overflows at the last step (a finite loss before it): found before anything is returned
    real_step = torch.optim.AdamW.step

    def overflowing(self, *a, **k):
        out = real_step(self, *a, **k)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", overflowing)
    with pytest.raises(VoxfaceError, match=r"the head's weights are not finite after step 1 \(lr 0.002"):
        train_refiner(create_model(SMALL_CONFIG), TOY_DATA, RefineTrainConfig(steps=1, batch_size=2, points=64,
                                                                              resolution=0, log_every=1))


def test_ctrl_c_during_the_last_step_reports_the_finished_run(tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C during the run's last step: the step is finished, the run validated and written as a
    finished run (its end record: interrupted false), yet TrainResult.interrupted was True, so
    ``voxface train`` said 'interrupted at step 6; resume with --resume ...' and exited 130, and the
    resume it asked for had nothing to train. Now the run is reported finished: exit 0, its summary."""
    import os
    import signal

    import voxface.train as vt

    from .conftest import run_cli

    real = vt.compute_losses

    def ctrl_c_in_the_last_step(out, batch, cfg, *a, **k):
        if len(_calls) == 5:  # the 6th of 6 steps
            os.kill(os.getpid(), signal.SIGINT)
        _calls.append(1)
        return real(out, batch, cfg, *a, **k)

    _calls: list[int] = []
    monkeypatch.setattr(vt, "compute_losses", ctrl_c_in_the_last_step)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny(total_steps=6, warmup_steps=1, val_every=4, ckpt_every=4)))
    run = tmp_path / "run"
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", run, "--device", "cpu", "--no-progress")
    assert len(_calls) == 6 and "SIGINT: finishing the current step" in err, err
    assert code == 0 and out.startswith("step 6: best val IoU") and "interrupted" not in err, (code, out, err)
    end = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["step"] == 6 and end["interrupted"] is False
    # stopped before the end, it is still an interruption (exit 130, resume hint)
    _calls.clear()
    monkeypatch.setattr(vt, "compute_losses", lambda *a, **k: (_calls.append(1), len(_calls) == 3
                                                               and os.kill(os.getpid(), signal.SIGINT),
                                                               real(*a, **k))[-1])
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", tmp_path / "b", "--device", "cpu",
                             "--no-progress")
    assert code == 130 and "interrupted at step 3" in err and "--resume" in err, (code, err)


def test_grad_norm_is_logged_without_clipping_and_leaves_the_gradients(tmp_path) -> None:
    """log.jsonl's train records carry ``grad_norm``, 'its last step's' (the module docstring), but with
    ``grad_clip: 0`` (clipping disabled) it was null in every record. It is now the logged step's norm,
    computed without touching the gradients: a run with clipping off and one whose clip never bites
    train the same weights and log the same norms."""
    from voxface.checkpoint import load_checkpoint

    def run(name: str, clip: float) -> tuple[list[float], list[dict]]:
        train(tiny(total_steps=5, warmup_steps=1, log_every=2, val_every=0, ckpt_every=0, grad_clip=clip),
              tmp_path / name, progress=False)
        recs = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        return [r["grad_norm"] for r in recs if r["event"] == "train"], load_checkpoint(tmp_path / name / "last.pth.tar")

    off, ck_off = run("off", 0.0)
    loose, ck_loose = run("loose", 1e9)
    assert len(off) == 3 and all(isinstance(g, float) and g > 0 for g in off), off  # steps 2, 4 and the last, 5
    assert off == pytest.approx(loose, rel=1e-4)
    assert ck_off["loss_history"] == ck_loose["loss_history"]
    assert all(torch.equal(ck_off["state_dict"][k], v) for k, v in ck_loose["state_dict"].items())

"""Review 38: coarse-to-fine extraction (MISE): its cost and memory at 256^3 / 512^3."""

from __future__ import annotations

import pytest
import torch

from voxface.refine import dense, grid_points_unit, mise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _coarse(field, r: int) -> torch.Tensor:
    idx = torch.stack(torch.meshgrid(*(torch.arange(r),) * 3, indexing="ij"), -1).reshape(-1, 3)
    return field(grid_points_unit(idx, r)).view(r, r, r)


def _bumpy_ball(p: torch.Tensor) -> torch.Tensor:
    c = torch.tensor([0.05, -0.1, 0.02])
    bump = 0.04 * torch.sin(9 * p[:, 0]) * torch.sin(9 * p[:, 1]) * torch.sin(9 * p[:, 2])
    return 40.0 * (0.55 - (p - c).norm(dim=-1) + bump)


def _need_by_definition(act: torch.Tensor) -> torch.Tensor:
    """The fine samples ``(2r)^3`` in the cubes ``act (r + 1)^3``: fine ``i`` lies in cube ``(i + 1) // 2``."""
    r = act.shape[0] - 1
    idx = (torch.arange(2 * r) + 1) // 2
    return act[idx][:, idx][:, :, idx]


@pytest.mark.parametrize("r", [1, 2, 5, 16])
def test_the_fine_samples_of_active_cubes_are_those_the_cube_rule_gives_in_row_major_order(r):
    """_fine_samples builds, from the active cubes alone, the samples the (2r)^3 mask held (the
    outermost cubes' half past the grid left out), in that mask's nonzero() order."""
    from voxface.refine import _fine_samples

    g = torch.Generator().manual_seed(r)
    for share in (0.0, 0.05, 0.5, 1.0):
        act = torch.rand((r + 1,) * 3, generator=g) < share
        want = _need_by_definition(act).nonzero()
        flat = _fine_samples(act)
        n = 2 * r
        assert torch.equal(flat, (want[:, 0] * n + want[:, 1]) * n + want[:, 2])
        assert flat.dtype == torch.long and flat.shape == (len(want),)


def test_mise_picks_its_fine_samples_without_index_select_on_a_bool_grid(monkeypatch):
    """The (2r)^3 bool mask of the samples to evaluate was picked from the active cubes by three
    index_select calls, which torch runs slowly on bool grids: about half of a sphere's MISE from
    64^3 to 512^3 on one shared CPU core (10-21 s, 5-10 s without), 40% of it to 256^3. The samples come from
    the active cubes alone now; points, their order (the evaluator's chunks) and values unchanged."""
    calls = []
    index_select = torch.Tensor.index_select

    def watched(self, *a, **k):
        if self.dtype == torch.bool and self.dim() == 3:
            calls.append(tuple(self.shape))
        return index_select(self, *a, **k)

    coarse = _coarse(_bumpy_ball, 16)
    seen = []

    def field(p: torch.Tensor) -> torch.Tensor:
        seen.append(p.clone())
        return _bumpy_ball(p)

    monkeypatch.setattr(torch.Tensor, "index_select", watched)
    fine, stats = mise(coarse, field, levels=2, chunk=1000)
    monkeypatch.undo()
    assert calls == [], calls
    # the points of each level, in the order of the mask the rule defines, chunk by chunk as before
    from voxface.refine import _active_cubes

    assert all(len(p) <= 1000 for p in seen)
    pts = torch.cat(seen)
    assert len(pts) == sum(s["points"] for s in stats)
    first = _need_by_definition(_active_cubes(coarse, 0.0, 1)).nonzero()
    torch.testing.assert_close(pts[: len(first)], grid_points_unit(first, 32), rtol=0, atol=0)
    assert fine.shape == (64, 64, 64) and torch.equal(fine > 0, dense(_bumpy_ball, 64) > 0)


def test_mise_makes_the_points_of_one_chunk_at_a_time(monkeypatch):
    """mise built the indices and coordinates of every point of a level before evaluating them a chunk
    at a time (a sphere from 64^3 to 512^3, 3.5 million points: a peak of 0.97 GB, 0.83 GB without);
    they are made a chunk at a time, as dense makes its own. Same points and values: the result
    equals mise with one chunk for all."""
    import voxface.refine as refine

    sizes = []
    grid_points = refine.grid_points_unit

    def counted(index, resolution):
        sizes.append(len(index))
        return grid_points(index, resolution)

    coarse = _coarse(_bumpy_ball, 16)
    monkeypatch.setattr(refine, "grid_points_unit", counted)
    fine, stats = mise(coarse, _bumpy_ball, levels=2, chunk=500)
    monkeypatch.undo()
    assert sum(s["points"] for s in stats) > 10 * 500 and sizes and max(sizes) <= 500, (max(sizes), stats)
    assert sum(sizes) == sum(s["points"] for s in stats)
    whole, _ = mise(coarse, _bumpy_ball, levels=2, chunk=10**6)
    assert torch.equal(fine, whole)


def test_refine_train_into_a_path_under_a_file_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """`refine-train -o afile/head.pth.tar` (a file where a folder is needed) trained the whole run and
    only then failed ('cannot write file (afile is a file, where a folder is needed)'): the checkpoint
    writer's output check skips such a path. It is refused on one line before the checkpoint is read."""
    import voxface.refine
    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG, TOY_DATA, run_cli

    src = save_checkpoint(tmp_path / "src.pth.tar", create_model(SMALL_CONFIG).eval(),
                          extra={"run_config": {"data": TOY_DATA}})
    (tmp_path / "afile").write_text("a file\n")
    monkeypatch.setattr(voxface.refine, "train_refiner", lambda *a, **k: pytest.fail("training started"))
    afile = tmp_path / "afile"
    for out, problem in ((afile / "head.pth.tar", f"{afile} is a file, where a folder is needed"),
                         (afile / "sub" / "head.pth.tar", f"{afile} is a file"),
                         (tmp_path, "is a folder, where a file is to be written")):
        code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, "--steps", "5",
                                    "--no-progress")
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {out}: {problem}"), err
    assert afile.read_text() == "a file\n"

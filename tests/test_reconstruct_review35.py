"""``voxface reconstruct`` reviewed (session 35): what a user reconstructing one photo or a folder
of thousands hits."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from .conftest import run_cli
from .test_reconstruct_review33 import face_png, tiny_ckpt, tiny_model  # noqa: F401 - the same module fixtures


def test_a_failed_inputs_error_line_escapes_the_control_characters_of_its_file_name(tiny_ckpt, face_png, tmp_path,
                                                                                      monkeypatch, capsys) -> None:
    """A failure the batch words itself (an output that would overwrite an input, a stray
    exception) printed its file name raw after ``error:``: an escape sequence in a photo's name
    cleared or retitled the terminal, a newline split the line. Each error line is escaped as the
    errors voxface raises are (``errors.printable``)."""
    folder = tmp_path / "in"
    folder.mkdir()
    name = "e\x1b[2Jvil"
    shutil.copy(face_png, folder / f"{name}.png")
    shutil.copy(face_png, folder / f"{name}_preview.png")  # named on the command line: an input
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", folder / f"{name}.png", folder / f"{name}_preview.png",
                           "-o", folder, "-c", tiny_ckpt, "--no-detect", "--workers", "1")
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "would overwrite the input" in lines[0], err
    assert "\x1b" not in err and "e\\x1b[2Jvil" in lines[0], err


def test_a_face_with_nothing_to_mesh_is_a_failure_naming_its_photo(tiny_model, face_png, tmp_path) -> None:
    """A face whose grid holds no surface (extract_mesh's 'empty occupancy grid', an error without a
    file) was recorded as that message alone: in a batch of thousands the error line did not say
    which photo gave it. The line starts with the photo's name, as every other failure's does."""
    from voxface.reconstruct import reconstruct_files

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()  # logits 0 everywhere: probability 0.5, no cell above the threshold
    photo = tmp_path / "x.png"
    shutil.copy(face_png, photo)
    s = reconstruct_files(model, [photo], tmp_path / "out", detect=False, progress=False, workers=1)
    assert not s.ok
    assert s.failed[str(photo)].startswith(f"{photo}: empty occupancy grid"), s.failed


def test_decode_refuses_an_output_that_is_no_mesh_format_before_loading_the_model(monkeypatch, capsys,
                                                                                  tmp_path) -> None:
    """``voxface decode -o face.txt`` loaded the checkpoint and decoded a face before the write said
    'unknown mesh format': the name is checked first, as reconstruct checks --format (one line,
    nothing read, nothing written)."""
    import voxface.checkpoint

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(voxface.checkpoint, "load_model", no_load)
    for name in ("face.txt", "face"):
        code, _, err = run_cli(monkeypatch, capsys, "decode", "-o", tmp_path / name)
        assert code == 1, err
        assert err.strip() == (f"error: {tmp_path / name}: unknown mesh format {repr(name[5:]) if '.' in name else repr('(no extension)')}; "
                               "use one of obj, ply, stl, glb"), err
    assert not list(tmp_path.iterdir())


def test_model_reconstruct_of_a_face_with_nothing_to_mesh_names_its_photo(tiny_model, face_png) -> None:
    """``model.reconstruct(path)`` in a user's loop over photos: a face with no surface raised
    'empty occupancy grid ...' naming no photo, where its load and detector errors name it."""
    from voxface.errors import VoxfaceError
    from voxface.reconstruct import reconstruct_image

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()
    with pytest.raises(VoxfaceError) as info:
        reconstruct_image(model, face_png, detect=False)
    assert str(info.value).startswith(f"{face_png}: empty occupancy grid") and info.value.path == str(face_png)


def test_reconstruct_draws_no_progress_bar_into_a_log(tiny_ckpt, face_png, tmp_path, monkeypatch, capsys) -> None:
    """A folder of thousands reconstructed by a job whose stderr is a file got a bar line every
    0.1 s (megabytes of carriage-return updates in the log), where sample, the latent commands and
    export-onnx draw bars only on a terminal. reconstruct does as they do; its error and summary
    lines are unchanged."""
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(face_png, folder / "a.png")
    code, out, err = run_cli(monkeypatch, capsys, "reconstruct", folder, "-o", tmp_path / "out", "-c", tiny_ckpt,
                             "--no-detect", "--no-preview", "--workers", "1")
    assert code == 0, err
    assert "reconstruct:" not in err and "\r" not in err, err
    assert "1 face(s) from 1 image(s)" in out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal: the bar as before
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", folder, "-o", tmp_path / "out2", "-c", tiny_ckpt,
                           "--no-detect", "--no-preview", "--workers", "1")
    assert code == 0 and "reconstruct:" in err, err

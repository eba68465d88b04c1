"""The public Python API as a user's editor, type checker and code see it: the names of
``voxface.__all__``, the config dataclasses, device selection, the error classes."""

from __future__ import annotations

import ast
from pathlib import Path

import voxface

INIT = Path(voxface.__file__)


def _type_checking_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    names |= {a.asname or a.name for a in imp.names}
    return names


def test_type_checkers_see_every_public_name_and_no_catch_all():
    """mypy, pyright and jedi (Jupyter's completion) read the ``if TYPE_CHECKING:`` imports, not the
    lazy ``__getattr__``: each public name and submodule is imported there (``to_pytorch3d`` was
    not: typed ``Any``, no completion), and ``__getattr__`` is hidden from them, else every
    attribute, a misspelt ``voxface.lod_model`` too, is ``Any`` to mypy and passes."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    seen = _type_checking_imports(tree)
    missing = (set(voxface._LAZY) | set(voxface.SUBMODULES)) - seen
    assert not missing, f"not imported under TYPE_CHECKING: {sorted(missing)}"
    top_level_defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "__getattr__" not in top_level_defs
    guarded = [n for n in tree.body if isinstance(n, ast.If) and isinstance(n.test, ast.UnaryOp)
               and isinstance(n.test.op, ast.Not) and getattr(n.test.operand, "id", None) == "TYPE_CHECKING"]
    assert any(isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for g in guarded for f in g.body)
    # and at run time the lazy lookup still works and still refuses unknown names
    assert voxface.to_pytorch3d.__module__ == "voxface.interop"
    try:
        voxface.lod_model  # noqa: B018
    except AttributeError as e:
        assert "lod_model" in str(e)
    else:  # pragma: no cover
        raise AssertionError("voxface.lod_model resolved")


# -- configs -------------------------------------------------------------------------------------
def test_model_config_round_trips_through_dict_and_yaml():
    import yaml

    from voxface.config import ModelConfig, RefineConfig, from_dict, to_dict

    cfg = ModelConfig(refine=RefineConfig(hidden=32))
    cfg.frame.center_mm = (1.5, -2.0, 3.25)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    assert from_dict(ModelConfig, yaml.safe_load(yaml.safe_dump(to_dict(cfg)))) == cfg
    assert cfg.resolution == cfg.decoder.resolution == 64


def test_config_refuses_unknown_keys_and_wrong_lengths_naming_the_key():
    import pytest

    from voxface.config import model_config
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.encoder: unknown key\(s\) \['zid'\]"):
        model_config({"encoder": {"zid": 3}})
    # a centre of 2 or 4 numbers was taken, and made a Grid whose maths failed later (or broadcast)
    for centre in ([0.0, -30.0], [0.0, -30.0, -55.0, 1.0]):
        with pytest.raises(ConfigError, match=r"^model\.frame\.center_mm: expected a list of 3 values"):
            model_config({"frame": {"center_mm": centre}})
    assert model_config({"encoder": {"widths": [8, 16]}}).encoder.widths == (8, 16)  # any length there


def test_config_file_errors_name_the_file(tmp_path):
    """``voxface.create_model("my.yaml")`` with a typo said ``model.encoder: unknown key(s)`` without
    the file; an ``inherit_from`` that is not a file name was a TypeError traceback (CLI too)."""
    import pytest

    from voxface.config import load_yaml, model_config
    from voxface.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder:\n    zid: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        voxface.create_model(bad)
    assert str(e.value).startswith(f"{bad}: model.encoder: unknown key(s) ['zid']") and e.value.path == str(bad)
    neg = tmp_path / "neg.yaml"
    neg.write_text("model:\n  frame:\n    side_mm: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{neg}: model\.frame: side_mm must be positive"):
        model_config(str(neg))
    for i, parent in enumerate(["5", "[base.yaml]", "''", "{a: 1}"]):
        child = tmp_path / f"child{i}.yaml"
        child.write_text(f"inherit_from: {parent}\nmodel: {{}}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=rf"^{child}: inherit_from must name a YAML file"):
            load_yaml(child)


# -- devices -------------------------------------------------------------------------------------
def test_device_errors_are_input_errors_catchable_as_value_and_type_errors(monkeypatch):
    """A bad ``device=`` is a bad argument: ``InputError`` (a ``ValueError``) or ``InputTypeError``
    (a ``TypeError``), as the README promises; it was a bare ``VoxfaceError``, and an ``int`` (torch's
    CUDA index) or a ``torch.device`` was named as 'unknown device 0' / ``device(type='meta')``."""
    import pytest
    import torch

    from voxface.device import resolve_device
    from voxface.errors import InputError, InputTypeError, VoxfaceError

    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None).type == resolve_device("auto").type
    for bad, words in [("garbage", "^unknown device 'garbage'; use auto, cpu, cuda, cuda:N or mps$"),
                       ("", "^unknown device ''"), (-1, "^unknown device -1"),
                       (torch.device("meta"), "^device 'meta': voxface runs on cpu, cuda or mps$")]:
        with pytest.raises(ValueError, match=words) as e:
            resolve_device(bad)
        assert isinstance(e.value, InputError) and isinstance(e.value, VoxfaceError)
    for bad in (1.0, True, ["cpu"]):
        with pytest.raises(TypeError, match="^device must be a string such as 'auto'") as e:
            resolve_device(bad)
        assert isinstance(e.value, InputTypeError)
    # no CUDA (as on this machine, or made so): named, whichever way it is asked for
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for ask, named in [("cuda", "'cuda'"), ("cuda:1", "'cuda:1'"), (0, "'cuda:0'"), (torch.device("cuda", 2), "'cuda:2'")]:
        with pytest.raises(InputError, match=f"^device {named} was asked for but CUDA is not available") as e:
            resolve_device(ask)
        # a CPU-only torch build (make's default) says so, with the fix; a CUDA build on a machine without one does not
        cpu_build = torch.version.cuda is None
        assert (f"this torch, {torch.__version__}, is a CPU-only build: install a CUDA one" in str(e.value)) == cpu_build
        assert str(e.value).endswith("CUDA is not available") != cpu_build
    # one CUDA device: cuda:1 names what there is
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device(0) == torch.device("cuda:0")
    import numpy as np  # a NumPy integer (from np.arange) is an index as an int is; it was a type error

    assert resolve_device(np.int64(0)) == torch.device("cuda:0")
    with pytest.raises(InputTypeError):
        resolve_device(np.bool_(True))
    with pytest.raises(InputError, match=r"^device 'cuda:1' was asked for but this machine has 1 CUDA device\(s\), "
                                         r"cuda:0 to cuda:0$"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"MPS \(Apple GPU\) is not available"):
        resolve_device("mps")


# -- crop framing --------------------------------------------------------------------------------
def test_crop_box_from_landmarks_frames_odd_boxes_and_refuses_3d_landmarks():
    """The crop rule on an odd, off-centre landmark box, one near the image's corner (the box may
    leave the image: ``crop_image`` repeats edge pixels), and (68, 3) 3D landmarks, which were taken
    and framed on the x/y/z extent (a crop sized by the head's depth)."""
    import numpy as np
    import pytest

    from voxface.crop import CROP_SCALE, crop_box_from_landmarks
    from voxface.errors import InputError

    lm = np.array([[3.0, 5.0], [20.0, 12.0], [10.0, 8.0]])  # box x 3..20 (17 wide), y 5..12 (7 high)
    x0, y0, side = crop_box_from_landmarks(lm)
    assert side == pytest.approx(CROP_SCALE * 17)
    assert (x0 + side / 2, y0 + side / 2) == pytest.approx((11.5, 8.5))  # the box's centre
    assert x0 < 0 and y0 < 0  # near the corner, the crop leaves the image; nothing is clipped
    lm3 = np.concatenate([lm, [[0.0], [90.0], [40.0]]], axis=1)  # a depth column far larger than x/y
    with pytest.raises(InputError, match=r"got shape \(3, 3\); for 3D landmarks pass their \(x, y\) image columns"):
        crop_box_from_landmarks(lm3)
    np.testing.assert_allclose(crop_box_from_landmarks(lm3[:, :2]), (x0, y0, side))
    for bad in (np.zeros((0, 2)), np.zeros(2), np.array([[0.0, 0.0], [np.nan, 1.0]])):
        with pytest.raises(InputError, match="^landmarks must be"):
            crop_box_from_landmarks(bad)
    import torch  # a tensor (a detector's output, on any device; a CUDA one was a numpy traceback)

    np.testing.assert_allclose(crop_box_from_landmarks(torch.tensor(lm, dtype=torch.float32, requires_grad=True)),
                               (x0, y0, side), rtol=1e-6)


# -- errors --------------------------------------------------------------------------------------
def test_errors_are_one_line_even_for_a_file_name_with_a_newline():
    """A photo named ``bad\\nname.jpg`` made ``error: .../bad`` and ``name.jpg: not an image`` two
    lines; the name is shown escaped (``.path`` keeps the real one); other names print as they are."""
    import pickle

    from voxface.errors import CheckpointError, ImageError, InputError, VoxfaceError

    e = ImageError("not an image,\n or a format Pillow cannot read", "/photos/bad\nname.jpg")
    assert str(e) == "/photos/bad\\nname.jpg: not an image, or a format Pillow cannot read"
    assert e.path == "/photos/bad\nname.jpg" and "\n" not in str(e)
    assert str(ImageError("bad", "/fotos/café é.png")) == "/fotos/café é.png: bad"
    assert str(ImageError("bad", "/x/caf\udce9.jpg")) == "/x/caf\\udce9.jpg: bad"  # an undecodable byte
    assert str(VoxfaceError("no file")) == "no file"
    # catchable as the README says, and whole across processes (the batch pipeline's workers)
    assert issubclass(InputError, ValueError) and issubclass(CheckpointError, VoxfaceError)
    c = pickle.loads(pickle.dumps(CheckpointError("truncated", "/m/x.pth.tar", reason="truncated")))
    assert (str(c), c.path, c.reason) == ("/m/x.pth.tar: truncated", "/m/x.pth.tar", "truncated")


def test_path_arguments_take_any_os_pathlike(tmp_path):
    """``load_yaml`` and the errors' ``path`` were annotated ``str | Path``: mypy refused the
    ``os.PathLike`` a user's own path type (or ``os.DirEntry``) is, though both take it at run time."""
    import os
    import typing

    from voxface.config import load_yaml
    from voxface.errors import ConfigError, VoxfaceError

    class Where:  # an os.PathLike that is not a pathlib.Path
        def __init__(self, p: Path) -> None:
            self.p = p

        def __fspath__(self) -> str:
            return str(self.p)

    (tmp_path / "c.yaml").write_text("model: {}\n", encoding="utf-8")
    assert load_yaml(Where(tmp_path / "c.yaml")) == {"model": {}}
    assert ConfigError("bad", Where(tmp_path / "c.yaml")).path == str(tmp_path / "c.yaml")
    for hint in (typing.get_type_hints(load_yaml)["path"], typing.get_type_hints(VoxfaceError.__init__)["path"]):
        assert os.PathLike[str] in typing.get_args(hint)


def test_a_key_given_twice_in_a_config_is_refused_not_dropped(tmp_path):
    """PyYAML keeps the last of two equal keys: a second ``encoder:`` section silently dropped the
    first one's values, which fell back to defaults (what refusing unknown keys is there to stop).
    Keys merged in with ``<<`` may still be overridden."""
    import pytest

    from voxface.config import load_yaml, model_config
    from voxface.errors import ConfigError

    twice = tmp_path / "twice.yaml"
    twice.write_text("model:\n  encoder:\n    z_id: 7\n  encoder:\n    z_exp: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{twice}: not valid YAML \(key 'encoder' is given twice \(line 4\)"):
        load_yaml(twice)
    merged = tmp_path / "merged.yaml"
    merged.write_text("sizes: &s\n  z_id: 3\n  z_exp: 4\nmodel:\n  encoder:\n    <<: *s\n    z_id: 5\n", encoding="utf-8")
    assert load_yaml(merged)["model"] == {"encoder": {"z_id": 5, "z_exp": 4}}
    assert model_config(merged).encoder.z_exp == 4


def test_reconstruct_is_typed_by_all_faces() -> None:
    """``Reconstruction | list[Reconstruction]`` made mypy reject the README's ``rec.mesh`` and
    ``rec.save(...)``: overloads on ``all_faces`` give one face by default, a list with True."""
    import typing

    from voxface.models import VoxFace
    from voxface.reconstruct import reconstruct_image

    for fn in (reconstruct_image, VoxFace.reconstruct):
        returns = [o.__annotations__["return"].strip("'\"") for o in typing.get_overloads(fn)]
        kinds = [o.__annotations__["all_faces"] for o in typing.get_overloads(fn)]
        assert returns == ["Reconstruction", "list[Reconstruction]", "Reconstruction | list[Reconstruction]"], fn
        assert kinds == ["Literal[False]", "Literal[True]", "bool"], fn

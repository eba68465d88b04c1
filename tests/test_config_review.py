"""Config loading: messages that say what is wrong with a YAML file and where."""

from __future__ import annotations

import pytest

from voxface.config import load_yaml
from voxface.errors import ConfigError


@pytest.mark.parametrize("text, message", [
    ("model:\n\tencoder: 1\n", "line 2, column 1: found character '\\t' that cannot start any token, while "
                               "scanning for the next token; indent with spaces, not tabs"),
    ("model:\n  encoder:\n    z_id: 16\n   z_exp: 8\n", "line 4, column 4: expected <block end>, but found "
                                                        "'<block mapping start>', while parsing a block mapping"),
    ("model:\n  encoder: {z_id: 16\n", "line 3, column 1: expected ',' or '}', but got '<stream end>', "
                                       "while parsing a flow mapping"),
])
def test_invalid_yaml_says_what_is_wrong_and_on_which_line(tmp_path, text, message):
    """The message was PyYAML's first line alone, often only its context ('not valid YAML (while
    scanning for the next token)'): neither the problem nor the line."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_yaml(cfg)
    assert str(e.value) == f"{cfg}: not valid YAML ({message})"


@pytest.mark.parametrize("line, message", [
    ("amp: off", "train.amp: expected text, got False (YAML reads an unquoted off, no, on or yes as false: put the "
                 "word in quotes, e.g. 'off')"),
    ("total_steps: 1e5", "train.total_steps: expected int, got '1e5' (YAML reads 1e5 as text: write 100000)"),
    ("total_steps: 1.0e+5", "train.total_steps: expected int, got 100000.0 (write 100000)"),
])
def test_yaml_words_and_numbers_read_as_another_type_say_how_to_write_them(tmp_path, line, message):
    """``amp: off`` (a documented value) is the boolean False to YAML, and ``total_steps: 1e5`` the
    text '1e5': each was refused as 'expected str, got False' / 'expected int, got '1e5'', without
    saying why the value the user wrote was not what it looked like."""
    from voxface.train import resolve_config

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model:\n  decoder:\n    resolution: 32\n    widths: [32, 16, 8]\ntrain:\n  {line}\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        resolve_config(cfg)
    assert str(e.value) == f"{cfg}: {message}"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("off", "'off'").replace(line.split(":")[1], " 100000"),
                   encoding="utf-8")
    t = resolve_config(cfg)["train"]
    assert (t.amp, t.total_steps) == (("off", 2000) if "amp" in line else ("auto", 100000))


def test_a_missing_parent_config_names_the_file_that_inherits_from_it(tmp_path):
    """'missing.yaml: config file not found' when the user gave child.yaml: which file names it?"""
    child = tmp_path / "child.yaml"
    child.write_text("inherit_from: missing.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_yaml(child)
    assert str(e.value) == f"{tmp_path / 'missing.yaml'}: config file not found (the inherit_from of {child})"
    with pytest.raises(ConfigError) as e:
        load_yaml(tmp_path / "missing.yaml")
    assert str(e.value) == f"{tmp_path / 'missing.yaml'}: config file not found ({tmp_path} holds child.yaml)"


def test_thread_counts_that_are_not_whole_numbers_are_refused_naming_the_option():
    """check_threads took 1.5 as 1 thread and True as 1, and None was int()'s TypeError (a
    traceback through refine's API, which names no option)."""
    from voxface.device import check_threads, usable_cores

    assert check_threads(0) == 0 and check_threads(usable_cores()) == usable_cores()
    for bad in (1.5, True, None, "1", -1, usable_cores() + 1):
        with pytest.raises(ConfigError, match=rf"^refine: threads {bad!r} must be from 0 \(torch's default\)"):
            check_threads(bad, "refine: threads")


def test_occupancy_of_a_broken_mesh_is_refused_not_a_silently_wrong_grid():
    """A NaN vertex dropped its triangles (56 cells of a sphere's 32^3 grid filled inside out) and a
    negative face index counted from the end of the vertices; both gave a grid without a word.
    Float or misshapen arrays were an IndexError from deep inside."""
    import numpy as np
    import trimesh

    from voxface.errors import InputError
    from voxface.frame import Grid
    from voxface.occupancy import occupancy_grid

    grid = Grid(16, 400.0, (0.0, -30.0, -55.0))
    sphere = trimesh.creation.icosphere(2, radius=100.0)
    v, f = sphere.vertices, sphere.faces
    good = occupancy_grid(v.astype(np.float32), f.astype(np.uint32), grid)
    inside = np.linalg.norm(grid.cell_centers() - [0.0, 0.0, 0.0], axis=-1) < 95.0  # well inside the facets
    assert good[inside].all() and good.sum() < (np.linalg.norm(grid.cell_centers(), axis=-1) < 105.0).sum()
    assert np.array_equal(good, occupancy_grid(v, f, grid))
    nan = v.copy()
    nan[0] = np.nan
    cases = [((nan, f), "1 vertices hold NaN or infinite coordinates"),
             ((v, -f), f"face indices must lie from 0 to {len(v) - 1} \\(the vertices\\), got -"),
             ((v, f + len(v)), f"face indices must lie from 0 to {len(v) - 1}"),
             ((v, f + 0.5), "faces must be a \\(F, 3\\) array of vertex indices, got float64"),
             ((v[:, :2], f), "vertices must be a \\(V, 3\\) array of numbers, got float64 \\(162, 2\\)"),
             ((v, f[:, :2]), "faces must be a \\(F, 3\\) array")]
    for (verts, faces), message in cases:
        with pytest.raises(InputError, match=f"^occupancy_grid: {message}"):
            occupancy_grid(verts, faces, grid)
    with pytest.raises(InputError, match="unknown occupancy method 'bvh'"):
        occupancy_grid(v, f, grid, method="bvh")
    assert occupancy_grid(np.zeros((0, 3)), np.zeros((0, 3), np.int64), grid).sum() == 0  # nothing inside


@pytest.mark.parametrize("frame, message", [
    ("side_mm: 0", "side_mm must be positive and finite (mm), got 0.0"),
    ("side_mm: .inf", "side_mm must be positive and finite (mm), got inf"),
    ("center_mm: [.inf, 0, 0]", "center_mm must be 3 finite numbers (x, y, z mm), got [inf, 0.0, 0.0]"),
])
def test_a_bad_frame_names_its_key_and_value_not_a_python_repr(tmp_path, frame, message):
    """The message was 'side_mm must be positive and every value finite, got FrameConfig(side_mm=...,
    center_mm=(inf, 0.0, 0.0))' for either key: a Python repr, and the centre blamed on side_mm."""
    from voxface.config import model_config

    cfg = tmp_path / "frame.yaml"
    cfg.write_text(f"model:\n  frame:\n    {frame}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        model_config(cfg)
    assert str(e.value) == f"{cfg}: model.frame: {message}"


def test_an_empty_section_says_so_not_nonetype(tmp_path):
    """``encoder:`` with every key commented out was 'expected a mapping, got NoneType'."""
    from voxface.config import model_config

    cfg = tmp_path / "empty.yaml"
    cfg.write_text("model:\n  encoder:\n    # z_id: 16\n  decoder:\n    resolution: 32\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        model_config(cfg)
    assert str(e.value) == (f"{cfg}: model.encoder: the section is empty (null): give it keys, or leave it out for "
                            "the defaults (or the inherited values)")


def test_numpy_values_in_a_config_dict_are_taken_as_their_python_values(tmp_path):
    """A sweep over np.arange sizes, or a grid centre computed as an array, was refused ('expected
    int, got np.int64(8)', 'expected a list, got array([...])'). They are taken as plain Python
    values, so the checkpoint's config stays loadable with weights_only."""
    import numpy as np

    from voxface.config import model_config, to_dict

    cfg = model_config({"encoder": {"image_size": np.int64(64), "widths": np.array([8, 16]), "blocks": [1, 1],
                                    "z_id": np.arange(8, 9)[0], "z_exp": 8, "dropout": np.float32(0.5)},
                        "decoder": {"resolution": 32, "widths": [32, 16, 8]},
                        "frame": {"center_mm": np.array([0.0, -30.0, -55.0])}})
    assert cfg.encoder.widths == (8, 16) and cfg.encoder.z_id == 8 and cfg.encoder.dropout == 0.5
    assert cfg.frame.center_mm == (0.0, -30.0, -55.0)
    plain = to_dict(cfg)
    leaves = [plain["encoder"]["image_size"], *plain["encoder"]["widths"], plain["encoder"]["z_id"],
              plain["encoder"]["dropout"], *plain["frame"]["center_mm"]]
    assert {type(v) for v in leaves} <= {int, float}
    with pytest.raises(ConfigError, match="expected an integer, got True"):
        model_config({"encoder": {"z_id": np.bool_(True)}})


@pytest.mark.parametrize("text, fixed", [("1.5e3", "1.5e+3"), (".5e-3", "0.5e-3"), ("5.e3", "5.0e+3"),
                                         ("1E5", "1.0e+5")])
def test_every_exponent_yaml_reads_as_text_gets_the_hint(text, fixed):
    """Only 1e-3-like text got the hint; PyYAML also reads 1.5e3 (no exponent sign), .5e-3 (no digit
    before the dot) and 5.e3 as text, which were a bare 'expected a number'. The written form is
    one PyYAML reads as that number."""
    import yaml

    from voxface.config import from_dict
    from voxface.train import TrainConfig

    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"lr": text}, "train")
    assert str(e.value) == f"train.lr: expected a number, got '{text}' (YAML reads {text} as text: write {fixed})"
    assert yaml.safe_load(f"lr: {fixed}")["lr"] == float(text)


def test_a_mistyped_config_name_lists_the_folders_configs_not_a_missing_configs_folder(tmp_path, monkeypatch):
    """In a clone, configs/voxface64.yaml (a typo) said configs/ is not installed with the package:
    run from a clone. A folder that exists now lists its YAML files; the install hint stays for a
    configs/ folder that is not there."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_yaml("configs/voxface64.yaml")
    assert "not installed with the package" in str(e.value)
    (tmp_path / "configs").mkdir()
    for name in ("voxface-64.yaml", "tiny.yaml", "notes.txt"):
        (tmp_path / "configs" / name).write_text("model: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_yaml("configs/voxface64.yaml")
    assert str(e.value) == "configs/voxface64.yaml: config file not found (configs holds tiny.yaml, voxface-64.yaml)"
    (tmp_path / "run.yaml").write_text("model: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_yaml("rnu.yaml")
    assert str(e.value) == "rnu.yaml: config file not found (the current folder holds run.yaml)"


def test_one_value_where_a_list_is_expected_says_how_to_write_the_list():
    """``freeze: decoder`` was 'expected a list, got 'decoder'', without the one-line fix."""
    from voxface.config import from_dict
    from voxface.train import TrainConfig

    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"freeze": "decoder"}, "train")
    assert str(e.value) == "train.freeze: expected a list, got 'decoder' (one value is a list too: [decoder])"
    assert from_dict(TrainConfig, {"freeze": ["decoder"]}, "train").freeze == ("decoder",)
    with pytest.raises(ConfigError, match=r"^train.freeze: expected a list, got True$"):
        from_dict(TrainConfig, {"freeze": True}, "train")


def test_a_fixed_length_list_gets_no_one_value_hint():
    from voxface.config import model_config

    with pytest.raises(ConfigError, match=r"^model\.frame\.center_mm: expected a list of 3 values, got 5$"):
        model_config({"frame": {"center_mm": 5}})


def test_the_integer_hint_is_left_out_for_values_no_count_can_have():
    from voxface.config import from_dict
    from voxface.train import TrainConfig

    with pytest.raises(ConfigError, match=r"^train.total_steps: expected int, got 1e\+300$"):
        from_dict(TrainConfig, {"total_steps": 1e300}, "train")


def test_a_config_dict_follows_inherit_from_relative_to_the_current_folder(tmp_path, monkeypatch):
    """A notebook's ``{"inherit_from": "configs/x.yaml", "train": {...}}`` used to drop the parent
    silently (model, data and train all defaults): the dict is now merged over the file, as a
    child YAML file is, in resolve_config and model_config."""
    from voxface.config import model_config
    from voxface.train import resolve_config

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(
        "model:\n  encoder:\n    z_id: 24\ntrain:\n  total_steps: 7\n  lr: 0.002\ndata:\n  kind: toy\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config({"inherit_from": "configs/base.yaml", "train": {"total_steps": 11}})
    assert cfg["model"].encoder.z_id == 24  # inherited
    assert cfg["train"].total_steps == 11 and cfg["train"].lr == 0.002  # the dict's key over the parent's
    assert cfg["data"] == {"kind": "toy"}
    assert model_config({"inherit_from": "configs/base.yaml"}).encoder.z_id == 24
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        resolve_config({"inherit_from": "configs/missing.yaml"})
    with pytest.raises(ConfigError, match=r"inherit_from must name a YAML file .*got 3"):
        resolve_config({"inherit_from": 3})


def test_a_files_inherit_from_expands_the_home_folder_as_a_dicts_does(tmp_path, monkeypatch):
    """``inherit_from: ~/base.yaml`` in a YAML file was read as a folder named ``~`` beside the file
    ('config file not found'), while the same key in a config dict, ``train.init_from`` and the data
    paths expand ``~``."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "base.yaml").write_text("model:\n  encoder:\n    z_id: 24\n", encoding="utf-8")
    (tmp_path / "child.yaml").write_text("inherit_from: ~/base.yaml\ntrain:\n  total_steps: 3\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    merged = load_yaml(tmp_path / "child.yaml")
    assert merged["model"]["encoder"]["z_id"] == 24 and merged["train"]["total_steps"] == 3


@pytest.mark.parametrize("text, message", [
    ("train: {1: 2, lrr: 3}\n", "train: unknown key(s) [1, 'lrr']; known: ['amp',"),
    ("train: {null: 2, lrr: 3}\n", "train: unknown key(s) [None, 'lrr']; known: ['amp',"),
    ("1: 2\nfoo: 3\n", "unknown config section(s) [1, 'foo']; known: ['model', 'data', 'train']"),
])
def test_unknown_keys_of_several_yaml_types_are_named_not_a_sorting_traceback(tmp_path, text, message):
    """Two unknown keys of which one YAML reads as a number, a boolean or null (``1:``, ``null:``) ended in
    ``TypeError: '<' not supported between instances of 'str' and 'int'`` while the message was sorted."""
    from voxface.train import resolve_config

    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        resolve_config(path)
    assert str(e.value).startswith(f"{path}: {message}"), e.value


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_config_file_is_refused_not_trained_as_the_defaults(tmp_path, monkeypatch, capsys, text):
    """`voxface train -c empty.yaml` (a 0-byte file, or comments only) trained the defaults, 2,000 steps,
    without a word; init-checkpoint refused the same file. Both, and load_yaml, name it as empty."""
    from .conftest import run_cli

    cfg = tmp_path / "empty.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=r"is empty \(no settings\); a config has model:, data: and train: sections"):
        load_yaml(cfg)
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "--out", tmp_path / "run", "--dry-run")
    assert code == 1 and err.strip() == f"error: {cfg}: is empty (no settings); a config has model:, data: and " \
                                        "train: sections (e.g. configs/voxface-64.yaml), or inherit_from: a file " \
                                        "that has them", err
    assert not (tmp_path / "run").exists()
    (tmp_path / "base.yaml").write_text("train: {total_steps: 3}\n")
    cfg.write_text("inherit_from: base.yaml\n")  # a file of inherit_from alone is a config
    assert load_yaml(cfg) == {"train": {"total_steps": 3}}


def test_load_yaml_of_something_that_is_not_a_path_is_a_type_error():
    """``load_yaml(None)`` was pathlib's bare 'expected str, bytes or os.PathLike object'."""
    from voxface.errors import InputTypeError

    for bad in (None, 3, {"model": {}}):
        with pytest.raises(InputTypeError, match=r"^a config is the path of a YAML file, got "):
            load_yaml(bad)


@pytest.mark.parametrize("make, message", [
    (lambda c: c.ModelConfig(encoder=c.EncoderConfig(z_id=16.0)), "model.encoder.z_id: expected int, got 16.0 (write 16)"),
    (lambda c: c.ModelConfig(encoder=c.EncoderConfig(image_size="64")), "model.encoder.image_size: expected int, got '64'"),
    (lambda c: c.ModelConfig(decoder=c.DecoderConfig(widths=(64, "32", 16, 8))),
     "model.decoder.widths: expected int, got '32'"),
])
def test_a_model_config_built_by_hand_gets_the_checks_a_files_values_get(make, message):
    """create_model(ModelConfig(encoder=EncoderConfig(z_id=16.0))) ended in torch's 'empty(): argument
    size must be tuple of ints' traceback, a text size in "'<' not supported between str and int",
    and a dict for a section in "'dict' object has no attribute 'image_size'"."""
    import voxface.config as c
    from voxface.models import create_model

    with pytest.raises(ConfigError) as e:
        create_model(make(c))
    assert str(e.value) == message
    cfg = c.model_config(c.ModelConfig(encoder={"z_id": 3, "widths": [8, 16], "blocks": [1, 1]}))  # a dict section
    assert isinstance(cfg.encoder, c.EncoderConfig) and (cfg.encoder.z_id, cfg.encoder.widths) == (3, (8, 16))
    tiny = c.model_config("configs/tiny.yaml")
    assert c.model_config(tiny) == tiny  # a valid config comes back equal


@pytest.mark.parametrize("parent, message", [
    ("encoder:\n    z_idd: 16\n", "model.encoder: unknown key(s) ['z_idd']"),
    ("encoder:\n    z_id: -5\n", "model.encoder.z_id must be at least 1, got -5"),
    ("encoder:\n    widths: [8, 16.5]\n", "model.encoder.widths: expected int, got 16.5"),
    ("frame:\n    side_mm: -1\n", "model.frame: side_mm must be positive and finite (mm), got -1.0"),
])
def test_a_bad_key_of_an_inherited_file_names_that_file(tmp_path, parent, message, monkeypatch, capsys):
    """A bad key in the parent of a config was blamed on the child ('child.yaml: model.encoder:
    unknown key(s) ['z_idd']'), a file that does not hold it; a bad key of the child itself, or a
    default, still names the child. So do the trainer's config (voxface train) and init-checkpoint."""
    from voxface.config import key_source, model_config
    from voxface.models import create_model
    from voxface.train import resolve_config

    from .conftest import run_cli

    (tmp_path / "base").mkdir()
    base = tmp_path / "base" / "parent.yaml"
    base.write_text("model:\n  " + parent, encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text("inherit_from: base/parent.yaml\nmodel:\n  decoder:\n    resolution: 32\n", encoding="utf-8")
    for build in (model_config, create_model, resolve_config):
        with pytest.raises(ConfigError) as e:
            build(child)
        assert str(e.value).startswith(f"{child.parent / 'base/parent.yaml'}: {message}")
        assert str(e.value).endswith(f" (inherited by {child})")
    code, _, err = run_cli(monkeypatch, capsys, "init-checkpoint", "--config", child, "-o", tmp_path / "x.pth.tar")
    assert code == 1 and err.startswith(f"error: {child.parent / 'base/parent.yaml'}: {message}"), err
    assert err.rstrip().endswith(f" (inherited by {child})") and not (tmp_path / "x.pth.tar").exists()
    child.write_text("inherit_from: base/parent.yaml\nmodel:\n  decoder:\n    resolution: -32\n", encoding="utf-8")
    base.write_text("model:\n  encoder:\n    z_id: 16\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        model_config(child)
    assert str(e.value) == f"{child}: model.decoder.resolution must be at least 1, got -32"
    assert key_source(child, "model.encoder.z_id") == child.parent / "base/parent.yaml"
    assert key_source(child, "model.encoder.widths[1]") == child  # a default: the file asked for


def test_inherit_from_inside_the_model_section_is_refused_not_half_read(tmp_path, monkeypatch):
    """``model: {inherit_from: other.yaml, encoder: {z_id: 99}}`` was read as a whole config dict:
    other.yaml relative to the current folder (not the file: 'other.yaml: config file not found' from
    elsewhere) and its model: taken, z_id: 99 silently dropped. It is one error naming the file."""
    from voxface.config import model_config
    from voxface.models import create_model

    (tmp_path / "other.yaml").write_text("model:\n  encoder: {z_id: 16, z_exp: 8}\n", encoding="utf-8")
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  inherit_from: other.yaml\n  encoder: {z_id: 99}\n", encoding="utf-8")
    message = ("model.inherit_from: inherit_from goes at the top of a config, beside model: (it inherits a whole "
               "config file), not inside the model: section")
    for cwd in (tmp_path, tmp_path.parent):
        monkeypatch.chdir(cwd)
        for build in (model_config, create_model):
            with pytest.raises(ConfigError) as e:
                build(nested)
            assert str(e.value) == f"{nested}: {message}"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:  # the section as a dict (a whole config dict's model:)
        model_config({"inherit_from": "other.yaml", "encoder": {"z_id": 99}})
    assert str(e.value) == message
    # at the top, as documented: the parent's model with the child's keys over it
    assert model_config({"inherit_from": "other.yaml", "model": {"encoder": {"z_id": 99}}}).encoder.z_id == 99
    assert model_config({"inherit_from": "other.yaml"}).encoder.z_id == 16
    top = tmp_path / "top.yaml"
    top.write_text("inherit_from: other.yaml\nmodel:\n  encoder: {z_id: 99}\n", encoding="utf-8")
    assert (model_config(top).encoder.z_id, model_config(top).encoder.z_exp) == (99, 8)


def test_a_checkpoint_given_as_a_config_is_named_as_one(tmp_path):
    """create_model('vox-cpk.pth.tar') (or train --config of a checkpoint) said only 'is not UTF-8
    text (byte 64: 0x80); a config is a YAML file in UTF-8': it now says what the file is."""
    import torch

    from voxface.models import create_model

    ckpt = tmp_path / "model.pth.tar"
    torch.save({"state_dict": {"w": torch.arange(300.0)}}, ckpt)
    for read in (load_yaml, create_model):
        with pytest.raises(ConfigError, match=r"model\.pth\.tar: is not UTF-8 text .* \(this is a torch checkpoint, "
                                              r"not a config: voxface.load_model reads those\)$"):
            read(ckpt)
    other = tmp_path / "photo.yaml"
    other.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match=r"a config is a YAML file in UTF-8$"):  # no checkpoint hint
        load_yaml(other)


def test_a_config_dict_without_a_model_section_is_refused_as_its_file_is():
    """model_config({'inherit_from': 'configs/voxface-64-finetune.yaml'}) (a stage config, whose
    model comes from its init_from checkpoint) gave the default architecture (z_id 128) silently, and
    so did {'model': None}; the file itself was refused ('has no model: section')."""
    from voxface.config import model_config
    from voxface.models import create_model

    with pytest.raises(ConfigError, match="has no model: section"):
        model_config("configs/voxface-64-finetune.yaml")
    for bad, words in (({"inherit_from": "configs/voxface-64-finetune.yaml"},
                        r"the config has no model: section \(nor has configs/voxface-64-finetune.yaml, its "
                        r"inherit_from\): .*builds from that checkpoint$"),
                       ({"model": None, "train": {}}, r"^the config has no model: section: ")):
        for build in (model_config, create_model):
            with pytest.raises(ConfigError, match=words):
                build(bad)
    assert model_config({"inherit_from": "configs/tiny.yaml"}).encoder.z_id == 16
    assert model_config({"model": {}}) == model_config(None)  # an empty section: the defaults, as asked

"""Review 37: configuration, losses and mirror augmentation."""

from __future__ import annotations

import pytest

from voxface.errors import ConfigError


def test_a_config_section_built_by_hand_is_checked_and_copied(tmp_path):
    """A dict whose section is a dataclass ({'encoder': EncoderConfig(...)}) kept that instance as
    it was: the model's config was the caller's object, so changing it afterwards (a sweep over
    z_id) changed the config the checkpoint stores, which then no longer rebuilt the model
    (ArchitectureMismatchError on load_model); and its values skipped the checks a file's get
    (EncoderConfig(z_id=16.0): torch's 'empty(): argument size' TypeError; LossConfig(
    near_surface_cells=1.5) in train.loss: a TypeError at the first step)."""
    import voxface
    from voxface.checkpoint import save_checkpoint
    from voxface.config import DecoderConfig, EncoderConfig, model_config
    from voxface.losses import LossConfig
    from voxface.models import create_model
    from voxface.train import resolve_config

    enc = EncoderConfig(image_size=32, widths=[8, 16], blocks=(1, 1), z_id=16, z_exp=8)
    model = create_model({"encoder": enc, "decoder": DecoderConfig(resolution=16, widths=(16, 8))})
    assert model.config.encoder is not enc and model.config.encoder.widths == (8, 16)  # a copy, lists as tuples
    enc.z_id = 99  # the caller's next sweep point
    assert model.config.encoder.z_id == 16
    save_checkpoint(tmp_path / "m.pth.tar", model)
    assert voxface.load_model(tmp_path / "m.pth.tar").config == model.config
    with pytest.raises(ConfigError, match=r"^model\.encoder\.z_id: expected int, got 16\.0 \(write 16\)$"):
        model_config({"encoder": EncoderConfig(z_id=16.0)})
    small = {"decoder": {"resolution": 32, "widths": [32, 16, 8]}}
    with pytest.raises(ConfigError, match=r"^train\.loss\.near_surface_cells: expected int, got 1\.5$"):
        resolve_config({"model": small, "train": {"loss": LossConfig(near_surface_cells=1.5)}})
    assert resolve_config({"model": small, "train": {"loss": LossConfig(pose=0.5)}})["train"].loss.pose == 0.5


def test_mirror_batch_refuses_a_mask_that_splits_a_block_whose_swap_targets_pair_its_samples():
    """occ_swap[i] is identity i with the expression of i ^ 2. A mask mirroring sample 0 of a block
    but not sample 2 (any (B,) mask is taken since 11688b2) mirrored occ_swap[0] whole, the mirror
    of (identity 0, expression 2), while swap_logits[0] decodes z_exp[2] read from the unmirrored
    crop 2: a target of no sample's labels, silently (and the person pair 0/1 became two people).
    Such a mask is one InputError; whole blocks are mirrored as before, and a batch without occ_swap
    takes any mask."""
    import torch

    from voxface.augment import MirrorMaps, block_flips, mirror_batch
    from voxface.errors import InputError

    g = torch.Generator().manual_seed(0)
    b = {"image": torch.rand(8, 3, 6, 6, generator=g), "occ": (torch.rand(8, 5, 5, 5, generator=g) > 0.5).byte(),
         "occ_swap": (torch.rand(8, 5, 5, 5, generator=g) > 0.5).byte(), "exp_coeffs": torch.rand(8, 3, generator=g)}
    maps = MirrorMaps(identity=torch.eye(2).numpy(), identity_residual=torch.zeros(2).numpy(),
                      expression=torch.tensor([1, 0, 2]).numpy(), landmarks=torch.arange(68).numpy())
    for flip in ([True, False] * 4, torch.tensor([0, 0, 0, 0, 1, 1, 1, 0])):
        with pytest.raises(InputError, match=r"^mirror_batch: flip mirrors part of a block of 4 \(samples "
                                             r"[04]-[37]: \[(True|False), .*: mirror whole blocks \(block_flips "
                                             r"draws such masks\)$"):
            mirror_batch(b, flip, maps)
    flip = torch.tensor([False] * 4 + [True] * 4)
    m = mirror_batch(b, flip, maps)
    assert torch.equal(m["occ_swap"][4:], b["occ_swap"][4:].flip(-1))
    assert torch.equal(m["occ_swap"][:4], b["occ_swap"][:4])
    flip = block_flips(8, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(mirror_batch(b, flip, maps)["occ_swap"][flip], b["occ_swap"][flip].flip(-1))
    no_swap = {k: v for k, v in b.items() if k != "occ_swap"}
    assert torch.equal(mirror_batch(no_swap, [True, False] * 4, maps)["image"][0], b["image"][0].flip(-1))


def test_numpy_values_in_a_dict_data_section_are_written_as_plain_data(tmp_path, tiny_config):
    """The data: section is kept as the dict given (its kind's dataclass reads it later), so a sweep's
    np.int64(8) for data.num_train reached config.yaml as it was: train() stopped at the start of the
    run with yaml's RepresenterError traceback ('cannot represent an object', np.int64(8)), though
    from_dict takes NumPy values (4dc712a). to_dict, what config.yaml and the checkpoint's run
    config are written through, gives their Python values."""
    import numpy as np
    import yaml

    from voxface.checkpoint import load_checkpoint
    from voxface.config import to_dict
    from voxface.train import train

    plain = to_dict({"num_train": np.int64(8), "fov": np.array([10.0, 45.0]), "nested": {"x": np.float32(0.5)}})
    assert plain == {"num_train": 8, "fov": [10.0, 45.0], "nested": {"x": 0.5}}
    assert type(plain["num_train"]) is int and type(plain["nested"]["x"]) is float
    cfg = {"model": tiny_config, "data": {"kind": "toy", "num_train": np.int64(8), "num_val": 0,
                                          "max_yaw": np.float32(30.0)},
           "train": {"batch_size": 4, "total_steps": 1, "warmup_steps": 0, "prior_samples": 4, "threads": 1}}
    run = train(cfg, tmp_path / "run", progress=False)
    data = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))["data"]
    assert (data["num_train"], data["max_yaw"]) == (8, 30.0)
    assert load_checkpoint(run.last_checkpoint)["extra"]["run_config"]["data"]["num_train"] == 8


def test_paths_given_as_pathlib_paths_are_taken_and_written_as_text(tmp_path, tiny_config):
    """From Python a path is a pathlib.Path as often as text. data: {kind: cache, path: Path(...)}
    (a section kept as the dict given) was taken, then train() stopped when the run began with yaml's
    RepresenterError traceback ('cannot represent an object', PosixPath(...)) writing config.yaml;
    the other path keys refused it ('train.init_from: expected str, got PosixPath(...)',
    data.root, data.ict_root). A path is its text wherever a config takes text."""
    from pathlib import Path

    import yaml

    from voxface.config import from_dict, to_dict
    from voxface.data.folder import FolderDataConfig
    from voxface.train import _plain, _yaml, resolve_config

    assert to_dict({"path": tmp_path / "cache", "n": [Path("a")]}) == {"path": str(tmp_path / "cache"), "n": ["a"]}
    assert from_dict(FolderDataConfig, {"root": Path("~/faces")}, "data").root == "~/faces"
    cfg = resolve_config({"model": tiny_config, "data": {"kind": "cache", "path": tmp_path / "cache"},
                          "train": {"init_from": Path("runs") / "a" / "last.pth.tar"}})
    assert cfg["train"].init_from == str(Path("runs/a/last.pth.tar"))
    written = yaml.safe_load(_yaml(_plain(cfg)))  # what train() writes as config.yaml
    assert written["data"]["path"] == str(tmp_path / "cache")
    assert written["train"]["init_from"] == str(Path("runs/a/last.pth.tar"))


def test_a_bad_key_of_the_file_a_config_dict_inherits_names_that_file(tmp_path, monkeypatch):
    """model_config / create_model of a dict with inherit_from (a sweep's {'inherit_from':
    'configs/x.yaml', 'train': {...}}) said 'model.encoder: unknown key(s) ['z_idd']' or
    'model.encoder.z_id must be at least 1, got -5' without naming the file that holds the key,
    where the same chain read from a YAML file names it (91a5352). The file of the chain that sets the
    key is named, '(inherited by the config dict)'; a key the dict sets itself is the dict's."""
    from voxface.config import model_config
    from voxface.models import create_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "parent.yaml").write_text("model:\n  encoder:\n    z_id: -5\n", encoding="utf-8")
    (tmp_path / "child.yaml").write_text("inherit_from: base/parent.yaml\ntrain:\n  lr: 0.1\n", encoding="utf-8")
    (tmp_path / "typo.yaml").write_text("model:\n  encoder:\n    z_idd: 5\n", encoding="utf-8")
    parent = str(tmp_path.joinpath("base", "parent.yaml").relative_to(tmp_path))
    with pytest.raises(ConfigError) as e:
        create_model({"inherit_from": "child.yaml", "train": {"total_steps": 3}})
    assert str(e.value) == f"{parent}: model.encoder.z_id must be at least 1, got -5 (inherited by the config dict)"
    assert e.value.path == parent
    with pytest.raises(ConfigError, match=r"^typo\.yaml: model\.encoder: unknown key\(s\) \['z_idd'\]; known: .* "
                                          r"\(inherited by the config dict\)$"):
        model_config({"inherit_from": "typo.yaml"})
    with pytest.raises(ConfigError) as e:  # the dict's own value: no file holds it
        model_config({"inherit_from": "typo.yaml", "model": {"encoder": {"z_idd": 3}}})
    assert e.value.path is None and str(e.value).startswith("model.encoder: unknown key(s) ['z_idd']")
    with pytest.raises(ConfigError, match=r"^model\.encoder\.z_id must be at least 1, got -2$"):
        model_config({"inherit_from": "child.yaml", "model": {"encoder": {"z_id": -2}}})
    assert model_config({"inherit_from": "child.yaml", "model": {"encoder": {"z_id": 7}}}).encoder.z_id == 7


@pytest.mark.parametrize("section", ["model", "data", "train"])
def test_a_top_level_section_left_empty_is_refused_not_read_as_the_defaults(tmp_path, section):
    """A child config whose train: (data:, model:) has every key commented out read as YAML's null,
    which replaced the parent's whole section: voxface train ran the defaults (2,000 steps of batch 32
    on synthetic data, a 64^3 model for the parent's 32^3) without a word, where an empty encoder:
    is refused (3ae2e4c). It is refused the same way, naming the file and the section."""
    from voxface.train import resolve_config

    base = tmp_path / "base.yaml"
    base.write_text("model:\n  decoder:\n    resolution: 32\n    widths: [32, 16, 8]\ndata:\n  kind: toy\n"
                    "train:\n  total_steps: 7\n  batch_size: 8\n", encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text(f"inherit_from: base.yaml\n{section}:\n  # total_steps: 9\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        resolve_config(child)
    assert str(e.value) == (f"{child}: {section}: the section is empty (null): give it keys, or leave it out for "
                            "the defaults (or the inherited values)")
    child.write_text("inherit_from: base.yaml\n", encoding="utf-8")
    cfg = resolve_config(child)
    assert (cfg["train"].total_steps, cfg["model"].decoder.resolution, cfg["data"]["kind"]) == (7, 32, "toy")


def test_an_inherit_from_whose_path_is_left_out_is_refused_not_read_as_no_parent(tmp_path):
    """'inherit_from:' with its path left out (or commented out after the colon) is YAML's null, which
    was read as no inherit_from at all: the file's few keys trained over the defaults (a default 64^3
    model, synthetic data), without the parent it names, silently. It is refused like any other
    inherit_from that names no file."""
    from voxface.config import load_yaml

    cfg = tmp_path / "stage.yaml"
    cfg.write_text("inherit_from:  # voxface-64.yaml\ntrain:\n  total_steps: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_yaml(cfg)
    assert str(e.value) == f"{cfg}: inherit_from must name a YAML file (a path relative to this one), got None"
    cfg.write_text("train:\n  total_steps: 3\n", encoding="utf-8")  # no inherit_from: no parent, as before
    assert load_yaml(cfg) == {"train": {"total_steps": 3}}

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

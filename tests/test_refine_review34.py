"""Session 34 review of the refinement head, its training, MISE, the losses and mirror augmentation."""

from __future__ import annotations

import pytest

from voxface.errors import ConfigError
from voxface.refine import RefineTrainConfig, check_refine_train_config


def test_a_validation_grid_too_large_gives_its_size_in_gigabytes_not_zero():
    """refine-train --resolution 512 on a 64^3 model: 'each of its grids would be 0 GB of float32'
    (0.5 GB rounded to no decimals). The size is now given as it is: 0.5, 4 and 32 GB."""
    for res, gb in ((512, "0.5"), (1024, "4"), (2048, "32")):
        with pytest.raises(ConfigError) as ei:
            check_refine_train_config(RefineTrainConfig(resolution=res), 64)
        assert f"each of its grids would be {gb} GB of float32" in str(ei.value)


def test_a_negative_warmup_is_refused_before_training():
    """RefineTrainConfig(warmup=-3) was taken: the schedule then started part-way down the cosine
    (0.875 of lr at the first step of 10) and never reached the peak learning rate."""
    with pytest.raises(ConfigError, match=r"^refine: warmup -3 must be at least 0$"):
        check_refine_train_config(RefineTrainConfig(warmup=-3), 64)
    check_refine_train_config(RefineTrainConfig(warmup=0), 64)

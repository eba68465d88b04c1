"""Training and evaluation data.

Every dataset yields dicts of numpy arrays (collated by torch's default collate):

==================  ===========================  =================================================
key                 shape, dtype                 meaning
==================  ===========================  =================================================
``image``           ``(3, S, S)`` float32        RGB crop in [0, 1] (framing: :mod:`voxface.crop`)
``mask``            ``(S, S)`` uint8             1 where the head covers the crop
``occ``             ``(R, R, R)`` uint8          occupancy of this sample, ``(D, H, W) = (z, y, x)``
``occ_swap``        ``(R, R, R)`` uint8          occupancy of (this identity, expression of the
                                                 sample ``index ^ 2``), see "blocks" below
``id_coeffs``       ``(N_id,)`` float32          identity coefficients (zeros when unknown)
``exp_coeffs``      ``(N_exp,)`` float32         expression coefficients (zeros when unknown)
``rotation``        ``(3, 3)`` float32           canonical -> OpenCV camera rotation
``scale``           ``()`` float32               :class:`voxface.models.Pose` scale
``translation``     ``(2,)`` float32             :class:`voxface.models.Pose` translation
``identity``        ``()`` int64                 person id (equal ids = same person)
``index``           ``()`` int64                 sample index
==================  ===========================  =================================================

Blocks: datasets are laid out in blocks of 4 consecutive indices ``4k .. 4k+3``. Samples ``4k`` and
``4k+1`` are one person with two expressions, ``4k+2`` and ``4k+3`` another person. So within a
batch made of whole blocks, ``i ^ 1`` is the same person with another expression and ``occ_swap[i]``
is the occupancy of identity ``i`` with the expression of ``i ^ 2``.
:class:`BlockSampler` shuffles whole blocks.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

BLOCK = 4

#: The lowest and highest occupancy resolution the synthetic data is written at (``voxface data
#: export``, ``voxface data cache``, :func:`voxface.data.cache.write_cache`), both included.
RESOLUTIONS = (32, 256)


def check_resolution(resolution: int, name: str = "resolution", path: Any = None) -> int:
    """``resolution`` when it lies in :data:`RESOLUTIONS`; else a one-line
    :class:`~voxface.errors.DataError` naming ``name`` (the option or argument) and ``path``."""
    from ..errors import DataError

    low, high = RESOLUTIONS
    if not low <= resolution <= high:
        raise DataError(f"{name} must be from {low} to {high}, not {resolution}", path)
    return resolution


#: Data seeds are 32-bit: a sample's random streams are keyed by ``[seed, stream, index]`` with the
#: seed taken modulo 2**32, so a larger or negative seed would silently repeat another seed's data.
MAX_SEED = 2**32 - 1


def check_seed(seed: Any, name: str = "data seed") -> int:
    """``seed`` as an int when it is a whole number from 0 to :data:`MAX_SEED`; else a one-line
    :class:`~voxface.errors.ConfigError` naming ``name`` (a validation split's seed is the
    data seed plus ``val_seed_offset``, so both count)."""
    from ..errors import ConfigError

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"{name} {seed!r} must be a whole number from 0 to {MAX_SEED} (2**32 - 1): samples are "
                          "keyed by the seed modulo 2**32, so another would repeat a smaller seed's data")
    return int(seed)


def split_seed(seed: Any, val_seed_offset: Any, split: str) -> int:
    """The data seed of ``split`` from a ``data:`` section's ``seed`` and ``val_seed_offset``: the
    seed itself for ``"train"``, their sum for validation, each checked (:func:`check_seed`), named
    as the config names them (not a sum nobody typed). An offset of 0 is a
    :class:`~voxface.errors.ConfigError`: the validation faces would be the first training faces."""
    from ..errors import ConfigError

    base = check_seed(seed, "data.seed")
    if split == "train":
        return base
    if val_seed_offset == 0:
        raise ConfigError("data.val_seed_offset 0 makes the validation split the training split's first "
                          "faces; leave it out (1000003) or give another offset")
    return check_seed(base + val_seed_offset, f"data.seed {base} + data.val_seed_offset {val_seed_offset} "
                                              "(the validation seed) =")


class BlockSampler:
    """Shuffles whole blocks of :data:`BLOCK` indices; deterministic in ``(seed, epoch)``.

    With ``num_replicas > 1`` (DDP), rank ``r`` takes blocks ``r, r + n, r + 2n, ...`` of the
    shuffled order (the remainder is dropped so every rank gets as many blocks).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, num_replicas: int = 1):
        if n % BLOCK:
            raise ValueError(f"dataset length {n} is not a multiple of the block size {BLOCK}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.num_replicas = rank, num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _blocks(self) -> np.ndarray:
        nb = self.n // BLOCK
        order = np.arange(nb)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(nb)
        per = nb // self.num_replicas
        return order[self.rank : per * self.num_replicas : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        for b in self._blocks():
            yield from range(int(b) * BLOCK, int(b) * BLOCK + BLOCK)

    def __len__(self) -> int:
        return (self.n // BLOCK // self.num_replicas) * BLOCK


def build_dataset(data_cfg: dict[str, Any] | None, split: str, model_cfg: Any, *, progress: bool = True) -> Any:
    """A dataset for ``split`` (``"train"`` or ``"val"``) from the ``data:`` section of a config.

    ``data_cfg["kind"]`` picks the source: ``"toy"`` (analytic ellipsoid heads, no files needed),
    ``"synthetic"`` (ICT-FaceKit renders made on the fly), ``"cache"`` (a dataset written once to
    disk by ``voxface data cache``), ``"folder"`` (real crops with ground-truth meshes); ``None``
    (an empty ``data:``) is the defaults. ``model_cfg``: the model's config, whose crop size and
    grid the items follow, in any form :func:`voxface.config.model_config` takes (a
    :class:`~voxface.config.ModelConfig`, ``load_yaml``'s ``model`` dict, ``None``: the defaults).
    ``progress``: a bar while a folder's meshes are voxelised (``kind: folder`` builds its grids
    up front; the other kinds build nothing here). Raises :class:`~voxface.errors.ConfigError` for a section or model config it cannot use.
    """
    from ..config import model_config
    from ..errors import ConfigError

    if data_cfg is None:
        data_cfg = {}
    if not isinstance(data_cfg, dict):  # None / a list was AttributeError: no attribute 'get'
        raise ConfigError(f"the data: section must be a mapping of settings, got {type(data_cfg).__name__}")
    # load_yaml's model dict (as the docs' build_dataset(cfg["data"], "val", cfg["model"])): only the
    # toy data took one, the others failed in AttributeError: 'dict' object has no attribute 'encoder'
    model_cfg = model_config(model_cfg)
    kind = data_cfg.get("kind", "synthetic")
    if kind == "toy":
        from .toy import ToyDataset

        return ToyDataset.from_config(data_cfg, split, model_cfg)
    if kind == "synthetic":
        from .synthetic import SyntheticDataset

        return SyntheticDataset.from_config(data_cfg, split, model_cfg)
    if kind == "cache":
        from .cache import CachedDataset

        return CachedDataset.from_config(data_cfg, split, model_cfg)
    if kind == "folder":
        from .folder import FolderDataset

        return FolderDataset.from_config(data_cfg, split, model_cfg, progress=progress)
    raise ConfigError(f"data.kind {kind!r} is unknown; use toy, synthetic, cache or folder")

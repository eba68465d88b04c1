"""Model zoo: an explicit registry of encoders and decoders, and the one door ``create_model``."""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from torch import nn

from ..config import ModelConfig, error_in_config, keyed_error, model_config
from ..errors import ConfigError, InputTypeError
from .decoder import ConvVoxelDecoder, DeformVoxelDecoder
from .encoder import POSE_DIM, ResNetEncoder
from .voxface import Latents, Pose, VoxFace, decode_pose

ENCODERS: dict[str, Callable[..., nn.Module]] = {"resnet": ResNetEncoder}
DECODERS: dict[str, Callable[..., nn.Module]] = {"conv3d": ConvVoxelDecoder, "deform": DeformVoxelDecoder}


def create_model(config: "ModelConfig | dict[str, Any] | str | os.PathLike[str] | None" = None) -> VoxFace:
    """Build a randomly initialised :class:`VoxFace` from a config: a :class:`ModelConfig`, the path
    of a YAML config (e.g. ``configs/voxface-64.yaml``), a dict (``load_yaml``'s, or its ``model``
    section), or ``None`` for the defaults (:func:`voxface.config.model_config`).

    Raises:
        ConfigError: an unknown encoder or decoder, or values the parts cannot be built from
            (e.g. ``decoder.widths`` of the wrong length for the resolution); a ``ValueError``.
            Sizes torch cannot build tensors of (``z_id: 1e21``, sizes past 64 bits) or allocate on the
            device are a ConfigError naming the config's largest size, the likely typo.
    """
    cfg = model_config(config)
    # errors name the file of config's inherit_from chain that sets their key (error_in_config)
    if cfg.encoder.name not in ENCODERS:
        raise error_in_config(keyed_error(ConfigError(f"model.encoder.name: unknown encoder {cfg.encoder.name!r}; known: "
                                                 f"{sorted(ENCODERS)}"), "model.encoder.name"), config)
    if cfg.decoder.name not in DECODERS:
        raise error_in_config(keyed_error(ConfigError(f"model.decoder.name: unknown decoder {cfg.decoder.name!r}; known: "
                                                 f"{sorted(DECODERS)}"), "model.decoder.name"), config)
    try:
        enc = ENCODERS[cfg.encoder.name](cfg.encoder)
        dec = DECODERS[cfg.decoder.name](cfg.decoder, cfg.encoder.z_id + cfg.encoder.z_exp)
        return VoxFace(cfg, enc, dec)
    except ConfigError as e:
        if e.path is not None:
            raise
        raise error_in_config(e, config) from None
    except ValueError as e:  # the parts check their own values; their messages start with the key
        # keyed, so that the file of an inherit_from chain that sets the key is named (a parent's value
        # named the child): here, or by a caller that read the config (error_in_file)
        key = re.match(r"(encoder|decoder)\.\w+(\[\d+\])?", str(e))
        error = keyed_error(ConfigError(f"model: {e}"), f"model.{key.group(0)}" if key else "")
        raise error_in_config(error, config) from None
    except (TypeError, RuntimeError, OverflowError) as e:
        # an absurd size (z_id: 1e21, template_resolution: 1e8) fails in torch's own size arithmetic,
        # on the meta device too ('Overflow when unpacking long long', 'Storage size calculation
        # overflowed'), or, on a real device, in its allocator: a config error, named by its largest size
        reason = _size_failure(e)
        if reason is None:
            raise
        key, value = _largest_size(cfg)
        error = keyed_error(ConfigError(f"model.{key} {value} is too large: the model cannot be built ({reason}); "
                                        "check the model: sizes"), f"model.{key}")
        raise error_in_config(error, config) from None


def _size_failure(error: BaseException) -> str | None:
    """Why torch could not build a model's tensors, in a few words, when ``error`` is a size torch
    cannot hold (an overflow of its 64-bit sizes) or memory it cannot allocate; ``None`` otherwise."""
    import torch

    text = str(error).lower()
    if "overflow" in text:
        return "its tensors' sizes overflow torch's 64-bit sizes"
    if isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in text or "out of memory" in text:
        return "its weights do not fit in this device's memory"
    return None


def _largest_size(cfg: ModelConfig) -> tuple[str, int]:
    """The integer key of ``cfg``'s encoder, decoder and refinement head with the largest value
    (``("encoder.widths[3]", 10**20)``): the size a model torch cannot build is blamed on."""
    sizes: list[tuple[str, int]] = []
    for part in ("encoder", "decoder", "refine"):
        section = getattr(cfg, part)
        if section is None:
            continue
        for name, value in vars(section).items():
            if isinstance(value, int) and not isinstance(value, bool):
                sizes.append((f"{part}.{name}", value))
            elif isinstance(value, tuple):
                sizes += [(f"{part}.{name}[{i}]", v) for i, v in enumerate(value)
                          if isinstance(v, int) and not isinstance(v, bool)]
    return max(sizes, key=lambda kv: kv[1])


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` (trainable or not, buffers excluded); anything
    without ``parameters()`` (a checkpoint path: count a loaded model's) is an
    :class:`~voxface.errors.InputTypeError`."""
    if not callable(getattr(module, "parameters", None)):  # was AttributeError: 'str' object has no ...
        raise InputTypeError(f"count_parameters takes a torch module (a loaded model), got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters())


def flops_per_sample(model: VoxFace) -> dict[str, int]:
    """FLOPs of one forward pass (batch 1), by part (``encoder``, ``decoder`` at the decoder's own
    resolution, ``total``), counted with torch's FlopCounterMode. Anything but a :class:`VoxFace` (a
    checkpoint path: count a loaded model's) is an :class:`~voxface.errors.InputTypeError`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(model, VoxFace):  # was AttributeError: 'str' object has no attribute 'image_size'
        raise InputTypeError(f"flops_per_sample takes a voxface model (a loaded one), got {type(model).__name__}")

    s = model.image_size
    dev = model.device
    out: dict[str, int] = {}
    with torch.no_grad():
        img = torch.zeros(1, 3, s, s, device=dev)
        with FlopCounterMode(display=False) as fc:
            lat = model.encode(img)
        out["encoder"] = int(fc.get_total_flops())
        with FlopCounterMode(display=False) as fc:
            model.decode(lat.z_id, lat.z_exp)
        out["decoder"] = int(fc.get_total_flops())
    out["total"] = out["encoder"] + out["decoder"]
    return out


__all__ = [
    "ENCODERS", "DECODERS", "POSE_DIM", "create_model", "count_parameters", "flops_per_sample",
    "VoxFace", "Latents", "Pose", "decode_pose", "ConvVoxelDecoder", "DeformVoxelDecoder", "ResNetEncoder",
]

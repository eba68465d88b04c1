"""voxface: single-image 3D face reconstruction through occupancy voxel grids.

    >>> import voxface
    >>> model = voxface.load_model()                 # the bundled default weights
    >>> rec = model.reconstruct("photo.jpg")         # detect, crop, encode, decode, mesh
    >>> rec.save("out/photo.ply")

Importing voxface is cheap: torch, open3d and friends are imported on first use of the names
below (PEP 562 lazy attributes), so ``voxface --help`` starts fast.
"""

from __future__ import annotations

import importlib
import os

# open3d, imported in a notebook, announces a web visualizer voxface does not use (it renders by
# CPU ray casting) on every first render; a user's own setting wins
os.environ.setdefault("OPEN3D_DISABLE_WEB_VISUALIZER", "true")
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointVersionError,
    ConfigError,
    DataError,
    ImageError,
    InputError,
    InputTypeError,
    NoFaceError,
    UnsafeCheckpointError,
    VoxfaceError,
)

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # models
    "create_model": "voxface.models",
    "VoxFace": "voxface.models",
    "Latents": "voxface.models",
    "Pose": "voxface.models",
    "count_parameters": "voxface.models",
    # config and frame
    "ModelConfig": "voxface.config",
    "load_yaml": "voxface.config",
    "Grid": "voxface.frame",
    # checkpoints
    "load_model": "voxface.checkpoint",
    "save_checkpoint": "voxface.checkpoint",
    "load_checkpoint": "voxface.checkpoint",
    "inspect_checkpoint": "voxface.checkpoint",
    "DEFAULT_WEIGHTS": "voxface.checkpoint",
    # meshes and reconstruction
    "extract_mesh": "voxface.mesh",
    "MeshResult": "voxface.mesh",
    "Reconstruction": "voxface.reconstruct",
    "reconstruct_image": "voxface.reconstruct",
    "load_image": "voxface.image",
    "detect_faces": "voxface.detect",
    "reconstruct_files": "voxface.reconstruct",
    "BatchSummary": "voxface.reconstruct",
    "to_pytorch3d": "voxface.interop",
    "from_pytorch3d": "voxface.interop",
    "release_checkpoint": "voxface.checkpoint",
    # latent research (also as the module voxface.latent)
    "interpolate": "voxface.latent",
    "transfer_expression": "voxface.latent",
    "sample": "voxface.latent",
    "principal_directions": "voxface.latent",
    "walk": "voxface.latent",
    "mean_latents": "voxface.latent",
    # pictures
    "render_mesh": "voxface.viz",
    "render_overlay": "voxface.viz",
    "slice_montage": "voxface.viz",
    "image_grid": "voxface.viz",
    # training, data, evaluation (the functions: voxface.train.train, voxface.evaluate.evaluate;
    # their names are those of their modules, so they are not re-exported here)
    "TrainResult": "voxface.train",
    "EvalReport": "voxface.evaluate",
    "FaceSampler": "voxface.data.synthetic",
    "SyntheticDataset": "voxface.data.synthetic",
    "FolderDataset": "voxface.data.folder",
    "build_dataset": "voxface.data",
    # deployment and speed
    "export_onnx": "voxface.onnx",
    "run_bench": "voxface.bench",
}

__all__ = sorted(
    [
        "__version__",
        "VoxfaceError",
        "CheckpointError",
        "UnsafeCheckpointError",
        "ArchitectureMismatchError",
        "CheckpointVersionError",
        "ConfigError",
        "DataError",
        "ImageError",
        "InputError",
        "InputTypeError",
        "NoFaceError",
        *_LAZY,
    ]
)


#: Submodules reachable as attributes (``voxface.latent``, ``voxface.viz``...) without importing
#: them first, as after ``import voxface.latent``; imported on first use.
SUBMODULES = (
    "augment", "bench", "checkpoint", "cli", "config", "crop", "data", "detect", "device", "errors",
    "evaluate", "frame", "html", "image", "interop", "latent", "losses", "mesh", "metrics", "models",
    "occupancy", "onnx", "reconstruct", "refine", "rotation", "train", "viz",
)


if not TYPE_CHECKING:  # type checkers read the imports below: a module __getattr__ would make every
    # attribute, a misspelt one too, Any to them

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name]), name)
            globals()[name] = value
            return value
        if name in SUBMODULES:
            return importlib.import_module(f"{__name__}.{name}")  # the import binds it here too
        raise AttributeError(f"module 'voxface' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *SUBMODULES})


if TYPE_CHECKING:  # pragma: no cover - what type checkers and editors see: every lazy name and submodule
    from . import (augment, bench, checkpoint, cli, config, crop, data, detect, device, errors, evaluate, frame,
                   html, image, interop, latent, losses, mesh, metrics, models, occupancy, onnx, reconstruct,
                   refine, rotation, train, viz)
    from .checkpoint import DEFAULT_WEIGHTS, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
    from .config import ModelConfig, load_yaml
    from .detect import detect_faces
    from .frame import Grid
    from .image import load_image
    from .mesh import MeshResult, extract_mesh
    from .models import Latents, Pose, VoxFace, count_parameters, create_model
    from .bench import run_bench
    from .checkpoint import release_checkpoint
    from .data import build_dataset
    from .data.folder import FolderDataset
    from .data.synthetic import FaceSampler, SyntheticDataset
    from .evaluate import EvalReport
    from .interop import from_pytorch3d, to_pytorch3d
    from .latent import interpolate, mean_latents, principal_directions, sample, transfer_expression, walk
    from .onnx import export_onnx
    from .reconstruct import BatchSummary, Reconstruction, reconstruct_files, reconstruct_image
    from .train import TrainResult
    from .viz import image_grid, render_mesh, render_overlay, slice_montage

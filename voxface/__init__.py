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

# ``X as X``: an explicit re-export, as every name below (mypy --strict, i.e. --no-implicit-reexport,
# reads the dynamic __all__ as no list at all and refused ``voxface.load_model`` and the rest)
from ._version import __version__ as __version__
from .errors import (
    ArchitectureMismatchError as ArchitectureMismatchError,
    CheckpointError as CheckpointError,
    CheckpointVersionError as CheckpointVersionError,
    ConfigError as ConfigError,
    DataError as DataError,
    ImageError as ImageError,
    InputError as InputError,
    InputTypeError as InputTypeError,
    NoFaceError as NoFaceError,
    UnsafeCheckpointError as UnsafeCheckpointError,
    VoxfaceError as VoxfaceError,
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


if TYPE_CHECKING:  # pragma: no cover - what type checkers and editors see: every lazy name and submodule,
    # each re-exported explicitly (``X as X``; see the errors' import above)
    from . import (augment, bench, checkpoint, cli, config, crop, data, detect, device, errors, evaluate, frame,
                   html, image, interop, latent, losses, mesh, metrics, models, occupancy, onnx, reconstruct,
                   refine, rotation, train, viz)
    from .bench import run_bench as run_bench
    from .checkpoint import DEFAULT_WEIGHTS as DEFAULT_WEIGHTS
    from .checkpoint import inspect_checkpoint as inspect_checkpoint
    from .checkpoint import load_checkpoint as load_checkpoint
    from .checkpoint import load_model as load_model
    from .checkpoint import release_checkpoint as release_checkpoint
    from .checkpoint import save_checkpoint as save_checkpoint
    from .config import ModelConfig as ModelConfig
    from .config import load_yaml as load_yaml
    from .data import build_dataset as build_dataset
    from .data.folder import FolderDataset as FolderDataset
    from .data.synthetic import FaceSampler as FaceSampler
    from .data.synthetic import SyntheticDataset as SyntheticDataset
    from .detect import detect_faces as detect_faces
    from .evaluate import EvalReport as EvalReport
    from .frame import Grid as Grid
    from .image import load_image as load_image
    from .interop import from_pytorch3d as from_pytorch3d
    from .interop import to_pytorch3d as to_pytorch3d
    from .latent import interpolate as interpolate
    from .latent import mean_latents as mean_latents
    from .latent import principal_directions as principal_directions
    from .latent import sample as sample
    from .latent import transfer_expression as transfer_expression
    from .latent import walk as walk
    from .mesh import MeshResult as MeshResult
    from .mesh import extract_mesh as extract_mesh
    from .models import Latents as Latents
    from .models import Pose as Pose
    from .models import VoxFace as VoxFace
    from .models import count_parameters as count_parameters
    from .models import create_model as create_model
    from .onnx import export_onnx as export_onnx
    from .reconstruct import BatchSummary as BatchSummary
    from .reconstruct import Reconstruction as Reconstruction
    from .reconstruct import reconstruct_files as reconstruct_files
    from .reconstruct import reconstruct_image as reconstruct_image
    from .train import TrainResult as TrainResult
    from .viz import image_grid as image_grid
    from .viz import render_mesh as render_mesh
    from .viz import render_overlay as render_overlay
    from .viz import slice_montage as slice_montage

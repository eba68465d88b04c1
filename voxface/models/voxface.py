"""The VoxFace model: image encoder + voxel decoder, with typed latents and pose."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import nn

from ..config import ModelConfig, to_dict
from ..errors import InputError, InputTypeError
from ..frame import Grid
from ..rotation import rot6d_to_matrix
from .decoder import compiling, exporting

#: Crops per encoder pass in :meth:`VoxFace.encode` on a CPU (inference).
CPU_ENCODE_CHUNK = 8

#: How far outside [0, 1] :meth:`VoxFace.encode` takes crop values: bicubic resampling overshoots
#: (the negative lobes of PyTorch's a = -0.75 kernel: up to 0.1875 of the range along one axis, at a
#: one-pixel line; on photos far less: 0.074 on the bundled photo resized to 128 px with
#: ``F.interpolate(mode="bicubic")``). 0-255 values and normalised crops (ImageNet's, or [-1, 1])
#: lie far beyond it.
IMAGE_OVERSHOOT = 0.2

if TYPE_CHECKING:  # pragma: no cover
    from ..reconstruct import Reconstruction


def _batch(t: Any) -> int:
    """The leading size of a tensor or array (``len`` of anything else)."""
    return int(t.shape[0]) if hasattr(t, "shape") else len(t)


def _where(t: Any) -> str:
    """``float32, cpu`` for a tensor: its dtype and device (an array's dtype alone)."""
    dtype = str(getattr(t, "dtype", type(t).__name__)).removeprefix("torch.")
    device = getattr(t, "device", None)
    return dtype if device is None else f"{dtype}, {device}"


@dataclass(eq=False)
class Pose:
    """Head pose predicted for a crop (batch-first).

    Attributes:
        rotation: ``(B, 3, 3)`` canonical frame to OpenCV camera axes (:mod:`voxface.frame`).
        scale: ``(B,)`` the head's RMS radius projected into the crop, in crop half-widths.
        translation: ``(B, 2)`` the canonical origin projected into the crop, in ``[-1, 1]``
            crop coordinates (x right, y down; ``(0, 0)`` is the crop centre).

    A canonical point ``X`` (mm) lands at crop coordinates
    ``scale * (rotation @ X)[:2] / HEAD_RMS_RADIUS_MM + translation`` (weak perspective).
    """

    rotation: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor

    def _map(self, fn: Any) -> "Pose":
        return Pose(*(fn(getattr(self, f.name)) for f in fields(Pose)))

    def __repr__(self) -> str:
        """One line: the batch, dtype and device (the dataclass repr printed every tensor; the values
        are on the fields)."""
        return f"Pose(batch={_batch(self.rotation)}, {_where(self.rotation)})"


@dataclass(eq=False)
class Latents:
    """Identity and expression codes (and pose) of a batch of faces.

    Attributes:
        z_id: ``(B, D_id)`` identity code.
        z_exp: ``(B, D_exp)`` expression code.
        pose: :class:`Pose` or ``None`` for codes that did not come from an image.

    Codes given as numpy arrays or nested lists become float32 CPU tensors (as :meth:`from_numpy`
    makes them); anything else that is not a tensor is an :class:`~voxface.errors.InputTypeError`.

    Compare codes with ``torch.equal`` / ``torch.allclose`` on the fields: ``==`` on two
    :class:`Latents` is identity, as for tensors in containers.
    """

    z_id: torch.Tensor
    z_exp: torch.Tensor
    pose: Pose | None = None

    def __post_init__(self) -> None:
        for name in ("z_id", "z_exp"):  # arrays and nested lists of numbers: float32 CPU tensors, as from_numpy
            z = getattr(self, name)
            if not isinstance(z, torch.Tensor):
                try:
                    setattr(self, name, torch.as_tensor(z, dtype=torch.float32))
                except (TypeError, ValueError, RuntimeError):  # None, text, ragged lists
                    raise InputTypeError(f"Latents.{name} must be a tensor or an array of numbers (B, D), "
                                         f"got {type(z).__name__}") from None
        if self.pose is not None and not isinstance(self.pose, Pose):
            raise InputTypeError(f"Latents.pose must be a Pose or None, got {type(self.pose).__name__}")
        shapes = (tuple(self.z_id.shape), tuple(self.z_exp.shape))
        if self.z_id.ndim != 2 or self.z_exp.ndim != 2 or shapes[0][0] != shapes[1][0]:
            raise InputError(f"Latents need z_id (B, D_id) and z_exp (B, D_exp) with the same B, got {shapes[0]} "
                             f"and {shapes[1]}")
        rot = None if self.pose is None else self.pose.rotation  # its shape: len() fixed a traced batch (export)
        if rot is not None and (rot.shape[0] if hasattr(rot, "shape") else len(rot)) != shapes[0][0]:
            raise InputError(f"Latents: a pose for {len(rot)} faces with codes for {shapes[0][0]}")

    def _map(self, fn: Any) -> "Latents":
        return Latents(fn(self.z_id), fn(self.z_exp), None if self.pose is None else self.pose._map(fn))

    def __repr__(self) -> str:
        """One line: shapes, dtype, device and whether a pose is there, as ``Reconstruction``'s (the
        dataclass repr printed every code and pose tensor: about 160 lines for two faces in a
        notebook). The values are on the fields: ``latents.z_id``."""
        return (f"Latents(z_id={tuple(self.z_id.shape)}, z_exp={tuple(self.z_exp.shape)}, {_where(self.z_id)}, "
                f"pose={'none' if self.pose is None else 'yes'})")

    def __len__(self) -> int:
        return int(self.z_id.shape[0])

    def nonfinite(self) -> list[int]:
        """The faces (indices into the batch) whose codes or pose hold NaN or infinite values: what an
        encoder with broken weights (a diverged training run) gives. Empty for a healthy batch."""
        if len(self) == 0:  # no face to reshape by (an empty batch is healthy)
            return []
        rows = [self.z_id, self.z_exp]
        if self.pose is not None:
            rows += [self.pose.rotation, self.pose.scale, self.pose.translation]
        finite = torch.stack([torch.isfinite(t.detach()).reshape(len(self), -1).all(1).cpu() for t in rows]).all(0)
        return (~finite).nonzero()[:, 0].tolist()

    def __getitem__(self, i: "int | slice | Any") -> "Latents":
        """Face ``i`` as a batch of one (any integer, numpy's too; negative counts from the end), or
        the faces a slice, an index array or a boolean mask selects (a batch: never a dropped batch
        dimension). An integer out of range is an IndexError."""
        dtype = getattr(i, "dtype", None)
        if isinstance(i, bool) or (getattr(i, "ndim", None) == 0 and dtype is not None and (
                dtype == torch.bool or str(dtype) == "bool")):
            raise InputTypeError("index Latents with an integer, a slice or an index array (or a boolean mask), "
                                 "not a single bool")
        n = len(self)
        if isinstance(i, slice):
            sl: Any = torch.tensor(range(n)[i], dtype=torch.long) if (i.step or 1) < 0 else i  # no negative step on tensors
        elif hasattr(i, "__index__") and (not hasattr(i, "ndim") or i.ndim == 0):
            k = operator.index(i)
            if not -n <= k < n:
                raise IndexError(f"face {k} of a batch of {n}")
            k %= n
            sl = slice(k, k + 1)
        elif isinstance(i, (list, tuple)) or getattr(i, "ndim", None) == 1:
            empty = isinstance(i, (list, tuple)) and not i  # [] selects no face (torch reads it as float)
            sl = torch.zeros(0, dtype=torch.long) if empty else torch.as_tensor(i)
            if sl.is_floating_point() or sl.is_complex():
                raise InputTypeError(f"index Latents with integers or a boolean mask, got {sl.dtype}")
        else:
            raise InputTypeError("index Latents with an integer, a slice, an index array or a boolean mask, "
                                 f"not {type(i).__name__}")
        return self._map(lambda t: t[sl])

    def to(self, device: torch.device | str) -> "Latents":
        """The codes (and pose) on ``device``."""
        return self._map(lambda t: t.to(device))

    def cpu(self) -> "Latents":
        return self.to("cpu")

    def detach(self) -> "Latents":
        """The codes cut from the autograd graph (sharing their storage)."""
        return self._map(lambda t: t.detach())

    def clone(self) -> "Latents":
        """Copies of the codes: ordinary tensors that can be edited in place or made parameters."""
        return self._map(lambda t: t.clone())

    def numpy(self) -> dict[str, Any]:
        """Plain numpy arrays, keyed as in the ``.npz`` files ``reconstruct`` writes (bfloat16 codes,
        which numpy has no type for, as float32)."""
        def arr(t: torch.Tensor) -> Any:
            t = t.detach().cpu()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()

        out = {"z_id": arr(self.z_id), "z_exp": arr(self.z_exp)}
        if self.pose is not None:
            out["pose_rotation"] = arr(self.pose.rotation)
            out["pose_scale"] = arr(self.pose.scale)
            out["pose_translation"] = arr(self.pose.translation)
        return out

    @classmethod
    def from_numpy(cls, d: dict[str, Any]) -> "Latents":
        """The inverse of :meth:`numpy`: float32 CPU codes from ``z_id (B, D_id)``, ``z_exp (B, D_exp)``
        (or one face's ``(D,)`` vectors) and, when ``pose_rotation`` is there, ``pose_scale`` and
        ``pose_translation``. Checks shapes only (:func:`voxface.latent.as_latents` checks a file's
        arrays against a model); a missing array is an :class:`~voxface.errors.InputError`."""
        need = ("z_id", "z_exp") + (("pose_rotation", "pose_scale", "pose_translation") if "pose_rotation" in d else ())
        missing = [k for k in need if k not in d]
        if missing:
            raise InputError(f"Latents.from_numpy: no {', '.join(missing)} among the arrays {sorted(d)}")
        t = lambda k: torch.as_tensor(d[k], dtype=torch.float32)  # noqa: E731
        z_id, z_exp = t("z_id"), t("z_exp")
        if z_id.ndim == 1:
            z_id, z_exp = z_id[None], z_exp[None]
        pose = None
        if "pose_rotation" in d:
            rot, sc, tr = t("pose_rotation"), t("pose_scale"), t("pose_translation")
            if rot.ndim == 2:
                rot, sc, tr = rot[None], sc.reshape(1), tr[None]
            pose = Pose(rot, sc, tr)
        return cls(z_id, z_exp, pose)


# Pose and Latents are pytrees (as torch's own containers): torch.export.export(model, (crops,)) takes the
# (logits, Latents) that forward returns ('Found Latents in output, which is not a known type'), and
# torch.utils._pytree (tree_map, tree_leaves) sees the tensors they hold
_register = getattr(torch.export, "register_dataclass", None)  # torch >= 2.2
if _register is not None:
    for _cls in (Pose, Latents):
        _register(_cls, serialized_type_name=f"{__name__}.{_cls.__name__}")


def decode_pose(raw: "torch.Tensor | Any") -> Pose:
    """Raw encoder pose vector ``(B, 9)`` = (6D rotation, log scale, tx, ty) to a :class:`Pose`.

    ``raw``: a tensor, or an array (the ``pose`` output of ``encoder.onnx`` in onnxruntime: a
    numpy array, taken as float32 on the CPU). Another shape is an :class:`~voxface.errors.InputError`.
    """
    if not isinstance(raw, torch.Tensor):
        try:
            raw = torch.as_tensor(raw, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise InputTypeError(f"decode_pose needs a raw pose (B, 9) tensor or array, "
                                 f"got {type(raw).__name__}") from None
    if raw.ndim != 2 or raw.shape[1] != 9:
        raise InputError(f"decode_pose needs a raw pose (B, 9) (6D rotation, log scale, tx, ty), "
                         f"got {tuple(raw.shape)}")
    return Pose(rot6d_to_matrix(raw[:, :6]), raw[:, 6].exp(), raw[:, 7:9])


class VoxFace(nn.Module):
    """Single-image face reconstruction: ``encode`` a crop, ``decode`` latents to occupancy.

    Images are ``(B, 3, S, S)`` float RGB in ``[0, 1]`` with ``S = config.encoder.image_size``.
    Logits are ``(B, 1, R, R, R)`` float32 (float64 in a model cast with ``.double()``; float32 under
    autocast and in a half-precision model too) on the canonical grid (:attr:`grid`,
    :mod:`voxface.frame`); ``sigmoid(logits)`` is the occupancy probability.

    Every normalisation is a GroupNorm (no BatchNorm, no running statistics): a face's codes and
    logits do not depend on the batch it is in, a batch of one trains, and ``train()`` differs from
    ``eval()`` only by the encoder's dropout (``encoder.dropout``, 0 in the shipped configs) and by
    skipping the input value checks in a training step.
    """

    def __init__(self, config: ModelConfig, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        #: Optional refinement head (:class:`voxface.refine.RefineHead`): occupancy at any point,
        #: built when ``config.refine`` is set (checkpoints without it load as before).
        self.refiner: nn.Module | None = None
        if getattr(config, "refine", None) is not None:
            from ..refine import RefineHead

            shuffle = int(getattr(getattr(decoder, "cfg", None), "shuffle", 1))
            self.refiner = RefineHead(config.refine, decoder.feature_channels, config.decoder.resolution // shuffle)
        #: Latent prior (mean/std per dimension, PCA), filled in by training; see voxface.latent.
        self.prior: dict[str, Any] | None = None

    @property
    def grid(self) -> Grid:
        return Grid.from_config(self.config.frame, self.config.decoder.resolution)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def image_size(self) -> int:
        return self.config.encoder.image_size

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """A floating input on the model's device in its parameters' dtype (a CPU batch for a model on
        a GPU, float64 from ``numpy / 255``): what the layers need, moved or cast only when it differs."""
        p = next(self.parameters())
        return x if (x.device == p.device and x.dtype == p.dtype) else x.to(device=p.device, dtype=p.dtype)

    def encode(self, images: torch.Tensor) -> Latents:
        """``(B, 3, S, S)`` crops in [0, 1] to :class:`Latents` (``z_id``, ``z_exp``, pose), on the
        model's device (crops on another device, or float64, are moved and cast first). The codes are
        in the parameters' dtype (the autocast dtype under ``torch.autocast``: bfloat16 codes from a
        float32 model), the pose float32 (float64 in a model cast with ``.double()``, as the logits of
        :meth:`decode`).

        On a CPU without autograd (and not under ``torch.compile``, which fuses the batch itself),
        :data:`CPU_ENCODE_CHUNK` crops at a time: the encoder's
        activations then stay cache-sized (a batch of 16 encodes ~20% faster in chunks of 8). Its
        normalisation is per sample (GroupNorm), so every crop gets the codes it gets alone.

        Differentiable with respect to the crops when autograd is on.

        Raises :class:`~voxface.errors.InputTypeError` / :class:`~voxface.errors.InputError` (a
        ``TypeError`` / ``ValueError``) for crops of another shape or dtype, and for values outside
        [0, 1] by more than a bicubic resize's overshoot (:data:`IMAGE_OVERSHOOT`: 0-255 floats,
        normalised crops, NaN, infinities). A model being trained (``model.train()`` with
        autograd on) skips the value check: a device sync a step, and the training loop has its own
        divergence check. An export (``torch.export``, ONNX) checks nothing: the check reads the values,
        a branch on the data that no exported graph holds (so ``torch.export.export(model, (crops,))``
        gives a graph taking any batch, which returns ``(logits, Latents)`` as :meth:`forward` does).
        """
        if not exporting():
            self._check_images(images)
            images = self._input(images)
        k = CPU_ENCODE_CHUNK
        # exporting and compiling first: len() of a traced batch is a plain int, which fixed a dynamic
        # batch at the example's (torch.export's 'Constraints violated'); the compiler fuses it itself
        if (not exporting() and not compiling() and images.device.type == "cpu" and not torch.is_grad_enabled()
                and len(images) > k):
            parts = [self.encoder(images[i : i + k]) for i in range(0, len(images), k)]
            z_id, z_exp, raw = (torch.cat(p) for p in zip(*parts))
        else:
            z_id, z_exp, raw = self.encoder(images)
        return Latents(z_id, z_exp, decode_pose(raw if raw.dtype == torch.float64 else raw.float()))

    def decode(self, z_id: torch.Tensor, z_exp: torch.Tensor) -> torch.Tensor:
        """``z_id (B, D_id)``, ``z_exp (B, D_exp)`` to occupancy logits ``(B, 1, R, R, R)`` on the
        model's device.

        Arrays that are not tensors (numpy, lists) are taken as float32 on the model's device;
        tensors on another device (the CPU codes of :mod:`voxface.latent` for a model on a GPU) or
        of another float dtype are moved and cast. Differentiable with respect to the codes when
        autograd is on (latent optimisation). Codes of the wrong shape, and NaN or infinite codes
        (unless the model is being trained, as in :meth:`encode`), are an
        :class:`~voxface.errors.InputError` (a ``ValueError``); codes that are not real numbers
        (bool, complex) an :class:`~voxface.errors.InputTypeError` (a ``TypeError``).
        An empty batch gives ``(0, 1, R, R, R)``. An export (``torch.export``, ONNX) checks nothing, as
        :meth:`encode`'s.
        """
        if not exporting():
            z_id, z_exp = self._check_codes(z_id, z_exp)
            if len(z_id) == 0:
                r = self.config.decoder.resolution  # float32 as the decoder's logits (float64 kept)
                dtype = torch.float64 if z_id.dtype == torch.float64 else torch.float32
                return torch.zeros((0, 1, r, r, r), device=z_id.device, dtype=dtype)
        return self.decoder(torch.cat([z_id, z_exp], dim=1))

    def _checking_values(self) -> bool:
        """Whether inputs' values are checked: always, but in a training step (train mode, autograd)."""
        return not (self.training and torch.is_grad_enabled())

    def _check_images(self, images: Any) -> None:
        s = self.image_size
        if not isinstance(images, torch.Tensor):
            raise InputTypeError(f"images must be a torch.Tensor (B, 3, {s}, {s}), got {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise InputError(f"images must be (B, 3, {s}, {s}) crops, channels first (this model reads "
                             f"{s}-pixel crops), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise InputTypeError(f"images must be floating point in [0, 1], got {images.dtype} (divide uint8 by 255)")
        if images.numel() and self._checking_values():
            lo, hi = (float(v) for v in torch.aminmax(images.detach()))
            if not (lo >= -IMAGE_OVERSHOOT and hi <= 1 + IMAGE_OVERSHOOT):  # NaN fails both
                hint = (" (give the crops before normalising: encode normalises them itself)"
                        if lo < -IMAGE_OVERSHOOT else " (divide 0-255 values by 255)" if hi > 1.5 else "")
                raise InputError(f"images must be crops with values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                                 + hint)

    def _check_codes(self, z_id: Any, z_exp: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n_id, n_exp = self.config.encoder.z_id, self.config.encoder.z_exp
        def tensor(name: str, z: Any) -> torch.Tensor:  # cast by _input below, once checked for bool / complex
            if isinstance(z, torch.Tensor):
                return z
            try:
                return torch.as_tensor(z, device=self.device)
            except (TypeError, ValueError, RuntimeError):  # None, text, ragged lists, objects
                n = n_id if name == "z_id" else n_exp
                raise InputTypeError(f"{name} must be a tensor or an array of numbers (B, {n}), "
                                     f"got {type(z).__name__}") from None

        z_id, z_exp = tensor("z_id", z_id), tensor("z_exp", z_exp)
        for name, z in (("z_id", z_id), ("z_exp", z_exp)):
            if z.dtype == torch.bool or z.is_complex():
                raise InputTypeError(f"{name} must hold real numbers, not {str(z.dtype).replace('torch.', '')}")
        if (z_id.ndim != 2 or z_exp.ndim != 2 or z_id.shape[1] != n_id or z_exp.shape[1] != n_exp
                or len(z_id) != len(z_exp)):
            one = ""  # one face's code beside a batch: codes are not broadcast (as in torch.cat); say how
            if z_id.ndim == z_exp.ndim == 2 and (z_id.shape[1], z_exp.shape[1]) == (n_id, n_exp) and 1 in (
                    len(z_id), len(z_exp)):
                short, other = ("z_id", "z_exp") if len(z_id) == 1 else ("z_exp", "z_id")
                one = f" (one {short} for every face: {short}.expand(len({other}), -1))"
            elif z_id.ndim == z_exp.ndim == 1 and (len(z_id), len(z_exp)) == (n_id, n_exp):
                one = " (one face's codes: z_id[None], z_exp[None])"
            raise InputError(f"z_id must be (B, {n_id}) and z_exp (B, {n_exp}) with the same B, got "
                             f"{tuple(z_id.shape)} and {tuple(z_exp.shape)}{one}")
        for name, z in (("z_id", z_id), ("z_exp", z_exp)):  # at inference (as encode's values)
            if (self._checking_values() and z.is_floating_point() and z.numel()
                    and not bool(torch.isfinite(z.detach()).all())):
                raise InputError(f"{name} holds NaN or infinite values")
        return self._input(z_id), self._input(z_exp)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, Latents]:
        """Crops ``(B, 3, S, S)`` to ``(logits (B, 1, R, R, R), latents)``."""
        lat = self.encode(images)
        return self.decode(lat.z_id, lat.z_exp), lat

    @overload
    def reconstruct(self, image: Any, *, all_faces: Literal[False] = ..., **kwargs: Any) -> "Reconstruction": ...
    @overload
    def reconstruct(self, image: Any, *, all_faces: Literal[True], **kwargs: Any) -> "list[Reconstruction]": ...
    @overload
    def reconstruct(self, image: Any, *, all_faces: bool, **kwargs: Any) -> "Reconstruction | list[Reconstruction]": ...
    def reconstruct(self, image: Any, **kwargs: Any) -> "Reconstruction | list[Reconstruction]":
        """One photo (path, array or PIL image) to a :class:`voxface.Reconstruction` (a list of them,
        largest face first, with ``all_faces=True``).

        See :func:`voxface.reconstruct.reconstruct_image` for the keyword arguments.
        """
        from ..reconstruct import reconstruct_image

        return reconstruct_image(self, image, **kwargs)

    def extra_repr(self) -> str:
        return f"resolution={self.config.decoder.resolution}, config={to_dict(self.config)}"

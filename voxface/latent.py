"""Latent research toolkit: interpolate, transfer expressions, sample, principal directions, walks.

Codes are :class:`voxface.Latents` (``z_id (B, D_id)``, ``z_exp (B, D_exp)``). Anything that takes
"a face" accepts Latents, a photo (path or array: it is encoded), or a ``.npz`` written by
``voxface reconstruct --save-volume``. Functions return Latents; pass them to
:func:`decode` (or use ``decode=True``) to get :class:`voxface.Reconstruction` s, decoded in batches.

The prior comes from the checkpoint (``model.prior``, fitted by the trainer on training latents):

* **Gaussian**: a diagonal normal per dimension (``*_mean``, ``*_std``); :func:`sample` draws
  from it with ``kind="gaussian"``.
* **PCA**: the top principal directions of the training latents with their variances
  (``*_pca``); :func:`sample` with ``kind="pca"`` (the default) draws correlated codes
  ``mean + sum_j c_j sqrt(var_j) v_j``, :func:`principal_directions` lists the directions.

A checkpoint without a prior falls back to ``N(0, I)`` (and says so in a warning).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .models import Latents, VoxFace
    from .reconstruct import Reconstruction

SPACES = ("identity", "expression", "both")
MODES = ("slerp", "lerp")


def _torch():
    import torch

    return torch


def as_latents(model: "VoxFace", face: Any) -> "Latents":
    """A face given as Latents, a ``.npz`` from ``reconstruct --save-volume``, or a photo."""
    from .models import Latents

    if isinstance(face, Latents):
        return face
    if isinstance(face, (str, os.PathLike)) and Path(face).suffix.lower() == ".npz":
        from .errors import VoxfaceError

        try:
            with np.load(face) as z:
                return Latents.from_numpy(dict(z))
        except (OSError, ValueError, KeyError) as e:
            raise VoxfaceError(f"not a voxface latent file ({e})", face) from None
    rec = model.reconstruct(face)
    return rec.latents


def _slerp(a: "torch.Tensor", b: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
    """Spherical interpolation of the directions with linearly interpolated norms, ``(B, D)``."""
    torch = _torch()
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    t = t[:, None]
    lin = (1 - t) * ua + t * ub
    sph = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so.clamp_min(1e-12)
    u = torch.where(so < 1e-4, lin, sph)
    return u * ((1 - t) * na + t * nb)


def _centre(model: "VoxFace", name: str, z: "torch.Tensor") -> "torch.Tensor":
    p = model.prior
    return p[f"{name}_mean"].to(z) if p and f"{name}_mean" in p else z.new_zeros(z.shape[-1])


def interpolate(model: "VoxFace", a: Any, b: Any, steps: int = 8, *, mode: str = "slerp",
                space: str = "both") -> "Latents":
    """``steps`` codes from face ``a`` to face ``b`` (both ends included).

    ``space="identity"`` walks the identity and keeps ``a``'s expression; ``"expression"`` walks the
    expression and keeps ``a``'s identity; ``"both"`` walks both. ``slerp`` interpolates around the
    prior mean (directions spherically, norms linearly); ``lerp`` is a straight line.
    """
    torch = _torch()
    from .models import Latents

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}")
    la, lb = as_latents(model, a)[0], as_latents(model, b)[0]
    t = torch.linspace(0, 1, int(steps))

    def walk(name: str, za: "torch.Tensor", zb: "torch.Tensor") -> "torch.Tensor":
        za, zb = za.float().cpu().expand(len(t), -1), zb.float().cpu().expand(len(t), -1)
        if mode == "lerp":
            return za + t[:, None] * (zb - za)
        c = _centre(model, name, za).cpu()
        return c + _slerp(za - c, zb - c, t)

    z_id = walk("z_id", la.z_id, lb.z_id) if space in ("identity", "both") else la.z_id.cpu().expand(len(t), -1).clone()
    z_exp = walk("z_exp", la.z_exp, lb.z_exp) if space in ("expression", "both") else la.z_exp.cpu().expand(len(t), -1).clone()
    return Latents(z_id, z_exp)


def transfer_expression(model: "VoxFace", source: Any, target: Any) -> "Latents":
    """The identity of ``target`` with the expression of ``source`` (one code per pair)."""
    from .models import Latents

    ls, lt = as_latents(model, source), as_latents(model, target)
    n = max(len(ls), len(lt))
    return Latents(lt.z_id.cpu().expand(n, -1).clone(), ls.z_exp.cpu().expand(n, -1).clone())


def sample(model: "VoxFace", n: int, *, temperature: float = 1.0, space: str = "both", seed: int = 0,
           kind: str = "pca", base: "Latents | None" = None) -> "Latents":
    """``n`` codes from the prior (see the module docstring), deterministic in ``seed``.

    ``space="identity"`` samples identities and keeps ``base``'s expression (default: the mean
    expression), ``"expression"`` the converse. ``temperature`` scales deviations from the mean.
    """
    torch = _torch()
    from .models import Latents

    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}")
    g = torch.Generator().manual_seed(int(seed))
    cfg = model.config.encoder
    prior = model.prior
    if prior is None:
        warnings.warn("this checkpoint has no latent prior: sampling N(0, I)", stacklevel=2)

    def draw(name: str, dim: int) -> "torch.Tensor":
        if prior is None:
            return torch.randn(n, dim, generator=g) * temperature
        mean = prior[f"{name}_mean"].float()
        pca = prior.get(f"{name}_pca") or {}
        if kind == "pca" and len(pca.get("components", [])):
            comp = pca["components"].float()
            sd = pca["explained_variance"].float().clamp_min(0).sqrt()
            c = torch.randn(n, len(sd), generator=g) * sd * temperature
            # the variance outside the top-k directions, diagonally
            resid = (prior[f"{name}_std"].float() ** 2 - (comp**2 * sd[:, None] ** 2).sum(0)).clamp_min(0).sqrt()
            return mean + c @ comp + torch.randn(n, dim, generator=g) * resid * temperature
        return mean + torch.randn(n, dim, generator=g) * prior[f"{name}_std"].float() * temperature

    def mean_of(name: str, dim: int) -> "torch.Tensor":
        return (prior[f"{name}_mean"].float() if prior else torch.zeros(dim)).expand(n, -1).clone()

    z_id = draw("z_id", cfg.z_id) if space in ("identity", "both") else (
        base.z_id.float().cpu().expand(n, -1).clone() if base is not None else mean_of("z_id", cfg.z_id))
    z_exp = draw("z_exp", cfg.z_exp) if space in ("expression", "both") else (
        base.z_exp.float().cpu().expand(n, -1).clone() if base is not None else mean_of("z_exp", cfg.z_exp))
    return Latents(z_id, z_exp)


def sample_latents(model: "VoxFace", n: int, *, temperature: float = 1.0, seed: int = 0) -> "Latents":
    """Shorthand for :func:`sample` over both spaces."""
    return sample(model, n, temperature=temperature, seed=seed)


@dataclass
class Direction:
    """A principal direction of one latent space.

    Attributes:
        space: ``"identity"`` or ``"expression"``.
        index: rank (0 = most variance).
        vector: ``(D,)`` unit direction.
        std: standard deviation of the training codes along it.
        explained_variance_ratio: share of the space's variance.
        match: best-matching ICT expression name or identity mode (``"identity017"``), or None.
        correlation: correlation of the projections with that coefficient.
    """

    space: str
    index: int
    vector: "torch.Tensor"
    std: float
    explained_variance_ratio: float
    match: str | None = None
    correlation: float = 0.0


def principal_directions(model: "VoxFace", space: str = "expression", k: int = 8) -> list[Direction]:
    """The top ``k`` principal directions of a latent space, each with its best-matching ICT
    expression blendshape or identity mode where the prior recorded coefficient correlations."""
    if space not in ("identity", "expression"):
        raise ValueError("space must be 'identity' or 'expression'")
    prior = model.prior
    from .errors import VoxfaceError

    if not prior:
        raise VoxfaceError("this checkpoint has no latent prior (train it with voxface train)")
    name = "z_id" if space == "identity" else "z_exp"
    pca = prior[f"{name}_pca"]
    comp, var = pca["components"].float(), pca["explained_variance"].float()
    ratio = pca.get("explained_variance_ratio", var / var.sum())
    corr = pca.get("coeff_correlation")
    names = prior.get("exp_names") if space == "expression" else None
    out = []
    for j in range(min(int(k), len(var))):
        match, c = None, 0.0
        if corr is not None and len(corr) > j:
            row = corr[j].float()
            m = int(row.abs().argmax())
            c = float(row[m])
            if abs(c) >= 0.3:
                match = (names[m] if names else f"expression{m:02d}") if space == "expression" else f"identity{m:03d}"
        out.append(Direction(space, j, comp[j], float(var[j].sqrt()), float(ratio[j]), match, c))
    return out


def walk(model: "VoxFace", code: "Latents", direction: "Direction | torch.Tensor", values: Sequence[float], *,
         space: str | None = None) -> "Latents":
    """Codes ``code + v * direction`` for each ``v`` in ``values``.

    A :class:`Direction` is scaled by its standard deviation (so ``values`` are in sigmas) and knows
    its space; a raw ``(D,)`` tensor needs ``space``.
    """
    torch = _torch()
    from .models import Latents

    if isinstance(direction, Direction):
        vec, sp = direction.vector * direction.std, direction.space
    else:
        vec, sp = torch.as_tensor(direction).float(), space
    if sp not in ("identity", "expression"):
        raise ValueError("space must be 'identity' or 'expression'")
    c = code[0]
    v = torch.as_tensor(list(values), dtype=torch.float32)[:, None]
    z_id = c.z_id.float().cpu().expand(len(v), -1).clone()
    z_exp = c.z_exp.float().cpu().expand(len(v), -1).clone()
    if sp == "identity":
        z_id = z_id + v * vec
    else:
        z_exp = z_exp + v * vec
    return Latents(z_id, z_exp)


def decode(model: "VoxFace", latents: "Latents", **kwargs: Any) -> "list[Reconstruction]":
    """Decode codes to :class:`voxface.Reconstruction` s in batches (see
    :func:`voxface.reconstruct.decode_latents` for the options)."""
    from .reconstruct import decode_latents

    return decode_latents(model, latents, **kwargs)

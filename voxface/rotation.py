"""Rotation representations (torch): the continuous 6D form of Zhou et al. (CVPR 2019).

A 6D vector holds the first two columns of a rotation matrix (as in Zhou et al.'s code); Gram-Schmidt
recovers the matrix. PyTorch3D's ``rotation_6d_to_matrix`` / ``matrix_to_rotation_6d`` use the first
two *rows* instead: given voxface's six numbers (the encoder's ``pose[:, :6]``) they give the
transpose, the inverse rotation (use ``rotation_6d_to_matrix(d6).transpose(-1, -2)``, or
:func:`rot6d_to_matrix`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` (first column, second column) to rotation matrices ``(..., 3, 3)``, in the dtype
    and on the device of ``d6`` (columns, not PyTorch3D's rows: see the module docstring)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` to the 6D form ``(..., 6)``: the first column, then the second
    (PyTorch3D's ``matrix_to_rotation_6d`` takes rows); :func:`rot6d_to_matrix` inverts it."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def geodesic_degrees(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (degrees, 0 to 180) of the rotation taking ``r1`` to ``r2``; both ``(..., 3, 3)``, result ``(...)``.

    ``atan2(2 sin, 2 cos)`` of the relative rotation ``M = r1^T r2``: ``2 cos`` is ``trace(M) - 1``, ``2 sin``
    the length of ``M - M^T``'s axis vector. ``acos`` of the cosine alone loses small angles in float32
    (0.01 degree read 0, 0.1 degree 0.097: the cosine's change is below float32's resolution) and
    ends near 180 degrees; this is exact to rounding over the whole range.

    Two floating dtypes are promoted to the wider (a float64 model's poses against float32 labels, as
    in :func:`voxface.evaluate.evaluate`); the result has that dtype. Two integer matrices
    (``torch.tensor(np.diag([1, -1, -1]))`` is int64) are read as float32 (``vector_norm`` refused them).
    NumPy arrays (:func:`voxface.frame.euler_matrix`'s, ``FRONTAL_ROTATION``) are taken as tensors (their
    ``dtype`` was ``promote_types``' TypeError); the result is a tensor.
    """
    r1, r2 = torch.as_tensor(r1), torch.as_tensor(r2)
    dtype = torch.promote_types(r1.dtype, r2.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    rel = r1.to(dtype).transpose(-1, -2) @ r2.to(dtype)
    cos2 = rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1
    axis = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                        rel[..., 1, 0] - rel[..., 0, 1]], dim=-1)
    return torch.rad2deg(torch.atan2(torch.linalg.vector_norm(axis, dim=-1), cos2))


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """Head rotation in the canonical frame from yaw (about y), pitch (about x), roll (about z),
    degrees, applied roll, then pitch, then yaw: ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)``, as a
    ``(3, 3)`` float32 tensor (:func:`voxface.frame.euler_matrix`, computed in float64)."""
    from .frame import euler_matrix

    return torch.from_numpy(euler_matrix(yaw, pitch, roll)).to(torch.float32)
"""Rotation representations (torch): the continuous 6D form of Zhou et al. (CVPR 2019).

A 6D vector holds the first two columns of a rotation matrix; Gram-Schmidt recovers the matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` (first column, second column) to rotation matrices ``(..., 3, 3)``."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` to the 6D form ``(..., 6)``."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def geodesic_degrees(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (degrees) of the rotation taking ``r1`` to ``r2``; both ``(..., 3, 3)``."""
    rel = r1.transpose(-1, -2) @ r2
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """Head rotation in the canonical frame from yaw (about y), pitch (about x), roll (about z),
    degrees, applied roll, then pitch, then yaw: ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)``, as a
    ``(3, 3)`` float32 tensor (:func:`voxface.frame.euler_matrix`, computed in float64)."""
    from .frame import euler_matrix

    return torch.from_numpy(euler_matrix(yaw, pitch, roll)).to(torch.float32)
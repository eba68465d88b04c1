"""Device selection: ``"auto"`` means CUDA when available, else CPU."""

from __future__ import annotations


def resolve_device(device: "str | None" = "auto"):
    """Return a :class:`torch.device` for ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    ``"auto"`` (or ``None``) picks ``cuda`` when a CUDA device is available, else ``cpu``.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from .errors import VoxfaceError

        raise VoxfaceError(f"device {device!r} was asked for but CUDA is not available")
    return dev

"""Checkpoint commands: inspect, init-checkpoint."""
from __future__ import annotations

from . import app  # noqa: F401

"""The entry point every script here shares: a voxface error (ICT-FaceKit not found, a checkpoint or
data cache that is missing or not one) is one line on stderr, ``error: ...``, and exit status 1, as
the ``voxface`` command says it, not a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_main(main: Callable[[], Any]) -> None:
    """Call ``main()``; a :class:`voxface.VoxfaceError` exits with its one line."""
    from voxface.errors import VoxfaceError

    try:
        main()
    except VoxfaceError as e:
        raise SystemExit(f"error: {e}") from None

"""The entry point every script here shares: a voxface error (ICT-FaceKit not found, a checkpoint or
data cache that is missing or not one) is one line on stderr, ``error: ...``, and exit status 1, as
the ``voxface`` command says it, not a traceback. Also the argument types the scripts share, so a
count of 0 or a malformed list is refused on one line too, not a traceback (or a table of nan) later."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def run_main(main: Callable[[], Any]) -> None:
    """Call ``main()``; a :class:`voxface.VoxfaceError` exits with its one line, and so does a bad
    argument (argparse printed its usage and ``<script>: error: ...``, exit 2): ``error: argument
    --num: ...; see '<script> -h'``, exit 1, as the ``voxface`` command refuses an option."""
    import sys

    from voxface.errors import VoxfaceError

    def one_line(parser: argparse.ArgumentParser, message: str) -> None:
        sys.stderr.write(f"error: {message}; see '{parser.prog} -h'\n")
        sys.exit(1)

    error = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = one_line  # type: ignore[method-assign]  # the scripts' own parsers, in main()
    try:
        main()
    except VoxfaceError as e:
        raise SystemExit(f"error: {e}") from None
    finally:
        argparse.ArgumentParser.error = error  # type: ignore[method-assign]


def at_least(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number ``>= minimum`` (``what`` says why, e.g. "faces")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{f' ({what})' if what else ''}, not {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def number_list(kind: Callable[[str], Any] = float, minimum: float | None = None) -> Callable[[str], list[Any]]:
    """An argparse ``type``: a comma-separated, non-empty list of ``kind`` (each ``>= minimum``)."""
    def parse(text: str) -> list[Any]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} lists no values (comma-separated, e.g. 1,4,16)")
        out = []
        for x in items:
            try:
                value = kind(x)
            except ValueError:
                what = {"int": "whole number", "float": "number"}.get(kind.__name__, kind.__name__)
                raise argparse.ArgumentTypeError(f"{x!r} in {text!r} is not a {what}") from None
            if minimum is not None and value < minimum:
                raise argparse.ArgumentTypeError(f"{x!r} in {text!r} must be at least {minimum:g}")
            out.append(value)
        return out

    parse.__name__ = "list"
    return parse

"""The ``voxface`` command line: one typer app, one module per group of subcommands.

Each ``_*.py`` module adds its commands to :data:`app`; commands only parse options and call the
public API. Heavy libraries (torch, open3d) are imported inside the commands, so ``voxface --help``
stays fast. Errors a user can cause (:class:`voxface.VoxfaceError`, and options typer refuses:
an unknown option, a number out of its range) print one line and exit 1; Ctrl-C exits 130;
warnings (``UserWarning``, ``RuntimeWarning``: a checkpoint without a latent prior, a mesh that
could not be decimated) print one ``warning: <message>`` line and the command goes on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional

import typer
import typer.core

from .._version import __version__
from ..errors import printable


class _Group(typer.core.TyperGroup):
    """The root command group: a Ctrl-C that no command handled prints ``interrupted`` and exits
    130 (typer would exit 130 without a word), a SIGTERM ``terminated`` and 143; an ``EOFError`` that no command handled (a file cut
    short or empty: ``np.load`` of an empty file, a truncated pickle) is one ``error:`` line, exit 1
    (typer made it an Abort after a blank line: a traceback here, or ``interrupted`` if caught).
    voxface asks nothing on stdin, so no EOFError is the user's Ctrl-D."""

    def invoke(self, ctx):  # noqa: D102 (click's)
        # SIGTERM (kill, a scheduler's time limit, `timeout`) stops every command as Ctrl-C does: its
        # cleanup runs (temporaries, half-made folders) and it ends with ``terminated``, exit 143,
        # where the default action killed the process without a word and left its temporaries
        with sigterm_as_interrupt() as terminated:
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt:
                typer.echo("terminated" if terminated else "interrupted", err=True)
                raise typer.Exit(interrupt_status(terminated)) from None
            except EOFError as e:
                raise fail(f"a file read was empty or cut short ({' '.join(str(e).split()) or 'EOFError'})") from None


app = typer.Typer(
    name="voxface",
    cls=_Group,
    help="Single-image 3D face reconstruction through occupancy voxel grids.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voxface {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Single-image 3D face reconstruction through occupancy voxel grids."""


#: ``text`` with its unprintable characters escaped (a newline or an escape sequence in a file name),
#: as :class:`voxface.VoxfaceError` shows its path: an ``error:`` line stays one line.
one_line = printable


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Within the block, SIGTERM (kill, a job scheduler's time limit) raises ``KeyboardInterrupt`` as
    Ctrl-C does, so the work cleans up as for Ctrl-C; the previous handler comes back after it.
    Yields the list the signals received are appended to (empty after a Ctrl-C): the exit status is
    :func:`interrupt_status` of it. Outside the main thread (the command called from a thread)
    SIGTERM stays as it was."""
    import signal

    terminated: list[int] = []

    def stop(signum: int, frame: object) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield terminated
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: Every ``--device`` option's help: what :func:`voxface.device.resolve_device` takes.
DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda, cuda:N, mps (Apple GPU)."


def interrupt_status(terminated: list[int]) -> int:
    """Exit status of a command stopped in :func:`sigterm_as_interrupt`: 143 for SIGTERM, 130 for Ctrl-C."""
    import signal

    return 128 + (terminated[0] if terminated else int(signal.SIGINT))


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print ``error: message`` on stderr (one line: :func:`one_line`); return the Exit to raise."""
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


def _out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure: ``MemoryError``, ``torch.OutOfMemoryError`` (CUDA)
    or the CPU allocator's ``RuntimeError`` ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(e, MemoryError):
        return True
    text = str(e)
    return "out of memory" in text.lower() or "can't allocate memory" in text


def os_error_line(e: OSError) -> str:
    """``<file>: <the system's reason>`` on one line (both files of a failed rename or link)."""
    files = [str(f) for f in (e.filename, e.filename2) if f is not None]
    reason = " ".join((e.strerror or str(e)).split())
    if isinstance(e, FileExistsError) and files and os.path.exists(files[0]) and not os.path.isdir(files[0]):
        reason = "is a file, where a folder is needed"  # mkdir(exist_ok=True) on a file
    return f"{' -> '.join(files)}: {reason}" if files else reason


def check_output(path: Path, folder: bool = False) -> None:
    """Refuse, before the long work, an output that cannot be written; else return.

    ``path`` is a file to write, or with ``folder`` a folder to write into. Refused: a file where
    the folder is to be (or a folder where the file is), a file among its parents, or a nearest
    existing folder that cannot be written into (probed with a real temporary file: permission
    bits do not tell root or a read-only file system), and a file to write that is a device, FIFO
    or socket (:func:`check_not_special`). Prints ``error: <path>: <problem>`` and raises the Exit;
    creates nothing.
    """
    from ..mesh import output_problem

    problem = output_problem(path, folder)  # a device, FIFO or socket among the problems
    if problem is not None:
        raise fail(f"{path}: {problem}")


def check_not_special(path: Path) -> None:
    """Refuse a file to write that is a device, FIFO or socket (through a link too: ``/dev/null``,
    ``/dev/stdout``; :func:`voxface.mesh.special_file_problem`). Prints ``error: <path>: <problem>``
    and raises the Exit; a regular file, a folder or nothing there passes."""
    from ..mesh import special_file_problem

    problem = special_file_problem(path)
    if problem is not None:
        raise fail(f"{path}: {problem}")


def _named(value: str | os.PathLike[str], what: str) -> str:
    """An option's path as text, or a refusal (``typer.BadParameter``, one ``error:`` line) of an
    empty one: ``Path("")`` is the current folder, so ``-o "$OUT"`` or ``-c "$CKPT"`` with the
    variable unset wrote a run's files where the user stood (``data cache``: ``./train`` and
    ``./val``) or read ``.`` as the checkpoint. ``what`` says what to name instead."""
    text = os.fspath(value)
    if not text.strip():
        raise typer.BadParameter(f"is empty (an unset variable?); name {what}")
    return text


def output_file(value: str | os.PathLike[str]) -> Path:
    """The ``parser`` of an option naming one file to write: its :class:`~pathlib.Path`, or a
    refusal (``typer.BadParameter``, one ``error:`` line) of an empty path or one ending in a slash.
    ``Path()`` drops that slash, so ``-o runs/new/`` wrote a file named ``runs/new`` (``preview -o
    grids/``: ``grids.png``) where the user named a folder."""
    if isinstance(value, Path):  # a default
        return value
    text = _named(value, "the file to write")
    if text.endswith(("/", os.sep)):
        raise typer.BadParameter(f"{one_line(text)} names a folder (it ends in a slash); name the file to write in it")
    return Path(text)


def input_file(value: str | os.PathLike[str]) -> Path:
    """The ``parser`` of an argument or option naming a file to read (a checkpoint, a config, a
    report): its :class:`~pathlib.Path`, or a refusal of an empty name (:func:`_named`)."""
    return value if isinstance(value, Path) else Path(_named(value, "the file to read"))


def output_folder(value: str | os.PathLike[str]) -> Path:
    """The ``parser`` of an option naming a folder to write into: its :class:`~pathlib.Path`, or a
    refusal of an empty name (:func:`_named`); ``-o .`` still names the current folder."""
    return value if isinstance(value, Path) else Path(_named(value, "the folder to write into ('.' for this one)"))


#: The seeds ``torch.manual_seed`` accepts (a negative one is ``2**64 + seed``).
TORCH_SEEDS = (-(2**63), 2**64 - 1)


def check_seed(seed: int, low: int, high: int, option: str = "--seed") -> int:
    """``seed`` when ``low <= seed <= high``; else print ``error: --seed ...`` and raise the Exit.

    Checked before anything is read, so a seed out of range is never blamed on another input
    (``torch.manual_seed`` raises ``ValueError`` past its range, as a config's values do).
    """
    if not low <= seed <= high:
        raise fail(f"{option} must be a whole number from {low} to {high}, not {seed}")
    return seed


def _command_path(args: list[str]) -> str:
    """``voxface`` and the (sub)command names that lead ``args``: ``voxface data preview``."""
    import typer.main

    cmd, words = typer.main.get_command(app), ["voxface"]
    for arg in args:
        sub = getattr(cmd, "commands", {}).get(arg)
        if sub is None:
            break
        cmd = sub
        words.append(arg)
    return " ".join(words)


def _show_warning(python_show, message, category, filename, lineno, file=None, line=None) -> None:
    """:func:`warnings.showwarning` of the command line: a warning meant for users (``UserWarning``,
    ``RuntimeWarning``) as one ``warning: <message>`` line on stderr, without its category, source
    file and line; other categories (deprecations: for developers) through ``python_show``. Its
    whitespace runs are one space and its other unprintable characters escaped (:func:`one_line`), as
    an ``error:`` line's are: a file name a warning quotes cannot drive the terminal."""
    if issubclass(category, (UserWarning, RuntimeWarning)):
        typer.echo(f"warning: {one_line(' '.join(str(message).split()))}", err=True)
    else:
        python_show(message, category, filename, lineno, file, line)


# command modules register themselves on `app` (explicit imports, no star-imports)
from . import _bench, _checkpoint, _data, _evaluate, _latent, _onnx, _reconstruct, _refine  # noqa: E402,F401
from . import _train  # noqa: E402,F401


def main(prog_name: str | None = None) -> None:
    """Entry point of the ``voxface`` console script; ``prog_name``: the command's name in usage lines
    and hints (default: the script's)."""
    from ..device import keep_freed_memory
    from ..errors import VoxfaceError

    # typer's (or click's, by typer version) exception classes: an option typer refuses is a
    # UsageError, printed here on one line as every other bad input (typer draws a boxed panel)
    clicks = sys.modules[typer.BadParameter.__module__]
    keep_freed_memory()  # no page faults on every batch's activations (see its docstring)
    with warnings.catch_warnings():  # puts the warnings module's display back afterwards
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            code = app(standalone_mode=False, prog_name=prog_name)  # typer.Exit(n) returns n
        except VoxfaceError as e:
            typer.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(1)
        except OSError as e:  # the file system refused: a folder that cannot be made, a full disk, no permission
            typer.echo(f"error: {one_line(os_error_line(e))}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)
        except typer.Abort:  # a Ctrl-C or EOF typer caught itself; before RuntimeError, which an Abort is
            typer.echo("interrupted", err=True)
            sys.exit(130)
        except (MemoryError, RuntimeError) as e:  # torch's OutOfMemoryError and CPU allocator errors are RuntimeErrors
            if not _out_of_memory(e):
                raise
            from ..checkpoint import _first_line

            how = ("train.batch_size, model.grid.resolution or train.workers in the config" if
                   _command_path(sys.argv[1:]) == "voxface train" else  # its sizes are a config's, not options
                   "--batch-size, --resolution, fewer --workers, as the command has them")
            typer.echo(f"error: out of memory ({_first_line(e)}): use smaller batches or a coarser grid ({how}), "
                       "or another --device", err=True)
            sys.exit(1)
        except clicks.ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `voxface` / `voxface data`: the help, exit 2
                if e.format_message():  # (typer's rich help printed itself)
                    typer.echo(e.format_message())
                sys.exit(2)
            ctx = getattr(e, "ctx", None)
            # an option given without its value ('--num' last) is refused by the parser without a context
            hint = f"; see '{ctx.command_path if ctx is not None else _command_path(sys.argv[1:])} -h'"
            message = " ".join(e.format_message().split()).rstrip(".")
            typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

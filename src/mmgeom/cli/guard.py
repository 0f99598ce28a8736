"""The command line's one error boundary: every failure becomes one line on stderr and an exit status.

:func:`guard` wraps every command (``cli/app.py`` registers each through :func:`guarded`) and the
library calls inside them. What a user sees for each class of fault is listed in ``docs/errors.md``
(checked by ``tests/test_faults_table.py``):

* bad input — a config key, a path, a file that is not what it should be — exit status 2
  (:data:`EXIT_USAGE`, the same as a command-line usage error);
* a runtime fault — the disk filled up, the file system is read-only, the device failed, an unexpected
  internal error — exit status 1 (:data:`EXIT_RUNTIME`);
* a diverged run (non-finite loss) exit status 1; a run stopped by a signal 128 + the signal number.

``MMGEOM_DEBUG=1`` re-raises instead, so the full traceback shows.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer

from ..data import DataUnavailableError
from ..errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingInterrupted

T = TypeVar("T")

#: Exit status of user errors (bad config, missing data) — the same as command-line usage errors.
EXIT_USAGE = 2
#: Exit status of runtime faults (disk full, read-only file system, device failure, internal error).
EXIT_RUNTIME = 1
#: Exit status of a run stopped by a non-finite loss.
EXIT_DIVERGED = 1
#: Exit status of a run stopped by a signal (after its checkpoint): 128 + the signal number.
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}

#: Click's own control flow (exits, usage errors, aborts) passes through the guard untouched. Recent typer
#: releases ship their own copy of click, whose exception classes are not ``click``'s: both are listed.
_CLICK_FLOW: tuple[type[BaseException], ...] = tuple(
    {
        typer.Exit,
        typer.Abort,
        click.exceptions.Exit,
        click.ClickException,
        click.exceptions.Abort,
        *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
    }
)

#: ``errno`` -> (exit status, what to do). Faults of the machine are runtime faults (1); a path the user
#: chose that cannot be used is bad input (2).
_OS_HINTS: dict[int, tuple[int, str]] = {
    errno.ENOSPC: (EXIT_RUNTIME, "the disk is full: free some space or write elsewhere (--out)"),
    errno.EDQUOT: (EXIT_RUNTIME, "the disk quota is exceeded: free some space or write elsewhere"),
    errno.EROFS: (EXIT_RUNTIME, "the file system is read-only: choose a writable folder (--out)"),
    errno.EIO: (EXIT_RUNTIME, "input/output error: check the disk, then retry"),
    errno.EACCES: (EXIT_USAGE, "permission denied: check the path's permissions or choose another one"),
    errno.EPERM: (EXIT_USAGE, "operation not permitted: check the path's permissions or choose another"),
    errno.ENOTDIR: (EXIT_USAGE, "a part of the path is a file, not a folder: choose another path"),
    errno.EISDIR: (EXIT_USAGE, "the path is a folder where a file was expected: give a file path"),
    errno.ENOENT: (EXIT_USAGE, "no such file or folder: check the path"),
    errno.EEXIST: (EXIT_USAGE, "the path exists already: choose a new one"),
    errno.ENAMETOOLONG: (EXIT_USAGE, "the file name is too long: choose a shorter path"),
}

#: Substrings of torch's ``RuntimeError`` messages that mean a file write failed underneath
#: (``torch.save`` reports ENOSPC as an enforce failure "unexpected pos ... vs ...").
_TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed", "file write failed")
#: Substrings of torch's ``RuntimeError`` messages that mean the requested device is not usable.
_DEVICE_FAILURES = (
    "CUDA",
    "cuda",
    "Torch not compiled with",
    "No CUDA GPUs",
    "MPS backend",
    "Expected one of cpu",
)


def is_rank_zero() -> bool:
    """False in torchrun workers other than rank 0 (before the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def _one_line(text: str) -> str:
    """``text`` on one line: the first line, and how many more there were."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 else f"{lines[0]} (+{len(lines) - 1} more lines)"


def _os_message(err: OSError) -> tuple[int, str]:
    """Exit status and message of an ``OSError``: the path(s), the system's reason and what to do."""
    code, hint = _OS_HINTS.get(err.errno or -1, (EXIT_RUNTIME, "check the path and the disk, then retry"))
    if isinstance(err, FileNotFoundError) and err.errno is None:
        # mmgeom's own FileNotFoundError("<path>: ...") carries the path and the remedy in its text.
        return EXIT_USAGE, _one_line(str(err))
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "(path not reported)"
    reason = err.strerror or _one_line(str(err))
    return code, f"{where}: {reason}; {hint}"


def describe(err: BaseException) -> tuple[int, str] | None:
    """The exit status and the one message the boundary prints for ``err`` (``None``: not handled here).

    Used by :func:`guard`; exposed so that tests and ``docs/errors.md`` can check each class of fault.
    """
    if isinstance(err, NonFiniteLossError):
        return EXIT_DIVERGED, str(err)
    if isinstance(err, ConfigError):
        # One line per offending key (each names its key path): kept as the config loader wrote it.
        return EXIT_USAGE, str(err)
    if isinstance(err, (CheckpointError, DataUnavailableError)):
        return EXIT_USAGE, str(err)
    if isinstance(err, OSError):
        return _os_message(err)
    if isinstance(err, ValueError):
        return EXIT_USAGE, str(err)
    if isinstance(err, RuntimeError):
        text = str(err)
        if any(s in text for s in _TORCH_WRITE_FAILURES):
            return EXIT_RUNTIME, (
                f"a file write failed ({_one_line(text)}); the disk is probably full: free some space "
                "or write elsewhere (--out)"
            )
        if any(s in text for s in _DEVICE_FAILURES):
            return EXIT_RUNTIME, (
                f"device error: {_one_line(text)}; check train.device (cpu runs everywhere) and the GPU"
            )
    if type(err).__name__ == "SafetensorError":  # safetensors' own class (not importable by name)
        return EXIT_USAGE, f"unreadable safetensors file: {_one_line(str(err))}"
    if isinstance(err, Exception):
        return EXIT_RUNTIME, (
            f"internal error: {type(err).__name__}: {_one_line(str(err))}; rerun with MMGEOM_DEBUG=1 for "
            "the traceback and report it"
        )
    return None


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; report any error as one message on stderr and exit, without a traceback.

    Click's own exits (``typer.Exit``, usage errors, ``Abort``) pass through untouched, so guards nest.
    ``MMGEOM_DEBUG=1`` re-raises instead, so the traceback shows.
    """
    try:
        return fn()
    except _CLICK_FLOW:
        raise
    except TrainingInterrupted as e:
        if is_rank_zero():
            typer.echo(f"{e}\ncontinue with: mmgeom train CONFIG --resume {e.run_dir}", err=True)
        raise typer.Exit(EXIT_SIGNAL.get(e.signal_name, 1)) from None
    except Exception as e:
        found = describe(e)
        if found is None or os.environ.get("MMGEOM_DEBUG"):
            raise
        code, message = found
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code) from None


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` run inside :func:`guard` (typer reads the wrapped signature through ``__wrapped__``)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return guard(lambda: command(*args, **kwargs))

    return wrapper

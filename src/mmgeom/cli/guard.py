"""How the command line reports user errors: one line on stderr and an exit status, no traceback."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import typer

from ..data import DataUnavailableError
from ..errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingInterrupted

T = TypeVar("T")

#: Exit status of user errors (bad config, missing data) — the same as command-line usage errors.
EXIT_USAGE = 2
#: Exit status of a run stopped by a non-finite loss.
EXIT_DIVERGED = 1
#: Exit status of a run stopped by a signal (after its checkpoint): 128 + the signal number.
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def is_rank_zero() -> bool:
    """False in torchrun workers other than rank 0 (before the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; report user errors as one line on stderr and exit, without a traceback.

    ``MMGEOM_DEBUG=1`` re-raises instead, so the traceback shows.
    """
    try:
        return fn()
    except NonFiniteLossError as e:
        if os.environ.get("MMGEOM_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_DIVERGED) from None
    except TrainingInterrupted as e:
        if is_rank_zero():
            typer.echo(f"{e}\ncontinue with: mmgeom train CONFIG --resume {e.run_dir}", err=True)
        raise typer.Exit(EXIT_SIGNAL.get(e.signal_name, 1)) from None
    except (ConfigError, CheckpointError, DataUnavailableError, ValueError, FileNotFoundError) as e:
        if os.environ.get("MMGEOM_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None

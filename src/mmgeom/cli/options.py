"""Options shared by several commands: ``--set``, ``--score``, a config argument, ``--resume [DIR]``."""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand

from .launch import RESUME_LATEST

SET_HELP = "Override a config value, e.g. --set optim.lr=1e-3 (values are YAML; repeatable)."
SCORE_HELP = (
    "Retrieval scoring of the final report: cosine (default) or magnitude (L2Dir: query normalised, "
    "gallery items keep the L2 norm of their embedding)."
)
CONFIG_HELP = "YAML config file, or a packaged config's name (demo)."
PROGRESS_HELP = "Show the progress bar."

#: ``--set KEY=VALUE`` (repeatable).
SET_OPTION = typer.Option("--set", "-s", metavar="KEY=VALUE", help=SET_HELP)
#: The CONFIG argument of ``train`` and ``config show/validate``.
CONFIG_ARG = typer.Argument(metavar="CONFIG", help=CONFIG_HELP)


class Score(str, enum.Enum):
    """Retrieval scoring choices of ``--score``."""

    cosine = "cosine"
    magnitude = "magnitude"


class OptionalValueCommand(TyperCommand):
    """A command whose ``--resume`` may be given without a value (``--resume`` or ``--resume DIR``)."""

    optional_values: ClassVar[dict[str, str]] = {"--resume": RESUME_LATEST}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Give a bare ``--resume`` its default value, then parse as usual."""
        fixed: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                fixed.extend(args[i:])
                break
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg in self.optional_values and (nxt is None or nxt.startswith("-")):
                arg = f"{arg}={self.optional_values[arg]}"
            fixed.append(arg)
        return super().parse_args(ctx, fixed)

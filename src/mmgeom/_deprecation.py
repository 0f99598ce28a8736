"""Module-level aliases for names that moved: the old import path keeps working, with a warning.

A lower floor may keep an alias to a name that moved *up* (e.g. ``mmgeom.classify.report`` → the DAGR
study): the new module is imported by name only when the old name is used, so the lower floor carries
no import of the upper one (docs/architecture.md, "Deprecated paths").
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(
    old_module: str, moved: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a module whose names moved to other modules.

    Args:
        old_module: the deprecated module's name (in the warning).
        moved: old name -> the module it now lives in.

    Example:
        >>> moved = {"mean_std": "mmgeom.studies.tables"}
        >>> __getattr__, __dir__ = moved_names(__name__, moved)  # doctest: +SKIP
    """
    table = dict(moved)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(
            f"{old_module}.{name} moved to {module}.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__

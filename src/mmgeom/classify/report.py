"""Deprecated: moved to :mod:`mmgeom.studies.dagr.summaries` (study reporting lives with the studies).

Importing a name from here still works and emits a :class:`DeprecationWarning`. The module is resolved by
name at attribute access, so ``classify`` (a lower floor) has no import of ``studies``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_NEW = "mmgeom.studies.dagr.summaries"
_NAMES = (
    "Summary",
    "cell",
    "clear_sign",
    "curve_panel",
    "describe_delta",
    "metric_table",
    "modality_table",
    "paired_delta",
    "summarize",
)

__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"mmgeom.classify.report.{name} moved to {_NEW}.{name}; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_NEW), name)


def __dir__() -> list[str]:
    return __all__

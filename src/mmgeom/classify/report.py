"""Deprecated: moved to :mod:`mmgeom.studies.dagr.summaries` (study reporting lives with the studies).

Importing a name from here still works and emits a :class:`DeprecationWarning`. The module is resolved by
name at attribute access, so ``classify`` (a lower floor) has no import of ``studies``.
"""

from __future__ import annotations

from .._deprecation import moved_names

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

__getattr__, __dir__ = moved_names(__name__, dict.fromkeys(_NAMES, _NEW))

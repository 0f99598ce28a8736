"""The first run: the geometry-aware losses side by side on the bundled digits (``mmgeom demo``).

Three retrieval trainings of the same heads on the six views of UCI Multiple Features — InfoNCE with an
anchor, UniAlign with its defaults and Wang–Isola align + uniform — with the same seed, data order and
steps, then one table of retrieval and geometry and a sentence read off the numbers; and a short
classification part: a fusion classifier on two views (``fac`` + ``mor``) with and without DAGR.

Example:
    >>> from mmgeom.studies.demo import DemoSettings, run_comparison  # doctest: +SKIP
    >>> summary = run_comparison("runs/demo", DemoSettings(steps=100))  # doctest: +SKIP
"""

from .experiment import run_comparison
from .report import DEMO_FILE, classification_rows, comparison_rows, reading
from .settings import DemoSettings, LossSpec

__all__ = [
    "DEMO_FILE",
    "DemoSettings",
    "LossSpec",
    "classification_rows",
    "comparison_rows",
    "reading",
    "run_comparison",
]

"""Reproduction studies on the bundled real data, run with ``mmgeom study NAME``.

Each study is a package ``mmgeom.studies.<name>`` (``settings``, ``experiment``, ``report``, ...) exposing
``run(*, out: Path, seeds: int | None, quick: bool) -> Path``: it trains and evaluates, writes its results
(a markdown file, JSON and plots) into ``out`` and returns the markdown file's path; and
``render_markdown(results_json) -> str``: the markdown as a pure function of its ``results.json``
(:func:`render_results`). Packages are imported only when their study runs. Shared pieces: ``stats`` (the
one significance rule), ``runner``, ``tables``, ``plots``, ``results_io``, ``feature_cache``, ``probe``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

#: Study name -> module; a study appears here once its module exists.
STUDIES: dict[str, str] = {
    "unialign": "mmgeom.studies.unialign",
    "dagr": "mmgeom.studies.dagr",
    "l2dir": "mmgeom.studies.l2dir",
    "generation": "mmgeom.studies.generation",
}


def list_studies() -> list[str]:
    """Names of the studies whose module is installed."""
    return sorted(n for n, mod in STUDIES.items() if importlib.util.find_spec(mod) is not None)


def run_study(name: str, *, out: Path, seeds: int | None = None, quick: bool = False) -> Path:
    """Run study ``name`` (``seeds=None``: the study's default) and return its results file."""
    if name not in list_studies():
        raise ValueError(f"study: unknown name {name!r}; available: {list_studies()}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds: expected >= 1, got {seeds}")
    module = importlib.import_module(STUDIES[name])
    result: Path = module.run(out=Path(out), seeds=seeds, quick=quick)
    return result


def render_results(name: str, results_json: str | Path) -> str:
    """The ``results.md`` text of study ``name`` regenerated from its ``results.json`` (no training)."""
    if name not in list_studies():
        raise ValueError(f"study: unknown name {name!r}; available: {list_studies()}")
    payload = json.loads(Path(results_json).read_text(encoding="utf-8"))
    text: str = importlib.import_module(STUDIES[name]).render_markdown(payload)
    return text

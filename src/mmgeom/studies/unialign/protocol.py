"""The UniAlign study's schedule: scaling, the validated grid, ablation and anchor sweep, then the report.

:func:`run_grid` runs every setting on a :class:`~.sources.StudyData` (the bundled mfeat views by default,
or a user's feature store, :func:`.sources.store_data`); :func:`run` is ``mmgeom study unialign`` on the
bundled data, :func:`run_store` the same protocol on a store (``mmgeom study unialign --store PATH``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from ..runner import study_command, torch_threads
from .experiment import _log, _setting
from .report import write_report
from .settings import (
    ABLATIONS,
    ANCHOR,
    ANCHOR_LOSSES,
    BASELINES,
    FULL,
    GRID,
    LOSSES,
    QUICK,
    SELECTION_KEY,
    VIEW_ORDER,
    Settings,
)
from .sources import StudyData, bundled_data, store_data


def run_grid(settings: Settings, data: StudyData | None = None) -> dict[str, Any]:
    """Train and evaluate every setting of the study on ``data`` (``None``: the bundled mfeat views,
    :func:`.sources.bundled_data`); returns the ``results.json`` payload (minus meta)."""
    data = bundled_data(settings) if data is None else data
    splits, anchor, order, probe = data.splits, data.anchor, data.view_order, data.probe
    top = settings.max_m
    runs: list[dict[str, Any]] = []
    scaling = []
    _log(f"unialign study: M in {list(settings.ms)}, {settings.seeds} seed(s), {settings.steps} steps")
    for label, factory in LOSSES.items():
        for m in settings.ms:
            curves = m == top
            scaling.append(
                _setting(runs, "scaling", label, m, anchor, splits[m], factory, settings, curves, probe=probe)
            )
    grid, selection, chosen = _grid_and_selection(runs, scaling, data, settings)
    full_default = next(e for e in scaling if e["loss"] == "UniAlign (anchor)" and e["M"] == top)
    ablation = [dict(full_default, loss=next(iter(ABLATIONS)))]
    for label, factory in list(ABLATIONS.items())[1:]:
        ablation.append(
            _setting(runs, "ablation", label, top, anchor, splits[top], factory, settings, probe=probe)
        )
    anchors = []
    for label in ANCHOR_LOSSES:
        for a in order[:top]:
            if a == anchor:
                anchors.append(next(e for e in scaling if e["loss"] == label and e["M"] == top))
            else:
                anchors.append(
                    _setting(
                        runs,
                        "anchors",
                        label,
                        top,
                        a,
                        splits[top],
                        LOSSES[label],
                        settings,
                        seeds=settings.anchor_seeds,
                        probe=probe,
                    )
                )
    for r in runs:
        if r["group"] != "scaling" or r["M"] != top:
            r.pop("curve", None)
    return {
        "scaling": scaling,
        "grid": grid,
        "selection": selection,
        "chosen": chosen,
        "ablation": ablation,
        "anchors": anchors,
        "runs": runs,
    }


def _val_score(
    runs: Sequence[Mapping[str, Any]], group: str, label: str, m: int, seeds: int, anchor: str
) -> list[float]:
    """The selection metric of the first ``seeds`` seeds of one setting (seed order)."""
    got = {
        int(r["seed"]): float(r["metrics"][SELECTION_KEY])
        for r in runs
        if r["group"] == group and r["loss"] == label and r["M"] == m and r["anchor"] == anchor
    }
    return [got[s] for s in range(seeds)]


def _grid_and_selection(
    runs: list[dict[str, Any]],
    scaling: Sequence[Mapping[str, Any]],
    data: StudyData,
    settings: Settings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The validation phase and the evaluation of its choices, at every M.

    1. Every :data:`GRID` configuration is trained with ``settings.val_seeds`` seeds and measured on the
       validation split only (the two library-default configurations are the scaling runs, whose first
       ``val_seeds`` seeds are used).
    2. Per M, the UniAlign configuration and the baseline (:data:`BASELINES`, scaling runs) with the
       highest mean validation :data:`SELECTION_KEY` over those seeds are chosen; the test split plays no
       part.
    3. A chosen UniAlign configuration that is not a scaling run is re-trained with ``settings.seeds``
       seeds and fully evaluated (group ``"chosen"``; its first seeds reproduce the grid runs' models).

    Returns:
        ``grid`` (per configuration and M: the validation scores), ``selection`` (per M: the chosen
        UniAlign and baseline labels, their groups and validation means) and ``chosen`` (aggregate
        entries of the re-trained choices).
    """
    nv = min(settings.val_seeds, settings.seeds)
    splits, anchor, probe = data.splits, data.anchor, data.probe
    in_scaling = {e["loss"] for e in scaling}
    grid: list[dict[str, Any]] = []
    selection: list[dict[str, Any]] = []
    chosen: list[dict[str, Any]] = []
    for m in settings.ms:
        scores: dict[str, tuple[str, list[float]]] = {}
        for point in GRID:
            label = point.label
            if label in in_scaling:
                scores[label] = ("scaling", _val_score(runs, "scaling", label, m, nv, anchor))
            else:
                _setting(
                    runs, "grid", label, m, anchor, splits[m], point.factory(), settings, seeds=nv, full=False
                )
                scores[label] = ("grid", _val_score(runs, "grid", label, m, nv, anchor))
            grid.append(
                {
                    "loss": label,
                    "M": m,
                    "alignment": point.alignment,
                    "reduction": point.reduction,
                    "align_weight": point.align_weight,
                    "lambda_vol": point.lambda_vol,
                    "val": scores[label][1],
                }
            )
        base = {b: _val_score(runs, "scaling", b, m, nv, anchor) for b in BASELINES}
        best_u = max(scores, key=lambda k: sum(scores[k][1]) / nv)
        best_b = max(base, key=lambda k: sum(base[k]) / nv)
        group = "scaling"
        if best_u not in in_scaling:
            point = next(p for p in GRID if p.label == best_u)
            chosen.append(
                _setting(runs, "chosen", best_u, m, anchor, splits[m], point.factory(), settings, probe=probe)
            )
            group = "chosen"
        selection.append(
            {
                "M": m,
                "unialign": best_u,
                "unialign_group": group,
                "unialign_val": sum(scores[best_u][1]) / nv,
                "baseline": best_b,
                "baseline_val": sum(base[best_b]) / nv,
                "val_seeds": nv,
                "key": SELECTION_KEY,
            }
        )
    for r in runs:  # the grid runs' seeds are in "grid"; keep the curves only where they are plotted
        if r["group"] == "grid":
            r.pop("curve", None)
    return grid, selection, chosen


def run(*, out: Path, seeds: int | None, quick: bool) -> Path:
    """Run the study (``quick``: 1 seed, M in {2, 3}, 20 steps) and write its results into ``out``.

    Full run: at most 370 trainings — 150 scaling, 140 validation-only grid runs (``val_seeds = 2``),
    up to 25 re-trained choices (5 seeds), 25 ablation, 30 anchor-sweep (3 seeds). One training at
    ``M = 6`` took 5.5 s with the full evaluation and 4.7 s validation-only (3.6 / 2.1 s at ``M = 2``),
    measured with ``train_one`` at the FULL settings on the shared 2-core machine (load about 3.5), so
    the run should take 25–40 min with one torch thread.

    Args:
        out: results folder (created).
        seeds: seeds per setting (``None``: 5, or 1 with ``quick``).
        quick: the tiny smoke-test version.

    Returns:
        The path of ``results.md``.
    """
    settings = _settings(quick, seeds)
    out = Path(out)
    meta, results = _timed_grid(settings, out, None, VIEW_ORDER, ANCHOR, quick, seeds)
    return write_report(out, {"command": study_command("unialign", out, seeds, quick), **meta, **results})


def _settings(quick: bool, seeds: int | None) -> Settings:
    settings = QUICK if quick else FULL
    return settings if seeds is None else replace(settings, seeds=int(seeds))


def _timed_grid(
    settings: Settings,
    out: Path,
    data: StudyData | None,
    view_order: Sequence[str],
    anchor: str,
    quick: bool,
    seeds: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`run_grid` with one torch thread into ``out`` (created), timed: ``(meta, results)``."""
    out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch_threads(1):
        results = run_grid(settings, data)
    meta = {
        "settings": asdict(settings),
        "view_order": list(view_order),
        "anchor": anchor,
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "torch": torch.__version__,
        "quick": quick,
        "seeds_arg": seeds,
    }
    return meta, results


def run_store(
    *,
    store: str | Path,
    out: Path,
    anchor: str | None = None,
    modalities: Sequence[str] | None = None,
    seeds: int | None = None,
    quick: bool = False,
    val_fraction: float = 0.1,
    max_rows: int | None = None,
) -> Path:
    """The study's protocol on a user's feature store (``mmgeom study unialign --store PATH``).

    Same schedule as :func:`run` — scaling over ``M = 2..`` (the chosen modalities added in order, the
    anchor first), the sensitivity grid chosen on validation rows, the ablation and the anchor sweep at the
    largest ``M`` — on the store's features (:func:`.sources.store_data`). The linear probes run only when
    every kept row has a label; the report says what was skipped and why.

    Args:
        store: the feature-store folder.
        out: results folder (created).
        anchor: the anchor modality (``None``: the first chosen one).
        modalities: the modalities to use, in order (``None``: all of the store's).
        seeds: seeds per setting (``None``: 5, or 1 with ``quick``).
        quick: the tiny smoke-test version (``M`` in {2, 3}, 20 steps, 1 seed).
        val_fraction: share of training rows held out as validation when the store has no ``val`` split.
        max_rows: cap on each part's rows (a seeded sample).

    Returns:
        The path of ``results.md``.

    Raises:
        ValueError: a bad request (names the store, the key and the expectation).
    """
    data, settings = store_data(
        store,
        _settings(quick, seeds),
        anchor=anchor,
        modalities=modalities,
        val_fraction=val_fraction,
        max_rows=max_rows,
    )
    out = Path(out)
    common, results = _timed_grid(settings, out, data, data.view_order, data.anchor, quick, seeds)
    split = data.splits[settings.ms[0]]
    command = study_command("unialign", out, seeds, quick)
    extra = [f"--store {Path(store)}"]
    if anchor is not None:
        extra.append(f"--anchor {anchor}")
    if modalities is not None:
        extra.append(f"--modalities {','.join(modalities)}")
    if max_rows is not None:
        extra.append(f"--max-rows {int(max_rows)}")
    if val_fraction != 0.1:
        extra.append(f"--val-fraction {val_fraction:g}")
    meta = {
        "command": command.replace(" --out ", " " + " ".join(extra) + " --out ", 1),
        "store": {
            "path": str(Path(store).resolve()),
            "rows": {p: len(split.part(p)) for p in ("train", "val", "test")},
            "val_source": data.val_source,
            "labelled": data.probe,
            "notes": data.notes,
        },
        **common,
    }
    return write_report(out, {**meta, **results})

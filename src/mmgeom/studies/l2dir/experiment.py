"""Running the L2Dir study: every method x seed on each available task, then the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...data import DataUnavailableError
from ..runner import study_command, torch_threads
from ..tables import aggregate
from .data import TaskData, load_fashion, load_mfeat
from .metrics import (
    evaluate,
)
from .model import train_model
from .report import (
    write_report,
)
from .settings import FULL, METHODS, QUICK, TASKS, StudySettings


def run_task(data: TaskData, settings: StudySettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Every method × seed on one task: per-run records, per-method aggregates, per-direction means."""
    runs: dict[str, list[dict[str, float]]] = {}
    directions: dict[str, dict[str, dict[str, float]]] = {}
    for method in METHODS:
        records, per_dir = [], []
        for seed in range(settings.seeds):
            model, seconds, last = train_model(data, method, seed, settings)
            ev = evaluate(model, data)
            records.append({"seed": float(seed), "train_seconds": seconds, "final_loss": last, **ev["mean"]})
            per_dir.append(ev["directions"])
            log(
                f"  {data.name} {method:<13} seed {seed}: mAP cosine {ev['mean']['cosine/map']:.4f}, "
                f"magnitude {ev['mean']['magnitude/map']:.4f} ({seconds:.1f} s)"
            )
        runs[method] = records
        if len(data.directions) > 1:
            directions[method] = {
                d: {k: float(np.mean([r[d][k] for r in per_dir])) for k in per_dir[0][d]} for d in per_dir[0]
            }
    return {
        "note": data.note,
        "runs": runs,
        "summary": {m: aggregate(recs) for m, recs in runs.items()},
        "directions": directions,
    }


def run(*, out: Path, seeds: int | None = None, quick: bool = False) -> Path:
    """Run the study into ``out`` (``seeds=None``: 5, or 1 with ``quick``); returns ``results.md``.

    Raises:
        DataUnavailableError: neither task's data is installed.
    """
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = replace(settings, seeds=int(seeds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = study_command("l2dir", out, seeds, quick)
    start = time.perf_counter()
    tasks: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}

    def log(msg: str) -> None:
        print(msg, flush=True)

    with torch_threads(1):
        for name, loader in (
            ("fashion", lambda: load_fashion(settings)),
            ("mfeat", lambda: load_mfeat(settings)),
        ):
            try:
                data = loader()
            except DataUnavailableError as err:
                skipped[name] = str(err)
                log(f"l2dir study: skipping {TASKS[name]}: {err}")
                continue
            t0 = time.perf_counter()
            log(f"l2dir study: {TASKS[name]}: {data.note}")
            tasks[name] = run_task(data, settings, log)
            tasks[name]["seconds"] = time.perf_counter() - t0
            tasks[name]["seeds"] = settings.seeds
    if not tasks:
        raise DataUnavailableError("l2dir study: no data available; " + " | ".join(skipped.values()))
    return write_report(out, tasks, skipped, settings, command, time.perf_counter() - start)

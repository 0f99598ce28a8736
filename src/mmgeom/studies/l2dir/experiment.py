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


def _train_eval(
    data: TaskData, method: str, seed: int, settings: StudySettings, point: dict[str, float]
) -> tuple[dict[str, float], dict[str, Any]]:
    """One training: the record (test metrics + ``val/...`` selection metrics) and the per-direction rows."""
    model, seconds, last = train_model(data, method, seed, settings, point)
    ev = evaluate(model, data)
    val = evaluate(model, data, "val")["mean"]
    record = {
        "seed": float(seed),
        "train_seconds": seconds,
        "final_loss": last,
        **ev["mean"],
        **{f"val/{k}": v for k, v in val.items()},
    }
    return record, ev["directions"]


def run_task(data: TaskData, settings: StudySettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Every method on one task, its hyper-parameters chosen on the validation rows.

    Per method: each grid point (:attr:`Method.grid`) is trained with the first ``val_seeds`` seeds; the
    point with the highest mean validation mAP under :attr:`Method.select_score` is kept (the test rows
    play no part) and trained with the remaining seeds. The reported runs are the kept point's
    ``settings.seeds`` seeds; every grid point's validation scores are stored under ``"grid"``.
    """
    runs: dict[str, list[dict[str, float]]] = {}
    grid: dict[str, list[dict[str, Any]]] = {}
    directions: dict[str, dict[str, dict[str, float]]] = {}
    nv = min(settings.val_seeds, settings.seeds)
    for method, spec in METHODS.items():
        trained: list[tuple[list[dict[str, float]], list[dict[str, Any]]]] = []
        for point in spec.grid:
            recs, dirs = [], []
            for seed in range(nv):
                rec, one = _train_eval(data, method, seed, settings, point)
                recs.append(rec)
                dirs.append(one)
            trained.append((recs, dirs))
        key = f"val/{spec.select_score}/map"
        scores = [float(np.mean([r[key] for r in recs])) for recs, _ in trained]
        best = int(np.argmax(scores))
        grid[method] = [
            {"params": dict(p), "val": [r[key] for r in recs], "chosen": i == best}
            for i, (p, (recs, _)) in enumerate(zip(spec.grid, trained, strict=True))
        ]
        records, per_dir = trained[best]
        for seed in range(nv, settings.seeds):
            rec, one = _train_eval(data, method, seed, settings, spec.grid[best])
            records.append(rec)
            per_dir.append(one)
        for r in records:
            log(
                f"  {data.name} {method:<15} {spec.grid[best]} seed {int(r['seed'])}: mAP cosine "
                f"{r['cosine/map']:.4f}, magnitude {r['magnitude/map']:.4f} ({r['train_seconds']:.1f} s)"
            )
        runs[method] = records
        if len(data.directions) > 1:
            directions[method] = {
                d: {k: float(np.mean([r[d][k] for r in per_dir])) for k in per_dir[0][d]} for d in per_dir[0]
            }
    return {
        "note": data.note,
        "runs": runs,
        "grid": grid,
        "summary": {m: aggregate(recs) for m, recs in runs.items()},
        "directions": directions,
    }


def run(*, out: Path, seeds: int | None = None, quick: bool = False) -> Path:
    """Run the study into ``out`` (``seeds=None``: 5, or 1 with ``quick``); returns ``results.md``.

    Full run: 45 trainings per task (12 grid points × 2 validation seeds + 7 methods × 3 more seeds).
    With 300 mfeat steps one training took 24 s (infonce) and 50 s (l2dir-infotn) on the shared 2-core
    machine (``train_model`` at the FULL settings, load about 4); at the 200 mfeat / 600 Fashion steps
    now used the whole run should take about 25–35 min.

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

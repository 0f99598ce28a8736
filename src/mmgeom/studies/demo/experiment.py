"""Run the comparison demo: three retrieval trainings with the same everything but the loss, then the
fusion classifier with and without DAGR; everything lands in one folder with a summary and a comparison
page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._io import write_json
from ...classify import ClassifyConfig, evaluate_classifier, train_classifier
from ...data import SplitDataset, load_dataset, split_and_standardize
from ...models import FusionClassifier, create_head
from ...report import ReportError
from ...report.compare import COMPARE_FILE, write_compare
from ...seeding import seed_everything
from ...train import ExperimentConfig, Trainer, demo_config
from ...train.config_load import config_from_dict
from ...train.rundir import resolve_run_dir
from ..runner import torch_threads
from .report import DEMO_FILE, classification_rows, comparison_rows, reading
from .settings import DemoSettings, LossSpec

__all__ = ["EVALS_PER_RUN", "demo_folder", "loss_config", "run_comparison"]

#: Evaluations of each run of the side-by-side demo (evenly spaced; the last one after the final step).
EVALS_PER_RUN = 3


def loss_config(
    settings: DemoSettings, spec: LossSpec | None, *, eval_before: bool = False
) -> ExperimentConfig:
    """The packaged demo config (steps and overrides applied) with ``spec``'s loss (``None``: its own).

    ``eval_before=False`` (the side-by-side demo) evaluates :data:`EVALS_PER_RUN` times during training
    instead of before it, for the curves of the comparison page; the single-loss demo (``True``) keeps
    the packaged config's before/after evaluations.
    """
    cfg = demo_config(settings.steps, settings.overrides)
    if spec is None:
        return cfg
    raw = cfg.model_dump(mode="json")
    raw["loss"] = {"name": spec.name, "kwargs": dict(spec.kwargs)}
    raw["run"] = {**raw.get("run", {}), "name": f"demo-{spec.folder}"}
    raw["train"] = {**raw["train"], "eval_before": eval_before}
    if not eval_before:
        # a few evaluations along the way, so the comparison page shows curves, not single points
        raw["train"]["eval_every"] = max(1, cfg.train.steps // EVALS_PER_RUN)
    return config_from_dict(raw, f"demo ({spec.label})")


def demo_folder(out: str | Path | None) -> Path:
    """The demo folder: ``out`` (new, empty, or an earlier demo folder) or a fresh ``runs/demo-<time>``.

    Raises:
        ValueError: ``out`` is a file or a non-empty folder that no demo wrote (nothing is overwritten
            that mmgeom did not create).
    """
    if out is None:
        return resolve_run_dir("demo")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (path / DEMO_FILE).is_file():
        raise ValueError(f"{path}: exists, is not empty and is not an mmgeom demo folder (no {DEMO_FILE})")
    path.mkdir(parents=True, exist_ok=True)
    return path


def classify_runs(settings: DemoSettings) -> dict[str, dict[str, float]]:
    """Joint fusion classifier on ``settings.classify_views`` without and with DAGR (test metrics)."""
    split = split_and_standardize(load_dataset("mfeat", list(settings.classify_views)), seed=0)
    out = {}
    with torch_threads(1):  # small matmuls: one thread is fastest and immune to oversubscription
        for name, dagr in (("without DAGR", None), ("with DAGR", dict(settings.dagr))):
            out[name] = _classify_once(split, settings, dagr)
    return out


def _classify_once(
    split: SplitDataset, settings: DemoSettings, dagr: dict[str, Any] | None
) -> dict[str, float]:
    """One seeded joint training (MLP heads of width 64, concatenation fusion) and its test metrics."""
    seed_everything(settings.seed)
    heads = {m: create_head("mlp", d, 64, hidden=128, modality=m) for m, d in split.train.view_dims.items()}
    model = FusionClassifier(heads, split.train.num_classes, "concat")
    cfg = ClassifyConfig(
        mode="joint", epochs=settings.classify_epochs, batch_size=128, dagr=dagr, seed=settings.seed
    )
    train_classifier(model, split.train, cfg)
    return evaluate_classifier(model, split.test, geometry_too=False)


def run_comparison(
    out: str | Path,
    settings: DemoSettings | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every loss of ``settings`` into ``out/<folder>``, classify, and summarise.

    Writes ``out/demo.json`` (the settings, every run's final evaluation, the table rows, the reading and
    the classification metrics) and ``out/compare.html`` (:func:`mmgeom.report.compare.write_compare`
    over the runs; needs matplotlib, skipped with a note in the summary without it).

    Args:
        out: the demo folder.
        settings: what to train (default :class:`DemoSettings`).
        progress: show the trainers' progress bars.
        log: called with a line before each part (e.g. ``print``).

    Returns:
        The summary written to ``demo.json``.
    """
    settings = settings or DemoSettings()
    say = log or (lambda _: None)
    root = Path(out)
    # marks the folder as a demo's from the start, so a rerun after an interruption may reuse it
    write_json(root / DEMO_FILE, {"status": "running"})
    runs: dict[str, dict[str, Any]] = {}
    for spec in settings.losses:
        cfg = loss_config(settings, spec)
        say(f"[{spec.label}] {cfg.loss.name} {cfg.loss.kwargs}, {cfg.train.steps} steps")
        result = Trainer(cfg, root / spec.folder, progress=progress).fit()
        runs[spec.folder] = {
            "label": spec.label,
            "loss": cfg.loss.name,
            "kwargs": dict(cfg.loss.kwargs),
            "run_dir": str(result.run_dir),
            "seconds": result.seconds,
            "final_eval": result.final_eval,
        }
    evals = {r["label"]: r["final_eval"] for r in runs.values()}
    rows = comparison_rows(evals)
    base = demo_config(settings.steps, settings.overrides)
    summary: dict[str, Any] = {
        "views": list(base.data.view_names()),
        "steps": next(iter(runs.values()))["final_eval"]["step"] if runs else 0,
        "seed": base.train.seed,
        "runs": runs,
        "table": rows,
        "reading": reading(rows),
    }
    if settings.classify:
        say(f"[classification] fusion of {' + '.join(settings.classify_views)}, with and without DAGR")
        metrics = classify_runs(settings)
        summary["classification"] = {
            "views": list(settings.classify_views),
            "epochs": settings.classify_epochs,
            "dagr": dict(settings.dagr),
            "metrics": metrics,
            "table": classification_rows(metrics, settings.classify_views),
        }
    try:
        summary["compare"] = str(
            write_compare([root / s.folder for s in settings.losses], root / COMPARE_FILE)
        )
    except ReportError as err:  # the page needs matplotlib (extra [plot]); the demo does not
        summary["compare"] = None
        summary["compare_error"] = str(err)
    write_json(root / DEMO_FILE, summary)
    return summary

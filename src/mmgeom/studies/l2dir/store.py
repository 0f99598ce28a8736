"""The L2Dir study's protocol on a user's feature store (``mmgeom study l2dir --store PATH``).

The bundled study has two tasks; on a store only features exist, so one task is built from the store:

* **directions** — with ``anchor``: the anchor's rows query each other modality's rows (the asymmetric
  reading: queries and documents come from different modalities, and the document keeps its magnitude);
  without: every ordered modality pair (the symmetric reading, as the mfeat control).
* **relevance** — ``"instance"`` (default: row ``i`` of the query modality must find row ``i`` of the
  document modality) or ``"label"`` (every document of the query's class; the store must have a label on
  every kept row).
* **training** — a head (and, for the L2Dir methods, a MagnitudeHead) per modality on the standardised
  store features, on paired rows (InfoNCE positives = the same row), with the mfeat sizes of the settings
  (``mfeat_steps``, ``mfeat_batch``); every hyper-parameter chosen on the validation rows exactly as in
  :func:`.experiment.run_task`.

What a store cannot give is skipped and said so in the report: the Fashion-MNIST text → image task needs
the held-out class phrasings (prompts encoded by MiniLM) and the bundled pixel store with its trainable
image encoder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ...data import Standardizer
from ..runner import study_command, torch_threads
from ..store_source import read_store_parts
from .data import TaskData
from .experiment import run_task
from .report import write_report
from .settings import FULL, QUICK, StudySettings

#: Why the Fashion task is not run on a store (the report's "skipped" line).
FASHION_SKIPPED = (
    "needs the held-out class phrasings (text prompts encoded by MiniLM) and the bundled Fashion-MNIST "
    "pixels with their trainable image encoder; a feature store gives neither, so this run has the store "
    "task below instead (with --anchor, its anchor → other directions are the asymmetric reading)"
)

RELEVANCE = ("instance", "label")


def store_task(
    path: str | Path,
    settings: StudySettings,
    *,
    anchor: str | None = None,
    modalities: Sequence[str] | None = None,
    relevance: str = "instance",
    val_fraction: float | None = None,
    max_rows: int | None = None,
) -> tuple[TaskData, list[str]]:
    """The store as a :class:`~.data.TaskData` (see the module docstring) and the report's notes.

    Args:
        path: the store folder.
        settings: the study's settings (``val_fraction`` default and the seeds).
        anchor: query modality of an asymmetric run (``None``: every ordered pair).
        modalities: modalities to use (``None``: all of the store's).
        relevance: ``"instance"`` or ``"label"``.
        val_fraction: share of training rows held out when the store has no ``val`` split (``None``:
            ``settings.val_fraction``).
        max_rows: cap per part (a seeded sample).

    Raises:
        ValueError: a bad request (names the store, the key and the expectation), e.g. ``relevance="label"``
            on a store whose rows lack labels.
    """
    if relevance not in RELEVANCE:
        raise ValueError(f"relevance: expected one of {list(RELEVANCE)}, got {relevance!r}")
    parts = read_store_parts(
        path,
        modalities=modalities,
        anchor=anchor,
        min_modalities=2,
        study="l2dir",
        val_fraction=settings.val_fraction if val_fraction is None else val_fraction,
        max_rows=max_rows,
        seed=0,
    )
    if relevance == "label" and not parts.labelled:
        raise ValueError(
            f"{parts.path}: labels: relevance 'label' needs a class label (>= 0) on every kept row; the "
            "store has rows with label -1 (use relevance 'instance')"
        )
    names = parts.modalities
    scaler = Standardizer.fit(parts.parts["train"])
    std = {p: scaler.transform(d) for p, d in parts.parts.items()}
    if anchor is None:
        directions = [(a, b) for a in names for b in names if a != b]
        reading = f"every ordered pair of {', '.join(names)} (symmetric)"
    else:
        directions = [(parts.anchor, b) for b in names[1:]]
        reading = f"{parts.anchor} → each of {', '.join(names[1:])} (asymmetric)"
    n = {p: len(d) for p, d in std.items()}
    note = (
        f"{n['test']} test rows, {reading}, {relevance} relevance (training: {n['train']} rows, "
        f"{len(names) * (len(names) - 1) // 2} modality pairs; validation: {n['val']} rows, "
        + ("the store's val split" if parts.val_source == "store" else "held out of the training rows")
        + ")"
    )
    data = TaskData(
        "store",
        train=dict(std["train"].views),
        train_labels=dict.fromkeys(names, std["train"].labels),
        test=dict(std["test"].views),
        test_labels=dict.fromkeys(names, std["test"].labels),
        directions=directions,
        note=note,
        val=dict(std["val"].views),
        val_labels=dict.fromkeys(names, std["val"].labels),
        relevance=relevance,
    )
    return data, list(parts.notes)


def run_store(
    *,
    store: str | Path,
    out: Path,
    anchor: str | None = None,
    modalities: Sequence[str] | None = None,
    relevance: str = "instance",
    seeds: int | None = None,
    quick: bool = False,
    val_fraction: float | None = None,
    max_rows: int | None = None,
) -> Path:
    """Run the L2Dir study's methods on a store into ``out`` (see :func:`store_task`); returns
    ``results.md``. ``quick``: 1 seed, 30 steps of batch 64."""
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = replace(settings, seeds=int(seeds))
    data, notes = store_task(
        store,
        settings,
        anchor=anchor,
        modalities=modalities,
        relevance=relevance,
        val_fraction=val_fraction,
        max_rows=max_rows,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [f"--store {Path(store)}"]
    if anchor is not None:
        extra.append(f"--anchor {anchor}")
    if modalities is not None:
        extra.append(f"--modalities {','.join(modalities)}")
    if relevance != "instance":
        extra.append(f"--relevance {relevance}")
    if max_rows is not None:
        extra.append(f"--max-rows {int(max_rows)}")
    if val_fraction is not None:
        extra.append(f"--val-fraction {val_fraction:g}")
    command = study_command("l2dir", out, seeds, quick).replace(
        " --out ", " " + " ".join(extra) + " --out ", 1
    )
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, flush=True)

    with torch_threads(1):
        log(f"l2dir study on {store}: {data.note}")
        task = run_task(data, settings, log)
    task["seconds"] = time.perf_counter() - start
    task["seeds"] = settings.seeds
    store_info = {"path": str(Path(store).resolve()), "relevance": relevance, "notes": notes}
    return write_report(
        out,
        {"store": task},
        {"fashion": FASHION_SKIPPED},
        settings,
        command,
        time.perf_counter() - start,
        store=store_info,
    )

"""The runs ``mmgeom compare`` reads: run directories (``metrics.jsonl`` + ``config.yaml``) and study folders.

A study folder (``mmgeom study NAME --out DIR``) holds ``results.json``; every run record in it becomes one
run: a record with a ``"metrics"`` mapping (and an optional ``"curve"`` of ``{"step", ...}`` points, as
the UniAlign study writes), or a flat record of numbers inside a ``"runs"`` entry (as the L2Dir study
writes). Study metric names are mapped onto the keys of a run's evaluation events (``hit@1`` ->
``retrieval/mean/hit@1``, ``gap`` -> ``geometry/gap/all``, ...) so both kinds plot and tabulate together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .runlog import ReportError, RunLog, read_run

#: More runs than this on one page need ``select`` filters (the plots stop being readable).
MAX_RUNS = 12

#: Study metric name -> run evaluation key (names not listed keep ``study/<name>``).
STUDY_KEYS = {
    "gap": "geometry/gap/all",
    "pos_cos": "geometry/pos_cos/all",
    "uniformity": "geometry/uniform/all",
    "erank": "geometry/erank/all",
    "zeta": "geometry/zeta",
    "chi": "geometry/chi",
    "holder": "geometry/holder",
}
_RETRIEVAL = ("hit@", "recall@", "ndcg@", "map", "mrr")


@dataclass
class CompareRun:
    """One compared run.

    Attributes:
        name: the label shown on the page.
        log: its events (a study record is turned into ``eval`` events).
        config: flattened config (``"a.b.c" -> value``) the differences are computed from.
    """

    name: str
    log: RunLog
    config: dict[str, Any] = field(default_factory=dict)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}`` (lists stay leaves)."""
    if not isinstance(obj, Mapping):
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(configs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The keys whose value is not the same in every config (absent counts as a value: ``None``)."""
    keys = sorted({k for c in configs for k in c})
    out = {}
    for k in keys:
        values = [c.get(k) for c in configs]
        if any(
            json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str)
            for v in values
        ):
            out[k] = values
    return out


def _study_key(name: str) -> str:
    if name.startswith(_RETRIEVAL):
        return f"retrieval/mean/{name}"
    return STUDY_KEYS.get(name, f"study/{name}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _study_records(
    obj: Any, path: tuple[str, ...], in_runs: bool
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """``(path, record)`` for every run record (see the module docstring) in a results JSON."""
    if isinstance(obj, Mapping):
        if isinstance(obj.get("metrics"), Mapping):
            yield path, dict(obj)
            return
        if in_runs and obj and all(not isinstance(v, (Mapping, list)) for v in obj.values()):
            numbers = {k: v for k, v in obj.items() if _is_number(v) and k != "seed"}
            rest = {k: v for k, v in obj.items() if k not in numbers}
            yield path, {**rest, "metrics": numbers}
            return
        for k, v in obj.items():
            if k not in ("settings", "command", "comparisons", "skipped"):
                yield from _study_records(v, (*path, str(k)), in_runs or k == "runs")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _study_records(v, (*path, str(i)), in_runs)


def _matches(record: Mapping[str, Any], select: Mapping[str, str]) -> bool:
    for key, want in select.items():
        have = record.get(key)
        if have is None:
            return False
        if str(have) != want and not (_is_number(have) and _float(want) == float(have)):
            return False
    return True


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_study(folder: Path, select: Mapping[str, str]) -> list[CompareRun]:
    """The run records of a study folder's ``results.json`` that match every ``select`` filter."""
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    settings = results.get("settings", {}) if isinstance(results, Mapping) else {}
    runs = []
    for path, record in _study_records(results, (), False):
        descriptors = {
            k: v
            for k, v in record.items()
            if k not in ("metrics", "curve") and not isinstance(v, (Mapping, list))
        }
        descriptors = {k: v for k, v in descriptors.items() if isinstance(v, str) or k in ("seed", "M", "m")}
        context = [p for p in path if not p.isdigit() and p != "runs"]
        full = {**{f"path{i}": p for i, p in enumerate(context)}, **descriptors}
        if not _matches(full, select):
            continue
        steps = int(settings.get("steps", 0)) if isinstance(settings, Mapping) else 0
        log = RunLog(folder)
        for point in record.get("curve") or []:
            if isinstance(point, Mapping) and _is_number(point.get("step")):
                ev = {_study_key(k): v for k, v in point.items() if k != "step" and _is_number(v)}
                log.evals.append({"event": "eval", "step": int(point["step"]), **ev})
        last = {_study_key(k): v for k, v in record["metrics"].items() if _is_number(v)}
        final_step = max(steps, log.evals[-1]["step"] if log.evals else 0)
        if log.evals and log.evals[-1]["step"] == final_step:
            log.evals[-1].update(last)
        else:
            log.evals.append({"event": "eval", "step": final_step, **last})
        label = " · ".join(
            [*context, *(f"{k}={v}" if k in ("seed", "M", "m") else str(v) for k, v in descriptors.items())]
        )
        config = {"study": folder.name, **flatten(settings, "settings"), **full}
        runs.append(CompareRun(f"{folder.name}: {label}", log, config))
    return runs


def load_runs(paths: Sequence[str | Path], select: Mapping[str, str] | None = None) -> list[CompareRun]:
    """Every run of ``paths`` (run directories and study folders), in order.

    Args:
        paths: run directories (``metrics.jsonl``) or study folders (``results.json``).
        select: ``key -> value`` filters of a study's records (their descriptors such as ``group``,
            ``loss``, ``M``, ``seed``, and ``path0``, ``path1``... the keys leading to them).

    Raises:
        ReportError: a path that is neither, fewer than two runs, or more than :data:`MAX_RUNS`.
    """
    select = dict(select or {})
    runs: list[CompareRun] = []
    for p in map(Path, paths):
        if (p / "metrics.jsonl").is_file():
            log = read_run(p)
            try:
                config = flatten(yaml.safe_load(log.config_text) or {})
            except yaml.YAMLError as err:
                raise ReportError(f"{p / 'config.yaml'}: not readable YAML ({err})") from None
            runs.append(CompareRun(p.name, log, config))
        elif (p / "results.json").is_file():
            found = read_study(p, select)
            if not found:
                raise ReportError(f"{p / 'results.json'}: no run records match select={select}")
            runs.extend(found)
        else:
            raise ReportError(
                f"{p}: neither a run directory (metrics.jsonl) nor a study folder (results.json)"
            )
    if len(runs) < 2:
        raise ReportError(f"runs: expected at least two runs to compare, got {len(runs)}")
    if len(runs) > MAX_RUNS:
        raise ReportError(
            f"runs: {len(runs)} runs on one page is more than {MAX_RUNS}; narrow a study folder with "
            "--select KEY=VALUE (e.g. --select group=scaling --select M=6 --select seed=0)"
        )
    seen: dict[str, int] = {}
    for r in runs:  # two runs with one folder name (a/run, b/run) get distinct labels
        seen[r.name] = seen.get(r.name, 0) + 1
        if seen[r.name] > 1:
            r.name = f"{r.name} ({seen[r.name]})"
    return runs

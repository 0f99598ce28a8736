"""The UniAlign study's validated comparison: the sensitivity grid and best-validated vs best-validated.

Every choice here is made on the validation split (:data:`~.settings.SELECTION_KEY`, mean over the grid's
``val_seeds`` seeds) by :mod:`.experiment`; this module only reports it, and tests the chosen pair on the
test split with the seed-paired t-test of :mod:`mmgeom.studies.stats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..stats import paired_difference
from ..tables import format_mean_std, markdown_table
from .settings import BASELINES, GRID

#: Test-split metrics of the validated comparison: key -> title.
VALIDATED_METRICS = (
    ("hit@1", "hit@1 (anchor)"),
    ("all/hit@1", "hit@1 (all pairs)"),
    ("probe/mean", "probe (mean)"),
)


def compare(a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> tuple[float, float, str]:
    """Seed-paired ``a - b`` on ``key``: mean difference, its standard error and the t-test verdict.

    Entries carry ``"seed_metrics"`` (:func:`.answers.with_seed_metrics`); only the seeds both have are
    paired. The verdict (``"higher"``, ``"lower"`` or ``"tie"``) is
    :func:`mmgeom.studies.stats.paired_difference`'s (two-sided paired t-test, p < 0.05; one seed: tie).

    Raises:
        ValueError: the two entries share no seed.
    """
    seeds = sorted(set(a["seed_metrics"]) & set(b["seed_metrics"]))
    if not seeds:
        raise ValueError(f"compare: no common seeds for {a['loss']!r} and {b['loss']!r}")
    d = paired_difference(
        [a["seed_metrics"][s][key] for s in seeds], [b["seed_metrics"][s][key] for s in seeds]
    )
    return d.mean, d.se, d.verdict


def _cell(entry: Mapping[str, Any], key: str) -> str:
    s = entry["metrics"][key]
    return format_mean_std(s["mean"], s["std"])


def _val_cell(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return format_mean_std(mean, sd)


def grid_table(payload: Mapping[str, Any]) -> str:
    """Markdown: validation score of every grid configuration (rows) at every M (columns), the chosen one
    in bold, then the baselines' validation scores (from the first ``val_seeds`` seeds of their runs)."""
    ms = list(payload["settings"]["ms"])
    sel = {s["M"]: s for s in payload["selection"]}
    val = {(g["loss"], g["M"]): g["val"] for g in payload["grid"]}
    nv = int(next(iter(sel.values()))["val_seeds"])
    rows = []
    for point in GRID:
        cells = []
        for m in ms:
            text = _val_cell(val[(point.label, m)])
            cells.append(f"**{text}**" if sel[m]["unialign"] == point.label else text)
        default = " = mean, w = 1, vol 0 (library default)" if "; " not in point.label else ""
        rows.append([point.label + default, *cells])
    by_run: dict[tuple[str, int], dict[int, float]] = {}
    for r in payload["runs"]:
        if r["group"] == "scaling" and r["loss"] in BASELINES and r["anchor"] == payload["anchor"]:
            by_run.setdefault((r["loss"], r["M"]), {})[int(r["seed"])] = r["metrics"][sel[ms[0]]["key"]]
    for b in BASELINES:
        cells = []
        for m in ms:
            text = _val_cell([by_run[(b, m)][s] for s in range(nv)])
            cells.append(f"**{text}**" if sel[m]["baseline"] == b else text)
        rows.append([f"baseline: {b}", *cells])
    return markdown_table(["configuration", *[f"M = {m}" for m in ms]], rows)


def answer_validated(
    payload: Mapping[str, Any],
    scale: Mapping[tuple[str, int], Any],
    ms: list[int],
    metrics: Sequence[tuple[str, str]] = VALIDATED_METRICS,
) -> list[str]:
    """Answer 2: at every M, the best validated UniAlign vs the best validated baseline on the test split.

    ``payload`` comes from :func:`.answers.with_seed_metrics`; ``scale`` maps ``(loss, M)`` to its scaling
    entry; ``metrics``: the compared test metrics (key, title).
    """
    chosen = {(e["loss"], e["M"]): e for e in payload["chosen"]}
    sel = payload["selection"]
    nv, key = int(sel[0]["val_seeds"]), sel[0]["key"]
    rows, verdicts = [], []
    for s in sel:
        m = s["M"]
        u = chosen.get((s["unialign"], m)) or scale[(s["unialign"], m)]
        b = scale[(s["baseline"], m)]
        for metric, title in metrics:
            diff, se, verdict = compare(u, b, metric)
            verdicts.append(verdict)
            rows.append(
                [
                    m,
                    title,
                    f"{s['unialign']} (val {s['unialign_val']:.3f}): {_cell(u, metric)}",
                    f"{s['baseline']} (val {s['baseline_val']:.3f}): {_cell(b, metric)}",
                    f"{diff:+.3f} ± {se:.3f}",
                    {"higher": "UniAlign better", "lower": "baseline better", "tie": "tie"}[verdict],
                ]
            )
    n_test = len(next(iter(scale.values()))["seed_metrics"])
    header = [
        "M",
        "test metric",
        "validated UniAlign",
        "validated baseline",
        "Δ ± s.e.",
        "verdict (paired t-test)",
    ]
    return [
        "### 2. Does the best validated UniAlign beat the best validated baseline?",
        "",
        f"Protocol: at every M the {len(GRID)} UniAlign configurations of the sensitivity grid (below) were "
        f"trained with {nv} seed(s) each and the one with the highest mean **validation-split** "
        f"{key.removeprefix('val/')} (anchor) was chosen; "
        f"the baseline was chosen the same way among {', '.join(BASELINES)} (library defaults). The test "
        "split played no part in either choice. Each chosen configuration was then trained with "
        f"{n_test} seeds (the first {nv} are the selection runs' seeds) and the two are compared on the test "
        "split, seed-paired. Each row names the configuration it used and its validation score.",
        "",
        markdown_table(header, rows, "rllllc"),
        "",
        f"The validated UniAlign is better than the validated baseline in {verdicts.count('higher')}, worse "
        f"in {verdicts.count('lower')} and tied in {verdicts.count('tie')} of the {len(rows)} (M, metric) "
        "cells above.",
    ]

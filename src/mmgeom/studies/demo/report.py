"""The demo's tables and the sentence read off them, from the runs' final evaluation events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...report.tables import diagnostic_summary

__all__ = ["DEMO_FILE", "ROWS", "classification_rows", "comparison_rows", "reading"]

#: The summary written into the demo folder.
DEMO_FILE = "demo.json"

#: Table rows: (label, where the value comes from, which direction is better, meaning).
#: A source starting with ``mean:`` is a :func:`mmgeom.report.tables.diagnostic_summary` mean; otherwise
#: it is a key of the evaluation event.
ROWS: tuple[tuple[str, str, str | None, str], ...] = (
    ("hit@1", "retrieval/mean/hit@1", "higher", "mean over view pairs, both directions"),
    ("mAP", "retrieval/mean/map", "higher", "mean over view pairs, both directions"),
    ("modality gap", "mean:modality gap", "lower", "pairs; ||mean z_m - mean z_n||"),
    ("positive cosine", "mean:positive cosine", "higher", "pairs; cos(z_m,i, z_n,i)"),
    ("uniformity", "mean:uniformity", "lower", "views; lower = more spread"),
    ("effective rank", "mean:effective rank", "higher", "views; at most the dimension"),
    ("zeta", "geometry/zeta", "lower", "share of the alignment pull cancelled by the push"),
    ("chi", "geometry/chi", "lower", "dispersion of the non-anchor views around the anchor"),
    ("Hölder divergence", "geometry/holder", "lower", "distance between the views' distributions"),
)


def _value(event: Mapping[str, Any], source: str) -> float | None:
    if source.startswith("mean:"):
        return diagnostic_summary(event).get(source.removeprefix("mean:"))
    value = event.get(source)
    return float(value) if isinstance(value, (int, float)) else None


def comparison_rows(evals: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per :data:`ROWS` entry: ``{"metric", "better", "meaning", "values": {label: value}}``.

    Args:
        evals: column label (e.g. ``"UniAlign"``) -> that run's final evaluation event.
    """
    rows = []
    for label, source, better, meaning in ROWS:
        values = {name: _value(event, source) for name, event in evals.items()}
        rows.append({"metric": label, "better": better, "meaning": meaning, "values": values})
    return rows


def _best(row: Mapping[str, Any]) -> tuple[str, float] | None:
    known = {k: v for k, v in row["values"].items() if v is not None}
    if not known or row["better"] is None:
        return None
    pick = max if row["better"] == "higher" else min
    name = pick(known, key=lambda k: known[k])
    return name, known[name]


def reading(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from the numbers: who retrieves best, who spreads the views most, least conflict."""
    by = {r["metric"]: r for r in rows}
    parts = []
    if (hit := _best(by["hit@1"])) is not None:
        others = ", ".join(
            f"{v:.3f} {k}" for k, v in by["hit@1"]["values"].items() if k != hit[0] and v is not None
        )
        parts.append(f"{hit[0]} retrieves best here (hit@1 {hit[1]:.3f} vs {others})")
    if (spread := _best(by["uniformity"])) is not None:
        parts.append(f"{spread[0]} spreads the views most (uniformity {spread[1]:.3f})")
    if (calm := _best(by["zeta"])) is not None:
        parts.append(f"the alignment-uniformity conflict is lowest with {calm[0]} (zeta {calm[1]:.3f})")
    return "; ".join(parts) + "." if parts else ""


def classification_rows(
    metrics: Mapping[str, Mapping[str, float]], views: Sequence[str]
) -> list[dict[str, Any]]:
    """Fused and unimodal (zero-padded) test accuracy of each classification run, one dict per row."""
    rows = [
        {
            "metric": "fused accuracy",
            "better": "higher",
            "values": {k: m["fused"] for k, m in metrics.items()},
        }
    ]
    for v in views:
        rows.append(
            {
                "metric": f"unimodal {v} (other view zero-padded)",
                "better": "higher",
                "values": {k: m[f"unimodal/{v}"] for k, m in metrics.items()},
            }
        )
    return rows

"""Mean ± std over seeds and the markdown tables of the results files.

* :func:`mean_std`, :func:`aggregate`, :func:`format_mean_std` — mean ± sample std (``ddof=1``) over seeds;
* :func:`markdown_table` — a GitHub markdown table from a header and rows; :func:`pivot_table` (one
  metric, rows x columns, e.g. loss x M) and :func:`metric_table` (one row per setting, one column per
  metric) lay out ``mean ± std`` cells of aggregated settings.

Example:
    >>> agg = aggregate([{"acc": 0.9}, {"acc": 0.92}])
    >>> format_mean_std(agg["acc"]["mean"], agg["acc"]["std"])
    '0.910 ± 0.014'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["aggregate", "format_mean_std", "markdown_table", "mean_std", "metric_table", "pivot_table"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; ``0.0`` for a single value) of ``values``.

    Non-finite values propagate (an honest NaN rather than a silently dropped run).
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: expected at least one value, got none")
    n = len(vals)
    mean = math.fsum(vals) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    return mean, math.sqrt(var) if math.isfinite(var) else float("nan")


def aggregate(records: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per key, ``{"mean", "std", "n"}`` over the records that have it (one record per seed).

    Keys keep their first-seen order; ``std`` is the sample std (``ddof=1``), see :func:`mean_std`.
    """
    values: dict[str, list[float]] = {}
    for rec in records:
        for k, v in rec.items():
            values.setdefault(k, []).append(float(v))
    out = {}
    for k, vals in values.items():
        m, s = mean_std(vals)
        out[k] = {"mean": m, "std": s, "n": float(len(vals))}
    return out


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.912 ± 0.004"`` with ``digits`` decimals (``"nan"`` for non-finite means)."""
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; cells are ``str()``-ed, ``|`` escaped.

    Args:
        header: column titles.
        rows: one sequence of cells per row, each as long as ``header``.
        align: one character per column, ``l``/``r``/``c`` (default: first column left, others right).
    """
    ncol = len(header)
    if align is None:
        align = "l" + "r" * (ncol - 1)
    if len(align) != ncol or set(align) - set("lrc"):
        raise ValueError(f"align: expected {ncol} characters from 'lrc', got {align!r}")
    marks = {"l": ":--", "r": "--:", "c": ":-:"}

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(header), "|" + "|".join(marks[a] for a in align) + "|"]
    for r in rows:
        if len(r) != ncol:
            raise ValueError(f"row {list(r)!r}: expected {ncol} cells, got {len(r)}")
        out.append(line(r))
    return "\n".join(out)


# Entries below are dicts with a ``"metrics"`` entry as returned by :func:`aggregate`.


def _cell(entry: Mapping[str, Any], metric: str, digits: int) -> str:
    stats = entry["metrics"].get(metric)
    if stats is None:
        return "–"
    return format_mean_std(stats["mean"], stats["std"], digits)


def pivot_table(
    entries: Sequence[Mapping[str, Any]],
    row: str,
    col: str,
    metric: str,
    *,
    digits: int = 3,
    corner: str = "",
    col_format: str = "{}",
) -> str:
    """Markdown table of one metric's ``mean ± std``, rows ``entry[row]`` x columns ``entry[col]``.

    Args:
        entries: dicts holding ``entry[row]``, ``entry[col]`` and ``entry["metrics"][metric]`` =
            ``{"mean", "std", ...}`` (the output of :func:`aggregate`).
        row: key whose values label the rows (first-seen order).
        col: key whose values label the columns (first-seen order).
        metric: the metric shown.
        digits: decimals.
        corner: title of the first column.
        col_format: format of the column titles (``"M = {}"``).

    Missing combinations show ``–``.
    """
    rows = list(dict.fromkeys(e[row] for e in entries))
    cols = list(dict.fromkeys(e[col] for e in entries))
    by_key = {(e[row], e[col]): e for e in entries}
    body = []
    for r in rows:
        cells = [_cell(by_key[(r, c)], metric, digits) if (r, c) in by_key else "–" for c in cols]
        body.append([r, *cells])
    return markdown_table([corner, *[col_format.format(c) for c in cols]], body)


def metric_table(
    entries: Sequence[Mapping[str, Any]],
    label: str,
    metrics: Sequence[tuple[str, str]],
    *,
    digits: int = 3,
    corner: str = "",
) -> str:
    """Markdown table: one row per entry (titled ``entry[label]``), one ``mean ± std`` column per metric.

    Args:
        entries: dicts with ``entry[label]`` and ``entry["metrics"]`` (see :func:`pivot_table`).
        label: key of the row titles.
        metrics: ``(metric key, column title)`` pairs.
        digits: decimals.
        corner: title of the first column.
    """
    body = [[e[label], *[_cell(e, k, digits) for k, _ in metrics]] for e in entries]
    return markdown_table([corner, *[title for _, title in metrics]], body)

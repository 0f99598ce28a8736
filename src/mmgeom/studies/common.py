"""Shared pieces of the reproduction studies: threads, seed loop, lean training loop, linear probe,
mean ± std aggregation, markdown tables, plots and JSON output.

The API is deliberately small and stable (studies in other modules build on it; new helpers are added,
existing signatures do not change):

* :func:`torch_threads` — context manager: set torch's intra-op threads, restore afterwards;
* :func:`run_seeds` — ``[fn(seed) for seed in seeds]`` with :func:`mmgeom.train.seed_everything` first;
* :func:`train_loop` — AdamW + warm-up/cosine over seeded mini-batches of row indices, with a callback
  every N steps (far cheaper than the full :class:`~mmgeom.train.Trainer` for hundreds of small runs);
* :func:`fit_linear_probe` / :class:`LinearProbe` / :func:`linear_probe_accuracy` — multinomial logistic
  regression (L2 on the weights) fitted by L-BFGS in float64 on frozen embeddings;
* :func:`mean_std`, :func:`aggregate`, :func:`format_mean_std` — mean ± sample std (``ddof=1``) over seeds;
* :func:`markdown_table` — a GitHub markdown table from a header and rows; :func:`pivot_table` (one
  metric, rows x columns, e.g. loss x M) and :func:`metric_table` (one row per setting, one column per
  metric) lay out ``mean ± std`` cells of aggregated settings;
* :class:`PlotPanel`, :func:`line_plots` — error-bar line plots (mean ± std) saved as PNG with Agg,
  without touching pyplot's global state;
* :func:`write_json` — JSON with non-finite floats as ``null`` and floats rounded (small files);
* :func:`study_command` — the exact ``mmgeom study`` command line that reproduces a results folder.

Example:
    >>> from mmgeom.studies.common import aggregate, format_mean_std
    >>> agg = aggregate([{"acc": 0.9}, {"acc": 0.92}])
    >>> format_mean_std(agg["acc"]["mean"], agg["acc"]["std"])
    '0.910 ± 0.014'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..data.features import FeatureStore, FeatureStoreError
from ..seeding import seed_everything
from ..train.lean import train_loop

T = TypeVar("T")

__all__ = [
    "LinearProbe",
    "PlotPanel",
    "aggregate",
    "cache_dir",
    "cached_store",
    "fit_linear_probe",
    "format_mean_std",
    "line_plots",
    "linear_probe_accuracy",
    "markdown_table",
    "mean_std",
    "metric_table",
    "pivot_table",
    "run_seeds",
    "study_command",
    "torch_threads",
    "train_loop",
    "write_json",
]


# --------------------------------------------------------------------------------------- running


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; the previous count is restored on exit.

    Small studies on a shared CPU run fastest (and most predictably) on one thread.

    Args:
        n: intra-op threads, ``>= 1``.
    """
    if int(n) < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_seeds(fn: Callable[[int], T], seeds: int | Iterable[int]) -> list[T]:
    """Call ``fn(seed)`` for each seed (``seeds=N`` means ``0..N-1``), seeding torch/random first.

    Args:
        fn: one run of a setting; receives the seed.
        seeds: a count ``N >= 1`` or explicit seeds.

    Returns:
        The results in seed order.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds: expected >= 1, got {seeds}")
        seeds = range(seeds)
    out = []
    for s in seeds:
        seed_everything(int(s))
        out.append(fn(int(s)))
    return out


# ----------------------------------------------------------------------------------- linear probe


@dataclass(frozen=True)
class LinearProbe:
    """A fitted multinomial logistic regression on (standardised) features.

    ``logits(x) = ((x - mean) / scale) @ weight.T + bias``.

    Attributes:
        weight: ``(C, D)`` float64.
        bias: ``(C,)`` float64.
        mean: ``(D,)`` feature means of the training rows (zeros without standardisation).
        scale: ``(D,)`` feature standard deviations of the training rows (ones without standardisation).
        iterations: L-BFGS iterations used.
    """

    weight: Tensor
    bias: Tensor
    mean: Tensor
    scale: Tensor
    iterations: int = 0

    def logits(self, x: Tensor) -> Tensor:
        """``(N, D) -> (N, C)`` float64 logits."""
        if x.dim() != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x: expected shape (N, {self.weight.shape[1]}), got {tuple(x.shape)}")
        return ((x.double() - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict(self, x: Tensor) -> Tensor:
        """``(N,)`` predicted class ids."""
        return self.logits(x).argmax(dim=1)

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        """Fraction of rows of ``x`` whose predicted class equals ``y``."""
        if y.shape != (x.shape[0],):
            raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
        return float((self.predict(x) == y.to(torch.long)).double().mean())


def fit_linear_probe(
    x: Tensor,
    y: Tensor,
    *,
    num_classes: int | None = None,
    l2: float = 1e-3,
    standardize: bool = True,
    max_iter: int = 500,
    tolerance: float = 1e-10,
) -> LinearProbe:
    """Fit multinomial logistic regression ``min_W,b mean_i CE(W x_i + b, y_i) + (l2 / 2) ||W||_F^2``.

    Full-batch L-BFGS (strong-Wolfe line search) in float64 from zero weights: deterministic, and with
    ``l2 > 0`` the objective is strictly convex in ``W`` so the fitted probabilities are unique. The bias
    is not penalised. Features are standardised with the training rows' mean and std first (constant
    features are left unscaled) unless ``standardize=False``.

    Args:
        x: ``(N, D)`` training features (e.g. frozen embeddings).
        y: ``(N,)`` integer class ids in ``[0, num_classes)``.
        num_classes: ``C`` (default ``max(y) + 1``).
        l2: weight penalty ``>= 0``.
        standardize: standardise features with training statistics.
        max_iter: L-BFGS iteration cap.
        tolerance: gradient / step tolerance of L-BFGS.

    Returns:
        The fitted :class:`LinearProbe`.
    """
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x: expected a non-empty (N, D) tensor, got {tuple(x.shape)}")
    if y.shape != (x.shape[0],) or y.is_floating_point():
        raise ValueError(f"y: expected ({x.shape[0]},) integer class ids, got {tuple(y.shape)} {y.dtype}")
    if l2 < 0 or not math.isfinite(l2):
        raise ValueError(f"l2: expected a finite value >= 0, got {l2!r}")
    xd = x.detach().double().cpu()
    yl = y.detach().long().cpu()
    c = int(num_classes) if num_classes is not None else int(yl.max()) + 1
    if int(yl.min()) < 0 or int(yl.max()) >= c:
        raise ValueError(f"y: class ids must lie in [0, {c}), got [{int(yl.min())}, {int(yl.max())}]")
    d = xd.shape[1]
    if standardize:
        mean = xd.mean(dim=0)
        scale = xd.std(dim=0, unbiased=False)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    else:
        mean, scale = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    xs = (xd - mean) / scale
    weight = torch.zeros(c, d, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=int(max_iter),
        tolerance_grad=tolerance,
        tolerance_change=tolerance * 1e-2,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight.T + bias, yl) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    iterations = int(opt.state[weight].get("n_iter", 0))
    return LinearProbe(weight.detach(), bias.detach(), mean, scale, iterations)


def linear_probe_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, **kwargs: Any
) -> float:
    """Test accuracy of :func:`fit_linear_probe` fitted on the training rows (``kwargs`` passed on)."""
    num_classes = int(max(int(train_y.max()), int(test_y.max()))) + 1
    kwargs.setdefault("num_classes", num_classes)
    return fit_linear_probe(train_x, train_y, **kwargs).accuracy(test_x, test_y)


# ------------------------------------------------------------------------------------ aggregation


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


# ---------------------------------------------------------------------------------------- output


@dataclass
class PlotPanel:
    """One subplot of :func:`line_plots`.

    Attributes:
        x: x positions shared by every series.
        series: label -> per-x list of per-seed values (mean ± std error bars are drawn), or label ->
            per-x values (one value each: a plain line).
        xlabel: x-axis title.
        ylabel: y-axis title.
        title: panel title.
        logy: logarithmic y axis.
        hline: draw a dashed horizontal reference line at this y (e.g. ``1.0`` for zeta).
    """

    x: Sequence[float]
    series: Mapping[str, Sequence[Any]]
    xlabel: str = ""
    ylabel: str = ""
    title: str = ""
    logy: bool = False
    hline: float | None = None
    xticks: Sequence[float] | None = field(default=None)


def _mean_and_err(points: Sequence[Any]) -> tuple[list[float], list[float]]:
    means, errs = [], []
    for p in points:
        if isinstance(p, (int, float)):
            means.append(float(p))
            errs.append(0.0)
        else:
            m, s = mean_std(list(p))
            means.append(m)
            errs.append(s)
    return means, errs


def line_plots(
    path: str | Path, panels: Sequence[PlotPanel], *, ncols: int | None = None, width: float = 4.2
) -> Path:
    """Save error-bar line plots (one subplot per panel, legend on each) as a PNG, Agg backend.

    Args:
        path: output ``.png``.
        panels: the subplots.
        ncols: subplots per row (default: all in one row).
        width: inches per subplot (height is ``0.8 * width``).

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("panels: expected at least one panel")
    ncols = len(panels) if ncols is None else int(ncols)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(width * ncols, 0.8 * width * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[i]
        for label, points in p.series.items():
            if len(points) != len(p.x):
                raise ValueError(f"series {label!r}: expected {len(p.x)} points, got {len(points)}")
            means, errs = _mean_and_err(points)
            ax.errorbar(
                list(p.x), means, yerr=errs if any(errs) else None, marker="o", ms=3, capsize=2, label=label
            )
        if p.hline is not None:
            ax.axhline(p.hline, color="grey", lw=0.8, ls="--")
        if p.logy:
            ax.set_yscale("log")
        if p.xticks is not None:
            ax.set_xticks(list(p.xticks))
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        ax.set_title(p.title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


def _clean(obj: Any, digits: int) -> Any:
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, Mapping):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, Tensor):
        return _clean(obj.tolist(), digits)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: Any, digits: int = 6) -> Path:
    """Write ``data`` as indented JSON: floats to ``digits`` significant digits, NaN/Inf as ``null``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(data, digits), indent=1) + "\n", encoding="utf-8")
    return out


def study_command(name: str, out: str | Path, seeds: int | None = None, quick: bool = False) -> str:
    """The ``mmgeom study`` command line that reproduces a results folder."""
    parts = ["mmgeom", "study", name]
    if quick:
        parts.append("--quick")
    if seeds is not None:
        parts += ["--seeds", str(int(seeds))]
    parts += ["--out", str(out)]
    return " ".join(parts)


# ------------------------------------------------------------------------- tables of aggregates
# (added after the first commit; entries are dicts with a ``"metrics"`` entry as returned by aggregate)


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


# ------------------------------------------------------------------------------------ feature cache


def cache_dir() -> Path:
    """Where studies cache feature stores: ``$MMGEOM_CACHE_DIR`` or ``~/.cache/mmgeom/features``."""
    root = os.environ.get("MMGEOM_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "mmgeom" / "features"


def cached_store(
    path: Path, build: Callable[[], object], check: Callable[[FeatureStore], bool]
) -> FeatureStore:
    """The feature store at ``path`` if it exists and passes ``check``; else ``build()`` it, then open it."""
    try:
        store = FeatureStore.open(path)
        if check(store):
            return store
    except FeatureStoreError:
        pass
    build()
    return FeatureStore.open(path)

"""The report of the DAGR study (``mmgeom study dagr``): ``results.md``, ``results.json`` and curve PNGs
written from the runs :mod:`mmgeom.studies.dagr` recorded, with the study's three questions answered
from paired per-seed differences.

:func:`render` rewrites the report of a finished study from its ``results.json`` without training.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from ..plots import line_plots
from ..results_io import read_json, write_json
from ..tables import markdown_table
from .summaries import (
    cell,
    clear_sign,
    curve_panel,
    describe_delta,
    metric_table,
    modality_table,
    paired_delta,
    summarize,
)

_MODE_TITLES = {
    "joint": "joint CE",
    "dgl": "DGL (shared head)",
    "dgl-aux": "DGL with auxiliary heads",
    "ogm_ge": "OGM-GE-style",
    "warm/joint": "joint CE, InfoNCE warm start",
}
_MODES = ("joint", "dgl", "dgl-aux", "ogm_ge", "warm/joint")
_BASES = (*_MODES, "late/joint")
_VERDICT = {1: "yes", -1: "no (worse)", 0: "no clear difference"}
Runs = dict[str, list[dict[str, Any]]]


def _delta(runs: Runs, a: str, b: str, key: str) -> tuple[str, str]:
    """``(description, verdict)`` of the paired difference ``a - b`` of ``key``."""
    d = paired_delta(runs[a], runs[b], key)
    return describe_delta(d), _VERDICT[clear_sign(d)]


def _answers(name: str, runs: Runs, hp: dict[str, Any] | None = None) -> tuple[list[str], list[list[str]]]:
    """Markdown lines answering the study's three questions for one dataset, and summary-table rows."""
    config = (
        ""
        if hp is None
        else (
            f" Configuration of every verdict: λ_d = {hp['lambda_d']}, λ_a = {hp['lambda_a']}, "
            f"δ = {hp['delta']!r}, chosen on the validation split (never on test)."
        )
    )
    lines = [
        f"**Q1. Does DAGR improve fused and unimodal accuracy?** (DAGR − plain, paired by seed){config}",
        "",
    ]
    rows = []
    for base in (b for b in _BASES if b in runs and f"{b}+dagr" in runs):
        (fd, fv), (ud, uv) = (_delta(runs, f"{base}+dagr", base, k) for k in ("fused", "unimodal/mean"))
        pd, _ = _delta(runs, f"{base}+dagr", base, "probe/mean")
        md, _ = _delta(runs, f"{base}+dagr", base, "missing/mean")
        lines.append(
            f"- {base}: fused {fd} → **{fv}**; unimodal (zero-pad, mean) {ud} → **{uv}**; "
            f"linear probe (mean) {pd}; missing-modality (mean) {md}."
        )
        rows.append([name, base, fd, fv, ud, uv])
    lines += ["", "**Q2. Does dispersion alone inflate drift?** (final test drift, mean over pairs)", ""]
    for mode in (m for m in _MODES if f"{m}+disp-only" in runs):
        drift = {
            v: summarize(runs[v])["drift/mean"]["mean"] for v in (mode, f"{mode}+disp-only", f"{mode}+dagr")
        }
        d1, v1 = _delta(runs, f"{mode}+disp-only", mode, "drift/mean")
        d2, _ = _delta(runs, f"{mode}+disp-only", f"{mode}+dagr", "drift/mean")
        lines.append(
            f"- {mode}: drift plain {drift[mode]:.3f}, dispersion only {drift[f'{mode}+disp-only']:.3f}, "
            f"full DAGR {drift[f'{mode}+dagr']:.3f}; dispersion only − plain {d1} → inflated: **{v1}**; "
            f"dispersion only − full DAGR {d2}."
        )
    lines += ["", "**Q3. Does the band beat always-on alignment?** (DAGR − always-on, same λ)", ""]
    for mode in (m for m in _MODES if f"{m}+always-on" in runs):
        a, b = f"{mode}+dagr", f"{mode}+always-on"
        (fd, fv), (ud, uv) = (_delta(runs, a, b, k) for k in ("fused", "unimodal/mean"))
        md, _ = _delta(runs, a, b, "missing/mean")
        pd, _ = _delta(runs, a, b, "probe/mean")
        lines.append(
            f"- {mode}: fused {fd} → **{fv}**; unimodal (zero-pad) {ud} → **{uv}**; linear probe (mean) "
            f"{pd}; missing-modality {md}."
        )
    return lines, rows


def plot_file(name: str) -> str:
    """File name of one dataset's curve PNG."""
    return f"{name}_curves.png"


def _plot(out: Path, name: str, runs: Runs) -> str:
    """Drift, effective rank and fused accuracy over epochs: one row of panels per training mode."""
    panels = []
    for mode in _MODES:
        group = {k.partition("+")[2] or "none": v for k, v in runs.items() if k.partition("+")[0] == mode}
        if group:
            title = _MODE_TITLES[mode]
            panels += [
                curve_panel(group, "drift/mean", title=f"{title}: drift", ylabel="drift (mean over pairs)"),
                curve_panel(group, "rank/mean", title=f"{title}: effective rank", ylabel="eff. rank (mean)"),
                curve_panel(group, "fused", title=f"{title}: fused test accuracy", ylabel="accuracy"),
            ]
    file = plot_file(name)
    line_plots(out / file, panels, ncols=3, width=3.6)
    return file


def _section(name: str, prob: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    runs: Runs = prob["runs"]
    summaries = {k: summarize(v) for k, v in runs.items()}
    first = next(iter(summaries.values()))
    mods = [k.split("/", 1)[1] for k in first if k.startswith("unimodal/") and k != "unimodal/mean"]
    hp = prob["dagr"]
    answers, rows = _answers(name, runs, hp)
    sec = [f"## {name}: {prob['title']}", "", f"Data: {prob['note']}.", ""]
    sec += [
        f"{prob['epochs']} epochs, batch {prob['batch_size']}, SGD (momentum 0.9, lr 0.05, 1 warm-up epoch, "
        f"cosine decay), encoders of width 64. DAGR: λ_d = {hp['lambda_d']}, λ_a = {hp['lambda_a']}, "
        f"δ = {hp['delta']!r}, Gaussian dispersion with τ = 1. {prob['seconds']:.0f} s wall, "
        f"{prob['cpu_seconds']:.0f} s CPU for this dataset.",
        "",
    ]
    if isinstance(hp["delta"], str):
        deltas = {
            k: cell(v, "delta")
            for k, v in summaries.items()
            if "delta" in v and math.isfinite(v["delta"]["mean"]) and "always" not in k
        }
        sec += [
            f"Calibrated band δ (quantile {hp['delta']!r} of the first-epoch drift): "
            + ", ".join(f"{k} {d}" for k, d in deltas.items())
        ]
        sec.append("")
    if "ogm_ge" in summaries:
        ks = ", ".join(f"{m} {cell(summaries['ogm_ge'], f'ogm_k/{m}')}" for m in mods)
        sec += [
            f"Mean OGM-GE coefficient k over training (ogm_ge, no DAGR; 1 = never slowed down): {ks}.",
            "",
        ]
    if prob["sweep"]:
        cand = {
            f"λ_d={r['lambda_d']}, λ_a={r['lambda_a']}, δ={r['delta']}": {
                k: {"mean": r[k], "std": 0.0} for k in ("fused", "unimodal", "score")
            }
            for r in prob["sweep"]
        }
        cols = [("val fused", "fused"), ("val unimodal", "unimodal"), ("score", "score")]
        sec += ["Validation sweep (joint + DAGR, seed 100; score = mean of fused and unimodal accuracy):", ""]
        sec += [metric_table(cand, cols, first="candidate").replace(" ± 0.000", ""), ""]
    sec += [*answers, "", "### Accuracy and geometry (test split, mean ± std over seeds)", ""]
    cols = [
        ("fused", "fused"),
        ("unimodal (zero-pad)", "unimodal/mean"),
        ("probe", "probe/mean"),
        ("missing (mean)", "missing/mean"),
        ("missing (worst)", "missing/min"),
        ("drift", "drift/mean"),
        ("eff. rank", "rank/mean"),
        ("margin", "margin/mean"),
        ("cos gap", "cos_gap/mean"),
    ]
    sec += [metric_table(summaries, cols), ""]
    for prefix, title in (
        ("unimodal", "Unimodal accuracy per modality: shared head, the other modalities zero-padded"),
        ("probe", "Unimodal accuracy per modality: linear probe on frozen embeddings"),
        ("missing", "Missing-modality accuracy: fused accuracy with one modality dropped at test time"),
        ("rank", "Effective rank per modality"),
    ):
        sec += [f"### {title}", "", modality_table(summaries, prefix, mods), ""]
    png = plot_file(name)
    sec += [f"![drift, effective rank and fused accuracy over epochs]({png})", ""]
    return sec, rows


def _tally(cells: list[tuple[str, dict[str, Any]]], what: str) -> str:
    """``"higher in 3/5 cells (a, b, c), lower in 0/5, no clear difference in 2/5; range -0.01 .. +0.02"``."""
    signs = [(name, clear_sign(d)) for name, d in cells]
    up = [n for n, sg in signs if sg > 0]
    down = [n for n, sg in signs if sg < 0]
    means = [d["mean"] for _, d in cells]
    n = len(cells)
    return (
        f"{what} clearly higher in {len(up)}/{n} cells"
        + (f" ({', '.join(up)})" if up else "")
        + f", clearly lower in {len(down)}/{n}"
        + (f" ({', '.join(down)})" if down else "")
        + f", no clear difference in {n - len(up) - len(down)}/{n}; mean paired differences "
        f"{min(means):+.3f} to {max(means):+.3f}"
    )


def _overall(problems: dict[str, dict[str, Any]]) -> list[str]:
    """The three answers over every (dataset, training mode) cell, with counts and ranges."""
    q1: dict[str, list[tuple[str, dict[str, Any]]]] = {"fused": [], "unimodal/mean": [], "probe/mean": []}
    q2, q3f, q3u = [], [], []
    for name, prob in problems.items():
        runs: Runs = prob["runs"]
        for base in (b for b in _BASES if b in runs and f"{b}+dagr" in runs):
            for key, cells in q1.items():
                cells.append((f"{name} {base}", paired_delta(runs[f"{base}+dagr"], runs[base], key)))
        for mode in _MODES:
            if f"{mode}+disp-only" in runs:
                q2.append(
                    (f"{name} {mode}", paired_delta(runs[f"{mode}+disp-only"], runs[mode], "drift/mean"))
                )
            if f"{mode}+always-on" in runs:
                band, always = runs[f"{mode}+dagr"], runs[f"{mode}+always-on"]
                q3f.append((f"{name} {mode}", paired_delta(band, always, "fused")))
                q3u.append((f"{name} {mode}", paired_delta(band, always, "unimodal/mean")))
    return [
        "## Answers over all datasets and training modes",
        "",
        "A *cell* is one (dataset, training mode); differences are paired by seed (see How to read).",
        "",
        "- **Does DAGR improve fused accuracy?** "
        + _tally(q1["fused"], "DAGR vs plain: fused accuracy")
        + ".",
        "- **Does DAGR improve unimodal accuracy?** "
        + _tally(q1["unimodal/mean"], "DAGR vs plain: zero-padded unimodal accuracy (mean over modalities)")
        + ". Linear probe on frozen embeddings: "
        + _tally(q1["probe/mean"], "DAGR vs plain:")
        + ".",
        "- **Does dispersion alone inflate drift?** "
        + _tally(q2, "Dispersion only vs plain: final drift (mean over pairs)")
        + ".",
        "- **Does the band beat always-on alignment?** "
        + _tally(q3f, "DAGR (band) vs always-on: fused accuracy")
        + "; "
        + _tally(q3u, "unimodal (zero-pad) accuracy")
        + ".",
        "",
    ]


def write_report(out: Path, record: dict[str, Any], command: str) -> Path:
    """Write ``results.json``, then ``results.md`` and the PNGs from it (:func:`render`).

    Rendering from the written (rounded) JSON makes ``results.md`` exactly what :func:`render` gives later.
    """
    record["command"] = command
    write_json(out / "results.json", record)
    return render(out)


def render_markdown(results: dict[str, Any]) -> str:
    """The text of ``results.md`` from a ``results.json`` payload (a pure function: no files, no clock)."""
    record = _with_nans(results)
    command = record["command"]
    md = [
        "# DAGR on multimodal fusion classification",
        "",
        f"Command: `{command}`",
        "",
        f"Wall time: {record['seconds']:.0f} s ({record['seconds'] / 60:.1f} min) with one torch thread on a "
        f"2-core CPU shared with other jobs; CPU time of the study process {record['cpu_seconds']:.0f} s "
        f"({record['cpu_seconds'] / 60:.1f} min), the time it takes on an idle core. "
        f"Seeds per setting: {record['seeds']}.",
        "",
        *(f"> {msg}" for msg in record["skipped"]),
        "",
    ]
    sections, rows = [], []
    for name, prob in record["problems"].items():
        sec, r = _section(name, prob)
        sections += sec
        rows += r
    header = ["dataset", "training", "Δ fused", "fused up?", "Δ unimodal (zero-pad)", "unimodal up?"]
    md += _overall(record["problems"])
    md += ["## Summary: DAGR − plain, paired by seed", "", markdown_table(header, rows), "", _READING, ""]
    md += sections
    return "\n".join(md) + "\n"


_READING = """\
How to read: *fused* uses every modality; *unimodal (zero-pad)* feeds one modality to the shared
concatenation head with the others zero-padded (the DGL protocol; for late fusion the other heads are
omitted); *probe* is a logistic regression fitted on that modality's frozen training embeddings;
*missing* drops one modality at test time (for two modalities it equals the other's unimodal accuracy);
*drift* is E‖z^m − z^n‖² of the normalised pre-fusion embeddings (mean over pairs, in [0, 4]);
*eff. rank* the effective rank (mean over modalities); *margin* the semantic margin; *cos gap* the
positive minus negative pair cosine. "± x" is the sample std over seeds. Δ values are paired per-seed
differences; a difference counts as clear ("yes" / "no (worse)") when a two-sided paired t-test over
the seeds gives p < 0.05, otherwise "no clear difference"."""


def _with_nans(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``results`` with the runs' ``null`` values (how write_json stores NaN) back to NaN."""
    record = copy.deepcopy(results)
    nan = float("nan")
    for prob in record["problems"].values():
        for runs in prob["runs"].values():
            for r in runs:
                r["final"] = {k: nan if v is None else v for k, v in r["final"].items()}
                r["curves"] = {k: [nan if v is None else v for v in c] for k, c in r["curves"].items()}
    return record


def render(out: Path) -> Path:
    """Rewrite ``results.md`` and the plots of a finished study from its ``results.json`` (no training)."""
    out = Path(out)
    results = read_json(out / "results.json")
    for name, prob in _with_nans(results)["problems"].items():
        _plot(out, name, prob["runs"])
    path = out / "results.md"
    path.write_text(render_markdown(results), encoding="utf-8")
    return path

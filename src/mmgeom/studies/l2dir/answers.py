"""The L2Dir study's answers and validation table, generated from ``results.json`` (seed-paired mAP)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..tables import format_mean_std, markdown_table
from .settings import METHODS, TASKS

#: Magnitudes whose coefficient of variation over the gallery is below this count as constant.
FLAT_CV = 0.02

#: Methods whose document magnitude is learned (a MagnitudeHead or the head's own output norm).
MAGNITUDE_METHODS = ("infonce+norm", "l2dir", "l2dir-infotn", "l2dir-recon", "headnorm-infotn", "release")


def _cell(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
    return format_mean_std(summary[key]["mean"], summary[key]["std"])


def _delta(r: Mapping[str, Any]) -> str:
    test = f", t = {r['t']:.1f}" if math.isfinite(r["t"]) else ""
    return f"Δ {r['mean']:+.4f} ± {r['std']:.4f} ({r['verdict']}{test})"


def _point(params: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in params.items()) or "no hyper-parameter to choose"


def chosen_params(task: Mapping[str, Any], method: str) -> str:
    """The validated grid point of ``method`` (``"lambda_n = 0.1"``), or a note for older results."""
    points = task.get("grid", {}).get(method)
    if not points:
        return "not validated (results written before the validation protocol)"
    return _point(next(p for p in points if p["chosen"])["params"])


def validation_table(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: every method's grid points with their validation mAP (mean over the validation seeds)."""
    rows = []
    for name, task in tasks.items():
        for method, points in task.get("grid", {}).items():
            for p in points:
                mean = sum(p["val"]) / len(p["val"])
                text = f"{mean:.4f}" + (" (chosen)" if p["chosen"] else "")
                rows.append([name, method, _point(p["params"]), METHODS[method].select_score, text])
    header = ["task", "method", "grid point", "scored by", "validation mAP (mean over seeds)"]
    return markdown_table(header, rows, "lllll")


def answers(
    tasks: Mapping[str, Mapping[str, Any]], comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> str:
    """The results file's answers, generated from the seed-paired comparisons (mAP, test rows)."""
    lines = []
    for name, task in tasks.items():
        c, s = comparisons[name], task["summary"]

        def mp(m: str, score: str, s: Mapping[str, Any] = s) -> str:
            return _cell(s[m], f"{score}/map")

        cv = {m: s[m]["mag/cv"]["mean"] for m in METHODS}
        varies = [m for m in MAGNITUDE_METHODS if cv[m] >= FLAT_CV]
        flat = [m for m in MAGNITUDE_METHODS if cv[m] < FLAT_CV]
        helps = [m for m in MAGNITUDE_METHODS if c[f"score/{m}"]["verdict"] == "higher"]
        hurts = [m for m in MAGNITUDE_METHODS if c[f"score/{m}"]["verdict"] == "lower"]
        auc = {m: _cell(s[m], "mag/auc_top") for m in METHODS}
        lines += [
            f"**{TASKS[name]}** — test mAP, mean ± std over {task['seeds']} seed(s) of each method's "
            "validated configuration (listed first); Δ = seed-paired difference a − b with a paired t-test "
            "at 95%:",
            "",
            "- *Configurations used* (each chosen on the validation rows, never on test): "
            + "; ".join(f"{m}: {chosen_params(task, m)}" for m in METHODS)
            + ".",
            "- *Do the magnitudes vary now?* CV of the document magnitudes over the test gallery: "
            + ", ".join(f"{m} {_cell(s[m], 'mag/cv')}" for m in MAGNITUDE_METHODS)
            + f". Varying (CV ≥ {FLAT_CV}): {', '.join(varies) or 'none'}; about constant: "
            f"{', '.join(flat) or 'none'}.",
            "- *Does magnitude scoring help?* magnitude − cosine scoring of the same models: "
            + "; ".join(f"{m} {_delta(c[f'score/{m}'])}" for m in MAGNITUDE_METHODS)
            + f". It helps for {', '.join(helps) or 'none'} and hurts for {', '.join(hurts) or 'none'}.",
            "- *Norm alignment without the MLP* (infonce+norm vs infonce): cosine "
            f"{mp('infonce+norm', 'cosine')} vs {mp('infonce', 'cosine')}, {_delta(c['norm/cosine'])}.",
            "- *The MagnitudeHead* (l2dir vs infonce+norm), magnitude scoring: "
            f"{mp('l2dir', 'magnitude')} vs "
            f"{mp('infonce+norm', 'magnitude')}, {_delta(c['mlp/magnitude'])}; l2dir (cosine) vs InfoNCE "
            f"(cosine) {_delta(c['l2dir/infonce'])}.",
            "- *Learnable-magnitude options* vs l2dir, magnitude scoring: InfoTN objective "
            f"{mp('l2dir-infotn', 'magnitude')}, {_delta(c['infotn/magnitude'])}; reconstruction target "
            f"{mp('l2dir-recon', 'magnitude')}, {_delta(c['recon/magnitude'])}; head-norm magnitudes with "
            f"InfoTN (vs infonce+norm) {mp('headnorm-infotn', 'magnitude')}, "
            f"{_delta(c['headnorm/magnitude'])}. Best of them vs InfoNCE (cosine): "
            f"{_delta(c['best/infonce'])} ({c['best/infonce']['comparison']}).",
            "- *Corrected release* (public objective, τ_r = 0.02): cosine "
            f"{mp('release', 'cosine')} vs InfoNCE "
            f"{mp('infonce', 'cosine')}, {_delta(c['release/infonce'])}; vs l2dir (cosine) "
            f"{_delta(c['release/cosine'])}.",
            "- *Document magnitude vs relevance* (AUC among each query's top-K cosine candidates; 0.5 = "
            "unrelated): " + ", ".join(f"{m} {auc[m]}" for m in MAGNITUDE_METHODS) + ".",
            "",
        ]
    return "\n".join(lines)

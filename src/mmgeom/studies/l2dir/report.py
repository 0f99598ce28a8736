"""The L2Dir study's ``results.md``: a pure function of ``results.json``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..results_io import read_json, write_json
from ..stats import HIGHER, LOWER, paired_difference
from ..tables import format_mean_std, markdown_table
from .answers import answers, validation_table
from .figures import PLOT_FILES, make_plots
from .settings import METHODS, METRICS, SCORES, TASKS, StudySettings


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Seed-paired difference ``a - b`` with the studies' paired t-test (:mod:`mmgeom.studies.stats`).

    Returns:
        ``{"mean", "std", "n", "t", "p", "verdict"}``; the verdict is ``"higher"``/``"lower"`` (p < 0.05),
        ``"no clear difference"``, or ``"single seed: no test"``.
    """
    d = paired_difference(a, b)
    if d.n < 2:
        verdict = "single seed: no test"
    else:
        verdict = {HIGHER: "higher", LOWER: "lower"}.get(d.verdict, "no clear difference")
    return {"mean": d.mean, "std": d.std, "n": d.n, "t": d.t, "p": d.p, "verdict": verdict}


#: The comparisons the results file answers: key → (label, method a, score a, method b, score b).
COMPARISONS: dict[str, tuple[str, str, str, str, str]] = {
    "norm/cosine": ("norm term (no MLP) vs InfoNCE, cosine", "infonce+norm", "cosine", "infonce", "cosine"),
    "norm/magnitude": (
        "norm term (no MLP) vs InfoNCE, magnitude",
        "infonce+norm",
        "magnitude",
        "infonce",
        "magnitude",
    ),
    "mlp/cosine": (
        "MLP (l2dir) vs no MLP (infonce+norm), cosine",
        "l2dir",
        "cosine",
        "infonce+norm",
        "cosine",
    ),
    "mlp/magnitude": (
        "MLP (l2dir) vs no MLP (infonce+norm), magnitude",
        "l2dir",
        "magnitude",
        "infonce+norm",
        "magnitude",
    ),
    "l2dir/infonce": ("l2dir vs InfoNCE, cosine", "l2dir", "cosine", "infonce", "cosine"),
    "l2dir-mag/infonce": ("l2dir magnitude vs InfoNCE cosine", "l2dir", "magnitude", "infonce", "cosine"),
    "infotn/magnitude": (
        "InfoTN objective vs l2dir, magnitude",
        "l2dir-infotn",
        "magnitude",
        "l2dir",
        "magnitude",
    ),
    "recon/magnitude": (
        "reconstruction vs l2dir, magnitude",
        "l2dir-recon",
        "magnitude",
        "l2dir",
        "magnitude",
    ),
    "headnorm/magnitude": (
        "head-norm InfoTN vs infonce+norm, magnitude",
        "headnorm-infotn",
        "magnitude",
        "infonce+norm",
        "magnitude",
    ),
    "release/infonce": ("release vs InfoNCE, cosine", "release", "cosine", "infonce", "cosine"),
    "release/cosine": ("release vs l2dir, cosine", "release", "cosine", "l2dir", "cosine"),
    "release/magnitude": ("release vs l2dir, magnitude", "release", "magnitude", "l2dir", "magnitude"),
    **{f"score/{m}": (f"{m}: magnitude vs cosine scoring", m, "magnitude", m, "cosine") for m in METHODS},
}

#: The learnable-magnitude options; the one with the best validation magnitude mAP meets InfoNCE (cosine).
LEARNABLE = ("l2dir-infotn", "l2dir-recon", "headnorm-infotn")


def _best_learnable(task: Mapping[str, Any]) -> str:
    """The learnable-magnitude option with the highest mean validation magnitude mAP (never test)."""
    return max(
        LEARNABLE, key=lambda m: sum(r["val/magnitude/map"] for r in task["runs"][m]) / len(task["runs"][m])
    )


def compare(task: Mapping[str, Any], metric: str = "map") -> dict[str, dict[str, Any]]:
    """The :data:`COMPARISONS` on one task's runs for ``metric`` (key → paired difference)."""
    out = {}
    rows = dict(COMPARISONS)
    if all("val/magnitude/map" in r for m in LEARNABLE for r in task["runs"].get(m, [])) and all(
        m in task["runs"] for m in LEARNABLE
    ):
        best = _best_learnable(task)
        rows["best/infonce"] = (
            f"{best} (best validated option) magnitude vs InfoNCE cosine",
            best,
            "magnitude",
            "infonce",
            "cosine",
        )
    for key, (label, ma, sa, mb, sb) in rows.items():
        a = [r[f"{sa}/{metric}"] for r in task["runs"][ma]]
        b = [r[f"{sb}/{metric}"] for r in task["runs"][mb]]
        out[key] = {"comparison": label, "metric": metric, **paired(a, b)}
    return out


def _cell(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
    return format_mean_std(summary[key]["mean"], summary[key]["std"])


def retrieval_table(task: Mapping[str, Any]) -> str:
    """Markdown: method × scoring rows, retrieval metrics as mean ± std over seeds."""
    names = {"map": "mAP", "ndcg@10": "nDCG@10"}
    rows = [
        [m, score, *(_cell(task["summary"][m], f"{score}/{k}") for k in METRICS)]
        for m in METHODS
        for score in SCORES
    ]
    return markdown_table(["method", "score", *(names.get(k, k) for k in METRICS)], rows, "ll" + "r" * 5)


def magnitude_table(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: document magnitude vs relevance per task and method."""
    rows = []
    for name, task in tasks.items():
        for m in METHODS:
            s = task["summary"][m]
            rows.append(
                [
                    name,
                    m,
                    *(
                        _cell(s, f"mag/{k}")
                        for k in ("auc", "cohen_d", "auc_top", "cohen_d_top", "cv", "pair_gap")
                    ),
                ]
            )
    header = ["task", "method", "AUC (gallery)", "d (gallery)", "AUC (top K)", "d (top K)", "CV", "pair gap"]
    return markdown_table(header, rows, "ll" + "r" * 6)


def comparison_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: seed-paired differences."""
    body = [
        [r["comparison"], f"{r['mean']:+.4f} ± {r['std']:.4f}", f"{r['t']:.1f}", r["verdict"]]
        for r in rows.values()
    ]
    return markdown_table(["comparison (a − b)", "Δ mAP (mean ± std)", "t", "95% verdict"], body, "lrrl")


SUMMARY_ROWS = {
    "norm/cosine": "norm alignment, no MLP (infonce+norm − infonce), cosine",
    "mlp/magnitude": "MagnitudeHead (l2dir − infonce+norm), magnitude",
    "l2dir/infonce": "full L2Dir − InfoNCE, both cosine",
    "infotn/magnitude": "InfoTN objective (l2dir-infotn − l2dir), magnitude",
    "recon/magnitude": "reconstruction target (l2dir-recon − l2dir), magnitude",
    "headnorm/magnitude": "head-norm InfoTN (headnorm-infotn − infonce+norm), magnitude",
    "score/l2dir": "magnitude − cosine scoring, l2dir",
    "score/l2dir-infotn": "magnitude − cosine scoring, l2dir-infotn",
    "score/l2dir-recon": "magnitude − cosine scoring, l2dir-recon",
    "score/headnorm-infotn": "magnitude − cosine scoring, headnorm-infotn",
    "release/infonce": "corrected release − InfoNCE, cosine",
}


def summary_table(comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown: the key seed-paired mAP differences, one column per task."""
    names = list(comparisons)
    rows = [
        [question, *(_short(comparisons[n][key]) for n in names)] for key, question in SUMMARY_ROWS.items()
    ]
    return markdown_table(["Δ mAP (mean ± std over seeds)", *(TASKS[n] for n in names)], rows)


def _short(r: Mapping[str, Any]) -> str:
    return f"{r['mean']:+.4f} ± {r['std']:.4f} ({r['verdict']})"


def settings_of(results: Mapping[str, Any]) -> StudySettings:
    """The :class:`StudySettings` stored in a ``results.json`` payload."""
    raw = dict(results["settings"])
    if raw.get("mfeat_views") is not None:
        raw["mfeat_views"] = tuple(raw["mfeat_views"])
    return StudySettings(**raw)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The text of ``results.md`` from a ``results.json`` payload (a pure function: no files, no clock).

    The payload holds ``command``, ``wall_seconds``, ``settings``, ``skipped``, ``tasks`` and the machine
    (``cpu_count``, ``torch``; older payloads without them take this machine's values).
    """
    tasks: Mapping[str, Mapping[str, Any]] = results["tasks"]
    skipped: Mapping[str, str] = results["skipped"]
    settings = settings_of(results)
    command, wall = results["command"], float(results["wall_seconds"])
    cpus, torch_version = results.get("cpu_count", os.cpu_count()), results.get("torch", torch.__version__)
    comparisons = {name: compare(t) for name, t in tasks.items()}
    plots = list(PLOT_FILES) if tasks else []
    store = results.get("store")
    md = [
        "# L2Dir on frozen backbone features",
        "",
        f"Command: `{command}` — {settings.seeds} seed(s) per setting, one torch thread, "
        f"wall time {wall / 60:.1f} min on a machine with {cpus} CPU cores shared with other "
        f"jobs (torch {torch_version}; per task: "
        + ", ".join(f"{name} {t['seconds'] / 60:.1f} min" for name, t in tasks.items())
        + "; building the feature stores is included when the cache was empty).",
        "",
        "Methods (all with the same heads, optimiser and steps; "
        f"τ = {settings.temperature}, λ_n = {settings.lambda_n} unless validated otherwise):",
        "",
        *(f"- `{m}`: {spec.note}" for m, spec in METHODS.items()),
        "",
        "Scoring: `cosine` ignores magnitude; `magnitude` scores `<ẑ_q, r_d ẑ_d>` (query normalised, the "
        "document keeps its magnitude r_d: the MagnitudeHead output for the methods with one (l2dir, "
        "l2dir-infotn, l2dir-recon), the raw norm of the document embedding otherwise). A query's own "
        "magnitude never changes its ranking.",
        "",
        *(
            [
                "Validation protocol: every hyper-parameter (λ_n ∈ {0.1, 1}, or the reconstruction weight ∈ "
                "{0.1, 1}) is chosen on validation rows held out of the training data "
                f"({settings.val_seeds} seed(s) per grid point; the highest validation mAP under magnitude "
                "scoring wins, cosine for InfoNCE); the chosen configuration is then trained with the "
                "remaining seeds and only its test numbers are reported. Validation rows: a seeded "
                f"{settings.val_fraction:.0%} of the training images/digits, and for the text queries the "
                "last 2 of the 8 training phrasings per class. Steps: "
                f"{settings.fashion_steps} (Fashion) and {settings.mfeat_steps} (mfeat) per training, fewer "
                "than the 1000 / 300 of the earlier single-configuration study, so that the grid fits in "
                "about 30 min on 2 cores.",
                "",
            ]
            if any("grid" in t for t in tasks.values()) and not store
            else []
        ),
    ]
    for name, reason in skipped.items():
        md += [f"**{TASKS[name]}: skipped** — {reason}", ""]
    if store:
        md += _store_lines(store, settings)
    if tasks:
        md += [
            "## Answers",
            "",
            "Seed-paired differences in mAP; the verdict is a paired t-test at 95% ('higher'/'lower' "
            "= a − b clearly above/below zero):",
            "",
            summary_table(comparisons),
            "",
            answers(tasks, comparisons),
        ]
    for name, task in tasks.items():
        md += [
            f"## {TASKS[name]}",
            "",
            task["note"] + ".",
            "",
            retrieval_table(task),
            "",
            "Seed-paired differences in mAP (a − b); the verdict is a paired t-test at 95%:",
            "",
            comparison_table(comparisons[name]),
            "",
        ]
    if tasks:
        md += [
            "## Plots",
            "",
            *(f"![{p}]({p})" for p in plots),
            "",
            "## Document magnitude vs relevance",
            "",
            "Per query, AUC = P(magnitude of a relevant document > that of a non-relevant one) and Cohen's "
            "d of the magnitudes, averaged over queries; 'gallery' uses every document, 'top K' the "
            "query's K = max(20, 2·#relevant) best documents by cosine — the candidates whose order "
            "magnitude scoring can change. CV = std/mean of the gallery magnitudes (0: magnitude "
            "scoring equals cosine). Pair gap = mean |r_q − r_d| / (r_q + r_d) over relevant pairs, "
            "with the same magnitudes on the query side (0: norms aligned). When every document is relevant "
            "to equally many queries — each digit to one query; each Fashion-MNIST test class has 1000 "
            "images and 4 queries — the whole-gallery AUC averages to exactly 0.5 by construction (the "
            "ranks of all documents sum to a constant); the top-K AUC and Cohen's d are the informative "
            "columns.",
            "",
            magnitude_table(tasks),
            "",
            *(
                ["## Validation grid", "", validation_table(tasks), ""]
                if any("grid" in t for t in tasks.values())
                else []
            ),
        ]
    md += [
        "## Settings",
        "",
        "```",
        *(f"{k} = {v}" for k, v in asdict(settings).items()),
        "```",
        "",
    ]
    if store:
        md += [
            f"Every projection head: MLP (2 layers, LayerNorm, GELU) to {settings.dim}-d; MagnitudeHead: "
            f"{settings.mag_hidden} → softplus scalar on the standardised store features, exempt from "
            "weight decay. Per-run values are in `results.json`.",
            "",
        ]
        return "\n".join(md)
    md += [
        "Fashion-MNIST image encoder and every projection head: MLP (2 layers, LayerNorm, GELU) to "
        f"{settings.dim}-d; MagnitudeHead: {settings.mag_hidden} → softplus scalar on the raw frozen "
        "features (no input LayerNorm, the library default since it removes the feature scale a magnitude "
        "is reconstructed from), exempt from weight decay. AdamW with warm-up + cosine schedule, gradient "
        "clipping. Phrasings: `mmgeom.studies.prompts` (12 per class; "
        "4 per class held out as queries). mfeat: the stratified split of `mmgeom features mfeat` "
        "(seed 0), views standardised with training statistics. Per-run values are in `results.json`.",
        "",
    ]
    return "\n".join(md)


def _store_lines(store: Mapping[str, Any], settings: StudySettings) -> list[str]:
    """The store run's data section: path, relevance, what was dropped / held out, the protocol."""
    return [
        "## The store",
        "",
        f"Store `{store['path']}`, {store['relevance']} relevance. Heads on the store's features "
        "(standardised with the training rows' statistics), trained on paired rows for "
        f"{settings.mfeat_steps} steps of batch {settings.mfeat_batch}. Validation protocol: every "
        "hyper-parameter (λ_n ∈ {0.1, 1}, or the reconstruction weight ∈ {0.1, 1}) is chosen on the "
        f"validation rows ({settings.val_seeds} seed(s) per grid point; the highest validation mAP under "
        "magnitude scoring wins, cosine for InfoNCE); only the chosen configuration's test numbers are "
        "reported.",
        "",
        *[f"- {n}" for n in store["notes"]],
        *([""] if store["notes"] else []),
    ]


def write_report(
    out: Path,
    tasks: Mapping[str, Mapping[str, Any]],
    skipped: Mapping[str, str],
    settings: StudySettings,
    command: str,
    wall: float,
    store: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``results.json``, then the PNGs and ``results.md`` from it (:func:`render`).

    ``store``: a run on a feature store (:mod:`.store`): its path, relevance and data notes.
    """
    write_json(
        out / "results.json",
        {
            **({"store": dict(store)} if store else {}),
            "command": command,
            "wall_seconds": wall,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "settings": asdict(settings),
            "skipped": dict(skipped),
            "tasks": dict(tasks),
            "comparisons": {name: compare(t) for name, t in tasks.items()},
        },
        digits=10,  # enough for render() to reproduce every test verdict, even for tiny differences
    )
    return render(out)


def render(out: Path) -> Path:
    """Rewrite ``results.md`` and the plots of ``out`` from its ``results.json`` (no training).

    The JSON keeps ten significant digits, so a re-rendered file can differ from the original only
    where a value shown to three decimals sits on an exact half (rounded the other way).
    """
    out = Path(out)
    results = read_json(out / "results.json")
    if results["tasks"]:
        make_plots(out, results["tasks"])
    path = out / "results.md"
    path.write_text(render_markdown(results), encoding="utf-8")
    return path

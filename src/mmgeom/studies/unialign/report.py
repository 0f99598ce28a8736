"""The UniAlign study's ``results.md``: a pure function of ``results.json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results_io import read_json, write_json
from ..tables import format_mean_std, markdown_table, metric_table, pivot_table
from .answers import (
    _answers,
)
from .figures import draw_plots, plot_files
from .grid import grid_table
from .settings import ANCHOR_LOSSES, FULL
from .store_report import render_store_markdown

#: Metrics of the scaling tables: key -> title.
SCALING_METRICS: dict[str, str] = {
    "hit@1": "hit@1, anchor <-> other views",
    "hit@5": "hit@5, anchor <-> other views",
    "hit@10": "hit@10, anchor <-> other views",
    "map": "mAP, anchor <-> other views",
    "all/hit@1": "hit@1, mean over all view pairs",
    "probe/anchor": "linear-probe accuracy, anchor (pix) embedding",
    "probe/mean": "linear-probe accuracy, mean embedding",
    "zeta": "zeta (force cancellation; 1 = InfoNCE's forces cancel)",
    "chi": "chi (disagreement of the positives; 0 for M = 2)",
    "holder": "Hölder divergence D_H (bandwidth 0.5)",
    "holder_tied": "Hölder divergence D_H, bandwidth tied to t = 2: s = sqrt((M - 1) / 8)",
    "gap": "modality gap, mean over pairs",
    "uniformity": "uniformity, mean over views (lower = more uniform)",
    "erank": "effective rank, mean over views (collapse check; at most 64)",
    "erank_min": "effective rank, smallest view",
    "pos_cos": "positive-pair cosine, anchor pairs",
}

#: Columns of the ablation and anchor tables.
SUMMARY_COLUMNS: list[tuple[str, str]] = [
    ("hit@1", "hit@1 (anchor)"),
    ("all/hit@1", "hit@1 (all pairs)"),
    ("map", "mAP (anchor)"),
    ("probe/anchor", "probe (anchor)"),
    ("probe/mean", "probe (mean)"),
    ("zeta", "zeta"),
    ("chi", "chi"),
    ("holder", "Hölder"),
    ("uniformity", "uniformity"),
    ("erank_min", "erank (min)"),
]


def render_markdown(payload: Mapping[str, Any]) -> str:
    """The text of ``results.md`` from a ``results.json`` payload (a pure function: no files, no clock).

    A run on a feature store (the payload has a ``"store"`` entry) is rendered by
    :func:`.store_report.render_store_markdown`.
    """
    if "store" in payload:
        return render_store_markdown(payload)
    s = payload["settings"]
    top = max(s["ms"])
    command = payload.get("command", "")
    files = plot_files(payload)
    n_runs = len(payload["runs"])
    lines = [
        "# UniAlign modality-scaling study (UCI Multiple Features, real six-view digits)",
        "",
        f"Command: `{command}`  ",
        *(
            [f"Text and plots {payload['rendered']} after the run (same numbers, newer report code).  "]
            if payload.get("rendered")
            else []
        ),
        f"Wall time: {payload['wall_seconds'] / 60:.1f} min for {n_runs} trainings "
        f"(CPU time of the process {payload.get('cpu_seconds', float('nan')) / 60:.1f} min: the 2-core "
        f"machine was shared with other jobs), torch {payload['torch']} on CPU, 1 intra-op thread.",
        "",
        "## Setup",
        "",
        f"- Data: UCI Multiple Features (2000 digits, 10 classes), stratified 70/10/20 split (seed "
        f"{s['split_seed']}), views standardised with training statistics; all numbers on the **test split** "
        f"(400 digits), linear probes fitted on the training split (1400).",
        f"- Views are added in the order {' → '.join(payload['view_order'])}: M = k uses the first k. "
        f"Anchor: **{payload['anchor']}** (the 16x15 pixel image) except in the anchor sweep.",
        f"- Model: one MLP head per view (2 layers, hidden {s['hidden']}, LayerNorm, GELU) into a shared "
        f"{s['out_dim']}-d space. AdamW lr {s['lr']}, weight decay {s['weight_decay']}, {s['warmup_steps']} "
        f"warm-up steps then cosine, {s['steps']} steps of batch {s['batch_size']}, grad clip "
        f"{s['grad_clip']}. {s['seeds']} seed(s) per setting (init + batch order; the split is fixed).",
        f"- Losses (library defaults, `docs/losses.md`): InfoNCE τ = {s['temperature']} over all pairs or "
        "anchor pairs; GRAM (anchor, learnable τ from 0.07, label smoothing 0.1); Wang–Isola align + "
        "uniform (all pairs, t = 2); UniAlign λ_uni = λ_align = 1, per-view uniformities averaged "
        '(`uniformity_reduction="mean"`), λ_vol = 0, t = 2, anchor or centroid alignment. The paper\'s λ '
        "and τ are not public. The scaling tables, ablation and anchor sweep use these defaults; the "
        "validated comparison (answer 2) chooses UniAlign's reduction, alignment weight and λ_vol, and the "
        "baseline, on the **validation split** (200 digits) — never on test.",
        "- Metrics: cross-view instance retrieval by cosine (row i of the query view must find row i of "
        "the gallery view), anchor → other and other → anchor averaged over the other views (`all pairs`: "
        "over every view pair); linear probe = multinomial logistic regression (L-BFGS, L2 "
        f"{s['probe_l2']}) on the L2-normalised frozen embeddings of the anchor view or of the normalised "
        f"mean of all views; zeta/chi on the anchor with τ = {s['temperature']} for every loss; Hölder "
        f"divergence with KDE bandwidth {s['bandwidth']} (exact for M = 2, Monte-Carlo with "
        f"{s.get('holder_samples', 2048)} samples for M ≥ 3); effective rank exp(entropy of the singular "
        "values) per view and the mean per-view uniformity as collapse checks.",
        "- ± is the sample standard deviation over seeds; 'better'/'worse' below means a seed-paired "
        "two-sided t-test gives p < 0.05 (Δ ± s.e.: mean and standard error of the per-seed differences).",
    ]
    if "val_seeds" in s:
        lines.append(
            f"- Seeds: {s['seeds']} per scaling setting, ablation and chosen configuration; "
            f"{s['val_seeds']} per configuration of the validation grid and {s['anchor_seeds']} per "
            "setting of the anchor sweep (fewer there so that the whole study fits in about 45 min on "
            "2 cores with one torch thread)."
        )
    if s["steps"] == FULL.steps and not payload.get("quick"):
        lines.append(
            f"- {s['steps']} steps, not more: a first attempt at 300 steps was too slow on the 2-core "
            "machine shared with two other jobs (the study must stay well under an hour), so steps were cut "
            "rather than seeds; the curves at the end show how flat every metric is by then."
        )
    lines.append("")
    lines += _answers(payload)
    if payload.get("grid"):
        lines += [
            "",
            "## Sensitivity grid (validation split)",
            "",
            f"Validation-split {payload['selection'][0]['key'].removeprefix('val/')} (anchor pix, mean ± std "
            "over "
            f"{payload['selection'][0]['val_seeds']} seed(s)) of every UniAlign configuration: "
            "uniformity reduction (mean/sum over the views) × alignment weight (1, or the Hölder-derived "
            "weight with the bandwidth tied to t) × U(C) + volume off/on (λ_vol 0, or 1 as the "
            "`retrieval` preset) × anchor/centroid alignment. Bold: the configuration (and baseline) "
            "chosen at that M.",
            "",
            grid_table(payload),
        ]
    lines += ["", "## Plots", ""]
    lines.append(f"![zeta, chi and Hölder vs M]({files['zeta_chi']})")
    lines.append("")
    lines.append(f"![hit@1 and probe accuracy vs M]({files['hit1']})")
    if "curves" in files:
        lines += ["", f"![Hölder, zeta, chi, hit@1 over training steps]({files['curves']})"]
    lines += ["", "## Scaling with M (anchor pix): mean ± std over seeds", ""]
    for key, title in SCALING_METRICS.items():
        if key not in payload["scaling"][0]["metrics"]:
            continue  # a results.json written before the column existed
        lines += [
            f"### {title}",
            "",
            pivot_table(payload["scaling"], "loss", "M", key, corner="loss", col_format="M = {}"),
            "",
        ]
    lines += [f"## Ablation of UniAlign's terms (M = {top}, anchor pix)", ""]
    lines += [
        "`+ U(C) only` and `+ volume only` add the centroid uniformity U_tc(C) (t_c = 2) or the mean Gram "
        "determinant to default UniAlign with weight 1, computed with `F.uniformity(F.centroid(...))` and "
        "`F.gram_det` (the library's `lambda_vol` weighs the two together). The uniformity reduction and "
        "λ_vol are varied at every M in the sensitivity grid above.",
        "",
        metric_table(payload["ablation"], "loss", SUMMARY_COLUMNS, corner="variant"),
        "",
        f"## Anchor sweep (M = {top})",
        "",
        "hit@1 (anchor) depends on which view is the anchor; hit@1 over all pairs and the mean-embedding "
        "probe are comparable across anchors.",
        "",
    ]
    for loss in ANCHOR_LOSSES:
        entries = [e for e in payload["anchors"] if e["loss"] == loss]
        lines += [f"### {loss}", "", metric_table(entries, "anchor", SUMMARY_COLUMNS, corner="anchor"), ""]
    curves = [e for e in payload["scaling"] if "curve" in e]
    if curves:
        lines += [f"## Over training steps (M = {top}, every {s['curve_every']} steps, test split)", ""]
        for key, title in (("holder", "Hölder D_H"), ("zeta", "zeta"), ("chi", "chi"), ("hit@1", "hit@1")):
            steps = [int(p["step"]) for p in curves[0]["curve"]]
            body = [
                [e["loss"], *[format_mean_std(p[key]["mean"], p[key]["std"]) for p in e["curve"]]]
                for e in curves
            ]
            lines += [f"### {title}", "", markdown_table(["loss", *[f"step {t}" for t in steps]], body), ""]
        if len(curves[0]["curve"]) >= 3:
            late = {
                e["loss"]: e["curve"][-1]["hit@1"]["mean"] - e["curve"][-3]["hit@1"]["mean"] for e in curves
            }
            worst = max(late, key=lambda k: abs(late[k]))
            steps = [int(p["step"]) for p in curves[0]["curve"]]
            lines += [
                f"Convergence: from step {steps[-3]} to {steps[-1]} the mean hit@1 moves by at most "
                f"{abs(late[worst]):.3f} ({worst}: {late[worst]:+.3f}).",
                "",
            ]
    lines += [
        "## Training time per run (mean over seeds, seconds)",
        "",
        pivot_table(
            [dict(e, metrics={"t": {"mean": e["train_seconds"], "std": 0.0}}) for e in payload["scaling"]],
            "loss",
            "M",
            "t",
            digits=1,
            corner="loss",
            col_format="M = {}",
        ).replace(" ± 0.0", ""),
        "",
        "## Caveats",
        "",
        "- One dataset (small MLP heads on fixed hand-crafted features), one split, short trainings and "
        "untuned library-default weights: the study tests the claims in this regime, not the paper's.",
        "- GRAM's volume is unchanged when a view's embedding flips sign and is already zero when any two "
        "views of a tuple are collinear; its cosine retrieval can therefore be poor even when its own "
        "volume scores rank well (see its positive-pair cosine).",
        "- The Hölder estimate for M ≥ 3 is a Monte-Carlo estimate (fixed sampling seed); it is not "
        "comparable across M in absolute terms (the divergence itself changes with M).",
        "",
    ]
    return "\n".join(lines)


def write_report(out: Path, payload: dict[str, Any]) -> Path:
    """Write ``results.json``, then the plots and ``results.md`` from it (:func:`render`)."""
    # Render from what results.json holds (rounded floats), so a later ``render`` gives the same text.
    write_json(out / "results.json", payload)
    return render(out)


def render(out: Path) -> Path:
    """Re-write ``results.md`` and the plots of a finished study from its ``results.json`` (no training)."""
    out = Path(out)
    payload = read_json(out / "results.json")
    draw_plots(out, payload)
    md = out / "results.md"
    md.write_text(render_markdown(payload), encoding="utf-8")
    return md

"""``results.md`` of the UniAlign study run on a user's feature store: a pure function of ``results.json``.

The bundled-data report (:mod:`.report`) describes mfeat; a store run has its own modalities, rows and
validation source, and may lack labels, so its text is generated here from the payload's ``"store"``
entry. :func:`.report.render_markdown` dispatches to :func:`render_store_markdown` when that entry exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tables import metric_table, pivot_table
from .answers import with_seed_metrics
from .figures import plot_files
from .grid import VALIDATED_METRICS, answer_validated, grid_table
from .settings import ANCHOR_LOSSES

#: Metrics of the scaling tables (key -> title); a key the runs lack (no labels: no probes) is left out.
STORE_SCALING_METRICS: dict[str, str] = {
    "hit@1": "hit@1, anchor <-> other modalities",
    "hit@5": "hit@5, anchor <-> other modalities",
    "map": "mAP, anchor <-> other modalities",
    "all/hit@1": "hit@1, mean over all modality pairs",
    "probe/anchor": "linear-probe accuracy, anchor embedding",
    "probe/mean": "linear-probe accuracy, mean embedding",
    "zeta": "zeta (force cancellation; 1 = InfoNCE's forces cancel)",
    "chi": "chi (disagreement of the positives; 0 for M = 2)",
    "holder": "Hölder divergence D_H (bandwidth 0.5)",
    "gap": "modality gap, mean over pairs",
    "uniformity": "uniformity, mean over modalities (lower = more uniform)",
    "erank_min": "effective rank, smallest modality (collapse check)",
}

STORE_SUMMARY_COLUMNS: list[tuple[str, str]] = [
    ("hit@1", "hit@1 (anchor)"),
    ("all/hit@1", "hit@1 (all pairs)"),
    ("map", "mAP (anchor)"),
    ("probe/mean", "probe (mean)"),
    ("zeta", "zeta"),
    ("chi", "chi"),
    ("uniformity", "uniformity"),
    ("erank_min", "erank (min)"),
]


def _present(payload: Mapping[str, Any], key: str) -> bool:
    return all(key in e["metrics"] for e in payload["scaling"])


def render_store_markdown(payload: Mapping[str, Any]) -> str:
    """The text of a store run's ``results.md`` (no files, no clock)."""
    s, st = payload["settings"], payload["store"]
    top = max(s["ms"])
    rows = st["rows"]
    val = (
        "the store's `val` split"
        if st["val_source"] == "split"
        else "rows held out of the store's `train` split (it has no `val` split)"
    )
    lines = [
        "# UniAlign modality-scaling study on a feature store",
        "",
        f"Command: `{payload.get('command', '')}`  ",
        f"Store: `{st['path']}`  ",
        f"Wall time: {payload['wall_seconds'] / 60:.1f} min for {len(payload['runs'])} trainings, torch "
        f"{payload['torch']} on CPU, 1 intra-op thread.",
        "",
        "## Setup",
        "",
        f"- Modalities, in the order they are added (M = k uses the first k): "
        f"{' → '.join(payload['view_order'])}; anchor **{payload['anchor']}** except in the anchor sweep.",
        f"- Rows: {rows['train']} train, {rows['val']} validation ({val}), {rows['test']} test; "
        "modalities standardised with training statistics. Every choice of a configuration is made on "
        "the validation rows; the test rows are only reported.",
        f"- Model and training as the bundled study: one MLP head per modality (hidden {s['hidden']}, "
        f"LayerNorm, GELU) into {s['out_dim']} dimensions, AdamW lr {s['lr']}, {s['steps']} steps of batch "
        f"{s['batch_size']}, {s['seeds']} seed(s) per setting ({s['val_seeds']} per grid configuration, "
        f"{s['anchor_seeds']} per anchor-sweep setting).",
        "- Metrics: cross-view instance retrieval by cosine on the test rows (row i of one modality must "
        "find row i of the other), geometry of the test embeddings (zeta, chi, Hölder, gap, uniformity, "
        "effective rank)" + ("; linear probes on the store's labels." if st["labelled"] else "."),
        "- Verdicts: seed-paired two-sided t-test, p < 0.05 (one seed: always a tie).",
        "",
        "## Data notes and skipped parts",
        "",
        *[f"- {n}" for n in st["notes"]],
        "- Nothing else of the bundled study needs more than features: the protocol is otherwise complete.",
        "",
    ]
    with_seeds = with_seed_metrics(payload)
    scale = {(e["loss"], e["M"]): e for e in with_seeds["scaling"]}
    metrics = [(k, t) for k, t in VALIDATED_METRICS if _present(payload, k)]
    answer = answer_validated(with_seeds, scale, list(s["ms"]), metrics)
    lines += ["## Validated comparison: best validated UniAlign vs best validated baseline", *answer[1:]]
    lines += ["", "## Sensitivity grid (validation rows)", "", grid_table(payload), ""]
    files = plot_files(payload)
    lines += ["## Plots", "", f"![zeta, chi and Hölder vs M]({files['zeta_chi']})", ""]
    lines += [f"![hit@1 vs M]({files['hit1']})", ""]
    lines += ["## Scaling with M: mean ± std over seeds", ""]
    for key, title in STORE_SCALING_METRICS.items():
        if _present(payload, key):
            table = pivot_table(payload["scaling"], "loss", "M", key, corner="loss", col_format="M = {}")
            lines += [f"### {title}", "", table, ""]
    columns = [(k, t) for k, t in STORE_SUMMARY_COLUMNS if _present(payload, k)]
    lines += [f"## Ablation of UniAlign's terms (M = {top}, anchor {payload['anchor']})", ""]
    lines += [metric_table(payload["ablation"], "loss", columns, corner="variant"), ""]
    lines += [f"## Anchor sweep (M = {top})", ""]
    for loss in ANCHOR_LOSSES:
        entries = [e for e in payload["anchors"] if e["loss"] == loss]
        lines += [f"### {loss}", "", metric_table(entries, "anchor", columns, corner="anchor"), ""]
    return "\n".join(lines)

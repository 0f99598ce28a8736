"""The ``results.md`` of ``mmgeom study generation``: tables, answers and grids, all from the numbers.

Every sentence that states a finding is generated from ``results.json`` (:func:`answers`), so a re-run
cannot leave a stale claim behind; :func:`render` rewrites the markdown from a saved JSON.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..._io import atomic_write_text
from ..results_io import read_json
from ..tables import format_mean_std, markdown_table
from .settings import grid_name

#: Metric -> (title, lower is better).
METRIC_TITLES: dict[str, tuple[str, bool]] = {
    "fid": ("FID (classifier features; lower is better)", True),
    "accuracy": ("accuracy of the classifier on the generated images (higher is better)", False),
    "pixel_mse": ("pixel MSE to the real paired image (lower is better)", True),
    "precision": ("precision (Kynkäänniemi et al., k = 3; higher is better)", False),
    "recall": ("recall (k = 3; higher is better)", False),
    "alignment": ("cosine between the condition and the image embedding (test positives)", False),
}


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman: expected two sequences of equal length >= 2, got {len(x)} and {len(y)}")

    def ranks(v: Sequence[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        order = torch.argsort(t, stable=True)
        r = torch.empty_like(t)
        r[order] = torch.arange(len(t), dtype=torch.float64)
        for value in torch.unique(t):  # ties share the mean of their ranks
            tie = t == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / denom if denom > 0 else math.nan


def _entry(
    summary: Sequence[Mapping[str, Any]], space: str, decoder: str, condition: str
) -> Mapping[str, Any]:
    for e in summary:
        if (e["space"], e["decoder"], e["condition"]) == (space, decoder, condition):
            return e["metrics"]
    return {}


def _cell(metrics: Mapping[str, Any], key: str, digits: int) -> str:
    m = metrics.get(key)
    if not m or m.get("mean") is None or not math.isfinite(m["mean"]):
        return "–"
    if m.get("n", 2) < 2:  # one seed: no spread to show
        return f"{m['mean']:.{digits}f}"
    return format_mean_std(m["mean"], m.get("std", 0.0) or 0.0, digits)


def _conditions(task: Mapping[str, Any]) -> list[str]:
    seen: list[str] = []
    for r in task["runs"]:
        if r["condition"] not in seen:
            seen.append(r["condition"])
    return seen


def _decoders(task: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["decoder"] for r in task["runs"]))


def metric_table(task: Mapping[str, Any], spaces: Sequence[str], decoder: str, key: str) -> str:
    """Rows: conditions; columns: spaces; cells: mean ± std over seeds."""
    digits = 4 if key == "pixel_mse" else 3 if key != "fid" else 2
    rows = [
        [c, *(_cell(_entry(task["summary"], s, decoder, c), key, digits) for s in spaces)]
        for c in _conditions(task)
    ]
    return markdown_table(["condition", *spaces], rows)


def _mean(task: Mapping[str, Any], space: str, decoder: str, conditions: Sequence[str], key: str) -> float:
    vals = [
        r[key]
        for r in task["runs"]
        if r["space"] == space
        and r["decoder"] == decoder
        and r["condition"] in conditions
        and r.get(key) is not None
    ]
    return sum(vals) / len(vals) if vals else math.nan


def bound_table(task: Mapping[str, Any], spaces: Sequence[str], decoder: str) -> tuple[str, dict[str, float]]:
    """Per space: self FID, mean FID over the other-modality conditions, their difference and ratio,
    and the same for accuracy."""
    conds = _conditions(task)
    self_c, others = conds[0], conds[1:]
    rows, gaps = [], {}
    for s in spaces:
        f_self, f_oth = _mean(task, s, decoder, [self_c], "fid"), _mean(task, s, decoder, others, "fid")
        a_self, a_oth = (
            _mean(task, s, decoder, [self_c], "accuracy"),
            _mean(task, s, decoder, others, "accuracy"),
        )
        gaps[s] = f_oth - f_self
        rows.append(
            [
                s,
                f"{f_self:.2f}",
                f"{f_oth:.2f}",
                f"{f_oth - f_self:+.2f}",
                f"{f_oth / f_self:.2f}×",
                f"{a_self:.3f}",
                f"{a_oth:.3f}",
                f"{a_oth - a_self:+.3f}",
            ]
        )
    header = ["space", "FID self", "FID others (mean)", "gap", "ratio", "acc. self", "acc. others", "gap"]
    return markdown_table(header, rows), gaps


def correlation(task: Mapping[str, Any], decoder: str) -> tuple[float, float, int]:
    """Spearman correlation over every (space, seed, other-modality condition) run: alignment vs FID and
    alignment vs accuracy."""
    conds = _conditions(task)[1:]
    runs = [
        r
        for r in task["runs"]
        if r["decoder"] == decoder
        and r["condition"] in conds
        and r.get("alignment") is not None
        and math.isfinite(r["alignment"])
    ]
    if len(runs) < 3:
        return math.nan, math.nan, len(runs)
    al = [r["alignment"] for r in runs]
    return spearman(al, [r["fid"] for r in runs]), spearman(al, [r["accuracy"] for r in runs]), len(runs)


def answers(task_name: str, task: Mapping[str, Any], spaces: Sequence[str]) -> list[str]:
    """Findings of one task, each with its numbers."""
    lines = []
    conds = _conditions(task)
    others = conds[1:]
    for dec in _decoders(task):
        fid = {s: _mean(task, s, dec, others, "fid") for s in spaces}
        acc = {s: _mean(task, s, dec, others, "accuracy") for s in spaces}
        best, worst = min(fid, key=fid.__getitem__), max(fid, key=fid.__getitem__)
        _, gaps = bound_table(task, spaces, dec)
        closest = min(gaps, key=gaps.__getitem__)
        rho_f, rho_a, n = correlation(task, dec)
        align = {s: _mean(task, s, dec, others, "alignment") for s in spaces}
        most_aligned = max(align, key=align.__getitem__)
        lines.append(
            f"- **{task_name}, {dec} decoder.** Decoding the other modalities, the lowest mean FID is "
            f"{best} ({fid[best]:.2f}; accuracy {acc[best]:.3f}) and the highest {worst} ({fid[worst]:.2f}; "
            f"accuracy {acc[worst]:.3f}). Closest to its own self-reconstruction bound: {closest} "
            f"(FID gap {gaps[closest]:+.2f}; the gaps are "
            + ", ".join(f"{s} {g:+.2f}" for s, g in gaps.items())
            + f"). The best-aligned space (mean condition–image cosine) is {most_aligned} "
            f"({align[most_aligned]:.3f}); "
            + (
                "it is also the one with the lowest FID. "
                if most_aligned == best
                else f"it is not the one with the lowest FID ({best}: {align[best]:.3f}). "
            )
            + f"Over all {n} (space, seed, modality) runs, the Spearman correlation of alignment with FID is "
            f"{rho_f:+.2f} and with accuracy {rho_a:+.2f}"
            + (
                ": better-aligned conditions do decode to better images."
                if rho_f < -0.3 and rho_a > 0.3
                else ": the link between alignment and image quality is weak or absent here."
            )
        )
    return lines


def render_markdown(payload: Mapping[str, Any], grids: Collection[str] | None = None) -> str:
    """The text of ``results.md`` from a ``results.json`` payload (a pure function: no files, no clock).

    Args:
        payload: the study's ``results.json``.
        grids: the grid PNG names present (``None``: every grid a full run writes is shown).
    """
    spaces = list(payload["spaces"])
    s = payload["settings"]
    lines = [
        "# Generation from an aligned space (UnCLIP-style, no prior)",
        "",
        "```",
        payload["command"],
        "```",
        "",
        f"Wall time {payload['wall_seconds'] / 60:.1f} min on {payload['threads']} CPU threads, torch "
        f"{payload['torch']}; {s['seeds']} seeds per space (space, decoder and sampling seeded together).",
        "",
        "A decoder is trained on the frozen embeddings of the **image** modality of each trained space and "
        "then fed the embeddings of the other modalities of the same test items. FID, precision and recall "
        "are measured in the 64-d feature space of a small CNN trained on the real training images of the "
        "dataset — **not Inception-FID**: compare numbers only within one table. Accuracy is that CNN's "
        "accuracy on the generated images against the class the condition belongs to. The first row of "
        "every table, the image's own embedding, is the self-reconstruction bound.",
        "",
        f"Spaces: MLP heads (hidden {s['hidden']}, {s['out_dim']}-d), {s['space_steps']} AdamW steps "
        f"(batch {s['space_batch']}; Fashion: {s['fashion_space_steps']} steps, "
        f"hidden {s['fashion_hidden']}), "
        f"anchor = the image modality; InfoNCE temperature {s['temperature']}; other losses at library "
        "defaults (UniAlign (centroid) has lambda_vol = 0). Conv decoder: "
        f"{s['conv_steps']} steps, batch {s['conv_batch']}. Diffusion decoder: UNet channels "
        f"{tuple(s['diffusion_channels'])}, T = {s['diffusion_timesteps']} (cosine schedule), "
        f"{s['diffusion_steps']} steps, DDIM {s['sample_steps']} steps, guidance {s['guidance']}.",
        "",
        "## Answers",
        "",
    ]
    for name, task in payload["tasks"].items():
        lines += answers(name, task, spaces)
    for name, why in payload.get("skipped", {}).items():
        lines.append(f"- **{name}: skipped** — {why}")
    for name, task in payload["tasks"].items():
        ref = task["reference"]
        lines += [
            "",
            f"## {name}",
            "",
            task["note"] + ".",
            "",
            f"References with real images: the classifier's accuracy on the real test images is "
            f"{ref['test_accuracy']:.3f}; real training images scored against the test images give "
            f"FID {ref['fid']:.2f}, precision {ref['precision']:.3f}, recall {ref['recall']:.3f} "
            "(the spread between two different real sets of this size: a reconstruction of the test images "
            "themselves can score below it)"
            + (
                f"; predicting the mean training image gives pixel MSE {ref['mean_image_pixel_mse']:.4f}."
                if "mean_image_pixel_mse" in ref
                else "."
            ),
        ]
        for dec in _decoders(task):
            table, _ = bound_table(task, spaces, dec)
            lines += [
                "",
                f"### {dec} decoder",
                "",
                "Distance to the self-reconstruction bound (others = mean over the non-image conditions):",
                "",
                table,
            ]
            keys = (
                ["fid", "accuracy"]
                + (["pixel_mse"] if task["paired"] else [])
                + ["precision", "recall", "alignment"]
            )
            for key in keys:
                lines += ["", f"**{METRIC_TITLES[key][0]}**", "", metric_table(task, spaces, dec, key)]
            lines += [
                "",
                "Grids (seed 0): first row real test images, then one row per condition in the "
                "order of the tables.",
                "",
            ]
            for sp in spaces:
                file = grid_name(name, sp, dec)
                if grids is None or file in grids:
                    lines += [f"{sp}:", "", f"![{name} {sp} {dec}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


def render(out: Path) -> Path:
    """Rewrite ``results.md`` from the ``results.json`` in ``out`` (grids: those present in ``out``)."""
    out = Path(out)
    payload = read_json(out / "results.json")
    path = out / "results.md"
    atomic_write_text(path, render_markdown(payload, grids={p.name for p in out.glob("grid-*.png")}))
    return path

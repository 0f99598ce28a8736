"""The UniAlign study's plots (PNG), drawn from ``results.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..plots import PlotPanel, line_plots
from .settings import LOSSES


def _per_seed(runs: Sequence[Mapping[str, Any]], group: str, loss: str, m: int, key: str) -> list[float]:
    return [r["metrics"][key] for r in runs if r["group"] == group and r["loss"] == loss and r["M"] == m]


def plot_files(payload: Mapping[str, Any]) -> dict[str, str]:
    """The PNG file names :func:`draw_plots` writes for ``payload`` (plot key -> file name)."""
    files = {"zeta_chi": "zeta_chi_vs_m.png", "hit1": "hit1_vs_m.png"}
    if any("curve" in e for e in payload["scaling"]):
        files["curves"] = "holder_over_steps.png"
    return files


def draw_plots(out: Path, payload: Mapping[str, Any]) -> dict[str, str]:
    """Draw the study's PNGs into ``out``; returns :func:`plot_files`."""
    s = payload["settings"]
    ms = list(s["ms"])
    runs = [r for r in payload["runs"] if r["group"] == "scaling"]

    def series(key: str) -> dict[str, list[list[float]]]:
        return {loss: [_per_seed(runs, "scaling", loss, m, key) for m in ms] for loss in LOSSES}

    files = {}
    panels = [
        PlotPanel(ms, series("zeta"), "M (views)", "zeta", "zeta vs M (test split)", hline=1.0, xticks=ms),
        PlotPanel(ms, series("chi"), "M (views)", "chi", "chi vs M", xticks=ms),
        PlotPanel(
            ms,
            series("holder"),
            "M (views)",
            "Hölder D_H (log)",
            "Hölder divergence vs M",
            logy=True,
            xticks=ms,
        ),
    ]
    files["zeta_chi"] = line_plots(out / "zeta_chi_vs_m.png", panels).name
    panels = [PlotPanel(ms, series("hit@1"), "M (views)", "hit@1", "hit@1, anchor <-> others", xticks=ms)]
    if all("probe/mean" in r["metrics"] for r in runs):  # no probe on a store without labels
        panels.append(
            PlotPanel(
                ms, series("probe/mean"), "M (views)", "accuracy", "linear probe, mean embedding", xticks=ms
            )
        )
    files["hit1"] = line_plots(out / "hit1_vs_m.png", panels).name
    curves = [e for e in payload["scaling"] if "curve" in e]
    if curves:
        steps = [p["step"] for p in curves[0]["curve"]]
        panels = [
            PlotPanel(
                steps,
                {e["loss"]: [p[key]["values"] for p in e["curve"]] for e in curves},
                "training step",
                title,
                f"{title} over training steps (M = {s['ms'][-1]}, test split)",
                hline=1.0 if key == "zeta" else None,
                logy=key == "holder",
            )
            for key, title in (("holder", "Hölder D_H"), ("zeta", "zeta"), ("chi", "chi"), ("hit@1", "hit@1"))
        ]
        files["curves"] = line_plots(out / "holder_over_steps.png", panels, ncols=2).name
    return files

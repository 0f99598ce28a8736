"""The UniAlign modality-scaling study: metric plumbing on hand-checkable inputs, the split ablation
terms against the library loss, the verdict rule, and a ``--quick`` run through the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import MultiViewDataset, split_and_standardize
from mmgeom.losses import create_loss
from mmgeom.studies import list_studies
from mmgeom.studies.unialign import render
from mmgeom.studies.unialign.answers import compare
from mmgeom.studies.unialign.experiment import evaluate_run
from mmgeom.studies.unialign.settings import (
    ABLATIONS,
    BASELINES,
    GRID,
    LOSSES,
    QUICK,
    SELECTION_KEY,
    VIEW_ORDER,
)


class _Identity(nn.Module):
    """Every view's embedding is its (standardised) input features."""

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return dict(batch)


def _identical_views(n: int = 200, d: int = 8, views: int = 3) -> MultiViewDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 4
    centres = torch.randn(4, d, generator=g) * 4
    x = centres[labels] + torch.randn(n, d, generator=g)
    return MultiViewDataset({f"v{k}": x.clone() for k in range(views)}, labels, "toy")


def test_identical_views_give_perfect_alignment_metrics() -> None:
    data = split_and_standardize(_identical_views())
    m = evaluate_run(_Identity(), data, "v0", QUICK)
    for key in ("hit@1", "hit@5", "hit@10", "map", "all/hit@1", "pos_cos"):
        assert m[key] == pytest.approx(1.0, abs=1e-6), key
    assert m["probe/anchor"] == 1.0  # well-separated classes
    assert m["probe/mean"] == 1.0
    assert m["val/hit@1"] == pytest.approx(1.0, abs=1e-6)  # the validation split's selection metrics
    assert m["val/all/hit@1"] == pytest.approx(1.0, abs=1e-6)
    assert abs(m["holder_tied"]) < 1e-3
    assert m["gap"] == pytest.approx(0.0, abs=1e-6)
    assert m["chi"] == pytest.approx(0.0, abs=1e-6)
    assert abs(m["holder"]) < 1e-3  # Monte-Carlo estimate of an exact 0 for M = 3
    assert 1.0 <= m["erank_min"] <= m["erank"] <= 8.0


def test_ablation_pieces_of_lambda_vol() -> None:
    """The `+ U(C) only` / `+ volume only` ablations add exactly one piece of lambda_vol's two."""
    g = torch.Generator().manual_seed(1)
    batch = {v: torch.randn(16, 8, generator=g) for v in VIEW_ORDER}
    plain = create_loss("unialign", anchor="pix")(batch).total
    only_c = ABLATIONS["+ U(C) only"]("pix", 6, QUICK)(batch)
    only_v = ABLATIONS["+ volume only"]("pix", 6, QUICK)(batch)
    assert torch.allclose(only_c.total - plain, only_c.terms["uniform/centroid"], atol=1e-6)
    assert torch.allclose(only_v.total - plain, only_v.terms["volume"], atol=1e-6)
    both = ABLATIONS["+ U(C) + volume (lambda_vol = 1)"]("pix", 6, QUICK)(batch).total
    assert torch.allclose(both - plain, only_c.terms["uniform/centroid"] + only_v.terms["volume"], atol=1e-6)


def test_grid_is_the_full_factorial_and_its_losses_are_the_library_options() -> None:
    assert len(GRID) == 16 and len({p.label for p in GRID}) == 16
    assert {(p.reduction, p.align_weight, p.lambda_vol) for p in GRID} == {
        (r, w, v) for r in ("mean", "sum") for w in ("fixed", "holder") for v in (0.0, 1.0)
    }
    # the two library-default points are the scaling losses (their runs are reused, not retrained)
    assert {p.label for p in GRID} & set(LOSSES) == {"UniAlign (anchor)", "UniAlign (centroid)"}
    g = torch.Generator().manual_seed(3)
    batch = {v: torch.randn(16, 8, generator=g) for v in VIEW_ORDER[:4]}
    for p in GRID:
        ref = create_loss(
            "unialign",
            anchor="pix",
            alignment=p.alignment,
            uniformity_reduction=p.reduction,
            align_weight=p.align_weight,
            lambda_vol=p.lambda_vol,
        )
        assert torch.allclose(p.factory()("pix", 4, QUICK)(batch).total, ref(batch).total), p.label
    default = next(p for p in GRID if p.label == "UniAlign (anchor)")
    assert torch.allclose(
        default.factory()("pix", 4, QUICK)(batch).total,
        LOSSES["UniAlign (anchor)"]("pix", 4, QUICK)(batch).total,
    )


def test_every_study_loss_builds_and_runs() -> None:
    batch = {v: torch.randn(8, 4, requires_grad=True) for v in VIEW_ORDER[:3]}
    for label, make in {**LOSSES, **ABLATIONS, **{p.label: p.factory() for p in GRID}}.items():
        out = make("pix", 3, QUICK)(batch)
        assert torch.isfinite(out.total), label
        out.total.backward()


def _entry(loss: str, values: list[float]) -> dict:
    return {"loss": loss, "seed_metrics": {seed: {"x": v} for seed, v in enumerate(values)}}


def test_compare_is_the_seed_paired_t_test() -> None:
    a = _entry("a", [0.50, 0.52, 0.49, 0.53, 0.51])
    b = _entry("b", [0.45, 0.48, 0.46, 0.47, 0.47])
    diff, se, verdict = compare(a, b, "x")
    d = [0.05, 0.04, 0.03, 0.06, 0.04]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    assert diff == pytest.approx(mean)
    assert se == pytest.approx(sd / math.sqrt(5))
    assert verdict == "higher"
    assert compare(b, a, "x")[2] == "lower"
    noisy = _entry("c", [0.40, 0.60, 0.45, 0.58, 0.49])
    assert compare(noisy, b, "x")[2] == "tie"
    assert compare(_entry("d", [0.9]), _entry("e", [0.1]), "x")[2] == "tie"  # one seed: no test


def test_registered() -> None:
    assert "unialign" in list_studies()


def test_quick_study_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "ua"
    result = CliRunner().invoke(app, ["study", "unialign", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "results.md").read_text(encoding="utf-8")
    for heading in (
        "## Setup",
        "## Answers",
        "### 1. Do zeta and chi grow with M under InfoNCE?",
        "### 2. Does the best validated UniAlign beat the best validated baseline?",
        "## Sensitivity grid (validation split)",
        "### 3. Which anchor is best",
        "### 4. What does each UniAlign term do (M = 3, anchor pix)?",
        "### 5. Where the paper's claims are (not) reproduced here",
        "## Plots",
        "## Scaling with M (anchor pix)",
        "## Ablation of UniAlign's terms (M = 3, anchor pix)",
        "## Anchor sweep (M = 3)",
        "## Over training steps (M = 3",
        "## Caveats",
    ):
        assert heading in md, heading
    assert f"mmgeom study unialign --quick --out {out}" in md
    for png in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert {"zeta_chi_vs_m.png", "hit1_vs_m.png", "holder_over_steps.png"} <= {
        p.name for p in out.glob("*.png")
    }
    payload = json.loads((out / "results.json").read_text())
    assert payload["settings"]["ms"] == [2, 3] and payload["settings"]["seeds"] == 1
    assert {(e["loss"], e["M"]) for e in payload["scaling"]} == {(n, m) for n in LOSSES for m in (2, 3)}
    assert [e["loss"] for e in payload["ablation"]] == list(ABLATIONS)
    assert {e["anchor"] for e in payload["anchors"]} == set(VIEW_ORDER[:3])
    for e in payload["scaling"]:
        for key in ("hit@1", "hit@5", "hit@10", "map", "probe/anchor", "probe/mean", "zeta", "chi", "holder"):
            assert key in e["metrics"], key
    # InfoNCE over all pairs and over anchor pairs are the same loss at M = 2 (same seed, same numbers).
    m2 = {e["loss"]: e["metrics"]["hit@1"]["mean"] for e in payload["scaling"] if e["M"] == 2}
    assert m2["InfoNCE (all pairs)"] == m2["InfoNCE (anchor)"]
    # Every choice is the argmax of the validation metric over the grid's runs, recomputed here from the
    # per-run records (the test metrics are not consulted).
    val: dict[tuple[str, str, int], list[float]] = {}
    for r in payload["runs"]:
        if r["group"] in ("grid", "scaling") and r["anchor"] == "pix":
            val.setdefault((r["group"], r["loss"], r["M"]), []).append(r["metrics"][SELECTION_KEY])
    grid_labels = {p.label for p in GRID}
    for sel in payload["selection"]:
        m = sel["M"]
        scores = {
            p.label: val[("scaling" if p.label in LOSSES else "grid", p.label, m)][: sel["val_seeds"]]
            for p in GRID
        }
        assert sel["unialign"] == max(scores, key=lambda k: sum(scores[k]))
        assert sel["baseline"] == max(
            BASELINES, key=lambda b: sum(val[("scaling", b, m)][: sel["val_seeds"]])
        )
        assert sel["unialign"] in grid_labels
        if sel["unialign_group"] == "chosen":
            assert any(e["loss"] == sel["unialign"] and e["M"] == m for e in payload["chosen"])
    grid_runs = [r for r in payload["runs"] if r["group"] == "grid"]
    assert grid_runs and all(set(r["metrics"]) == {"val/hit@1", "val/all/hit@1"} for r in grid_runs)
    assert "Each row names the configuration it used" in md
    curve = next(e for e in payload["scaling"] if e["M"] == 3)["curve"]
    assert [p["step"] for p in curve] == [0, 10, 20]
    # The report re-renders from results.json alone, with the same tables.
    assert render(out).read_text(encoding="utf-8") == md

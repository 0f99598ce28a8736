"""The DAGR study: report helpers on hand-made runs, the verdict rule, and a ``--quick`` run via the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import fashion_mnist_available
from mmgeom.studies import list_studies
from mmgeom.studies.dagr import render
from mmgeom.studies.dagr.experiment import dagr_kwargs
from mmgeom.studies.dagr.settings import SWEEP, VARIANTS, Setting
from mmgeom.studies.dagr.summaries import clear_sign, paired_delta, summarize


def _runs(values: list[float], key: str = "fused") -> list[dict]:
    return [{"seed": s, "final": {key: v}, "curves": {}} for s, v in enumerate(values)]


def test_paired_delta_and_verdict_rule() -> None:
    a, b = _runs([0.9, 0.92, 0.91, 0.93]), _runs([0.88, 0.9, 0.9, 0.9])
    d = paired_delta(a, b, "fused")
    assert d["values"] == pytest.approx([0.02, 0.02, 0.01, 0.03])
    assert d["mean"] == pytest.approx(0.02)
    assert d["wins"] == 4 and d["n"] == 4
    assert clear_sign(d) == 1
    assert clear_sign(paired_delta(b, a, "fused")) == -1
    assert d["verdict"] == "higher" and 0 < d["p"] < 0.05
    noisy = paired_delta(_runs([0.9, 0.8, 0.95]), _runs([0.85, 0.85, 0.85]), "fused")
    assert clear_sign(noisy) == 0
    assert clear_sign(paired_delta(_runs([0.9]), _runs([0.8]), "fused")) == 0  # one seed: never clear
    assert summarize(a)["fused"]["mean"] == pytest.approx(0.915)
    # Every seed up but p = 0.06 (t = 2.89, 3 degrees of freedom): not clear under the paired t-test.
    assert clear_sign(paired_delta(_runs([0.9, 0.92, 0.91, 0.95]), b, "fused")) == 0


def test_settings_and_variants() -> None:
    assert Setting("ogm_ge", "always-on").name == "ogm_ge+always-on"
    assert Setting("joint", "none", "late").name == "late/joint"
    hp = {"lambda_d": 0.3, "lambda_a": 1.0, "delta": "auto"}
    assert dagr_kwargs(hp, "none") is None
    assert dagr_kwargs(hp, "disp-only") == {**hp, "mode": "dispersion_only"}
    assert set(VARIANTS) == {"none", "dagr", "disp-only", "anchor-only", "always-on"}
    assert SWEEP[0][2] == "q0.1" and {d for _, _, d in SWEEP} == {"q0.1", "q0.25", "q0.5"}
    assert len(SWEEP) == 18
    assert Setting("joint", "dagr", warm=True).name == "warm/joint+dagr"


def test_quick_study_through_the_cli(tmp_path: Path) -> None:
    assert "dagr" in list_studies()
    out = tmp_path / "dagr"
    result = CliRunner().invoke(app, ["study", "dagr", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "results.md").read_text()
    assert f"mmgeom study dagr --quick --out {out}" in md
    for question in ("Q1. Does DAGR improve", "Q2. Does dispersion alone inflate", "Q3. Does the band beat"):
        assert question in md
    assert "## Answers over all datasets and training modes" in md
    # The report is a pure function of results.json: re-rendering reproduces it.
    assert render(out).read_text() == md
    for png in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / png).is_file()
    record = json.loads((out / "results.json").read_text())
    facmor = record["problems"]["facmor"]
    expected = {"joint", "joint+dagr", "dgl+disp-only", "ogm_ge+always-on", "late/joint+dagr", "dgl-aux+dagr"}
    expected |= {"warm/joint", "warm/joint+dagr", "warm/joint+always-on"}
    assert expected <= set(facmor["runs"])
    assert isinstance(facmor["dagr"]["delta"], str) and facmor["dagr"]["delta"].startswith("q")
    # The warm-started regime: a cross-modal InfoNCE phase brings the drift below that of unrelated vectors.
    warm = facmor["runs"]["warm/joint"][0]["final"]["warm/drift"]
    assert 0.0 < warm < 2.0
    assert "aux/fac" in facmor["runs"]["dgl-aux"][0]["final"]
    assert "aux/fac" not in facmor["runs"]["dgl"][0]["final"]
    assert "chosen on the validation split" in md
    final = facmor["runs"]["joint+dagr"][0]["final"]
    for key in ("fused", "unimodal/fac", "probe/mor", "missing/fac", "drift/fac-mor", "rank/mor", "delta"):
        assert key in final
    assert ("fashion" in record["problems"]) == fashion_mnist_available()
    if not fashion_mnist_available():
        assert "Fashion-MNIST: skipped" in md

"""The generation study end to end at toy sizes, and its report helpers."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmgeom.studies.generation import experiment as G
from mmgeom.studies.generation.report import render, spearman
from mmgeom.studies.generation.settings import SELF


def test_spearman_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, generator=g).tolist()
    y = (torch.tensor(x) + torch.randn(30, generator=g)).tolist()
    y[3] = y[4]  # a tie
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal length"):
        spearman([1, 2], [1, 2, 3])


def test_grid_columns_start_with_one_example_per_class() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    assert G.grid_columns(labels, 5).tolist() == [0, 2, 4, 1, 3]


def test_decoders_per_seed() -> None:
    s = replace(G.FULL, diffusion_seeds=1)
    digits = type("T", (), {"name": "digits"})()
    fashion = type("T", (), {"name": "fashion"})()
    assert G.decoders(digits, 0, s) == ["conv", "diffusion"]  # type: ignore[arg-type]
    assert G.decoders(digits, 1, s) == ["conv"]  # type: ignore[arg-type]
    assert G.decoders(fashion, 0, s) == ["conv"]  # type: ignore[arg-type]


def test_quick_study_writes_tables_grids_and_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mfeat: object
) -> None:
    spaces = {k: G.SPACES[k] for k in ("InfoNCE (anchor)", "UniAlign (generation, lambda_vol = 0.1)")}
    monkeypatch.setattr(G, "SPACES", spaces)
    monkeypatch.setattr(G, "QUICK", replace(G.QUICK, fashion=False))
    md = G.run(out=tmp_path, quick=True)
    text = md.read_text()
    payload = json.loads((tmp_path / "results.json").read_text())
    digits = payload["tasks"]["digits"]
    conditions = {r["condition"] for r in digits["runs"]}
    assert conditions == {SELF, *G.OTHER_VIEWS, G.MIX}
    assert {r["decoder"] for r in digits["runs"]} == {"conv", "diffusion"}
    for r in digits["runs"]:
        assert r["fid"] >= 0 and 0 <= r["accuracy"] <= 1 and r["pixel_mse"] >= 0
        assert -1 <= r["alignment"] <= 1
    assert all(r["alignment"] == pytest.approx(1.0) for r in digits["runs"] if r["condition"] == SELF)
    assert "fashion" in payload["skipped"]
    assert "## Answers" in text and "self-reconstruction bound" in text and "Spearman" in text
    for space in spaces:
        for dec in ("conv", "diffusion"):
            grid = tmp_path / G.grid_name("digits", space, dec)
            assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert grid.name in text
    (tmp_path / "results.md").unlink()
    assert render(tmp_path).read_text() == text

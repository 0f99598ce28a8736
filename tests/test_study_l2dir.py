"""The L2Dir study: its statistics against naive loops, and a --quick run through the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import fashion_mnist_available
from mmgeom.losses import create_loss
from mmgeom.models import text_backbone_available
from mmgeom.studies.l2dir.data import _last_per_class, holdout, load_mfeat
from mmgeom.studies.l2dir.metrics import (
    average_ranks,
    cohens_d,
    magnitude_auc,
    magnitude_relevance,
    pair_gap,
)
from mmgeom.studies.l2dir.model import loss_kwargs
from mmgeom.studies.l2dir.report import paired
from mmgeom.studies.l2dir.settings import FULL, METHODS


def auc_loop(r: list[float], rel: list[bool]) -> float:
    pos = [x for x, y in zip(r, rel, strict=True) if y]
    neg = [x for x, y in zip(r, rel, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_average_ranks_with_ties() -> None:
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_magnitude_auc_and_cohens_d_against_loops() -> None:
    rng = np.random.default_rng(0)
    r = np.round(rng.random(60) * 4, 1)  # coarse values: many ties
    rel = rng.random(60) < 0.3
    assert magnitude_auc(r, rel) == pytest.approx(auc_loop(r.tolist(), rel.tolist()), abs=1e-12)
    a, b = r[rel], r[~rel]
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (r.size - 2))
    assert cohens_d(r, rel) == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-12)
    assert math.isnan(magnitude_auc(r, np.zeros(60, dtype=bool)))
    assert magnitude_auc(np.array([1.0, 2.0]), np.array([False, True])) == 1.0


def test_magnitude_relevance_equals_a_per_query_loop() -> None:
    g = torch.Generator().manual_seed(1)
    q, gal = torch.randn(9, 6, generator=g), torch.randn(70, 6, generator=g)
    r = (torch.rand(70, generator=g) * 3).round(decimals=1) + 0.1
    rel = (torch.arange(9)[:, None] % 4) == (torch.arange(70)[None, :] % 4)
    got = magnitude_relevance(q, gal, r, rel)
    rn, reln = r.double().numpy(), rel.numpy()
    cos = (
        torch.nn.functional.normalize(q.double(), dim=1)
        @ torch.nn.functional.normalize(gal.double(), dim=1).T
    )
    whole, top, d = [], [], []
    for i in range(9):
        whole.append(auc_loop(rn.tolist(), reln[i].tolist()))
        d.append(cohens_d(rn, reln[i]))
        k = min(70, max(20, 2 * int(reln[i].sum())))
        idx = sorted(range(70), key=lambda j: -float(cos[i, j]))[:k]
        top.append(auc_loop(rn[idx].tolist(), reln[i][idx].tolist()))
    assert got["auc"] == pytest.approx(np.mean(whole), abs=1e-12)
    assert got["cohen_d"] == pytest.approx(np.mean(d), abs=1e-12)
    assert got["auc_top"] == pytest.approx(np.mean(top), abs=1e-12)
    assert got["cv"] == pytest.approx(rn.std() / rn.mean())


def test_pair_gap_and_paired_test() -> None:
    rq, rd = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0, 2.0])
    rel = torch.tensor([[True, True, False], [False, False, True]])
    assert pair_gap(rq, rd, rel) == pytest.approx((0 + 2 / 4 + 0) / 3)
    clear = paired([0.5, 0.6, 0.55], [0.4, 0.5, 0.46])
    assert clear["verdict"] == "higher" and clear["mean"] == pytest.approx(0.0966666, abs=1e-6)
    assert paired([0.5, 0.4, 0.6], [0.5, 0.5, 0.5])["verdict"] == "no clear difference"
    assert paired([0.5], [0.4])["verdict"] == "single seed: no test"


def test_holdout_is_a_seeded_partition() -> None:
    keep, held = holdout(50, 0.2)
    assert len(held) == 10 and len(keep) == 40
    assert sorted(keep.tolist() + held.tolist()) == list(range(50))
    again = holdout(50, 0.2)
    assert torch.equal(keep, again[0]) and torch.equal(held, again[1])
    assert len(holdout(3, 0.01)[1]) == 1 and len(holdout(3, 0.99)[0]) == 1  # one row on each side
    with pytest.raises(ValueError, match="val_fraction"):
        holdout(10, 1.0)
    mask = _last_per_class(torch.tensor([0, 1, 0, 0, 1, 2]), 2)
    assert mask.tolist() == [False, True, True, True, True, True]


def test_loss_kwargs_layering_and_methods_build() -> None:
    assert loss_kwargs("infonce", FULL) == {"temperature": FULL.temperature}
    kw = loss_kwargs("l2dir-infotn", FULL, {"lambda_n": 0.1})
    assert kw == {"temperature": FULL.temperature, "lambda_n": 0.1, "norm_term": "tn", "objective": "infotn"}
    assert loss_kwargs("release", FULL)["variant"] == "release"
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for name, spec in METHODS.items():
        for point in spec.grid:
            loss = create_loss(spec.loss, **loss_kwargs(name, FULL, point))
            extra = {}
            if spec.loss == "l2dir" and spec.magnitude_head:
                extra["magnitudes"] = {"q": q.norm(dim=1), "p": p.norm(dim=1)}
            if spec.reconstruction:
                extra["magnitude_targets"] = {"q": q.norm(dim=1) + 1, "p": p.norm(dim=1) + 1}
            assert torch.isfinite(loss({"q": q, "p": p}, **extra).total), (name, point)


def test_mfeat_features_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mfeat) -> None:
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    first = load_mfeat()
    stamp = (tmp_path / "features" / "mfeat" / "manifest.json").stat().st_mtime_ns
    second = load_mfeat()
    assert (tmp_path / "features" / "mfeat" / "manifest.json").stat().st_mtime_ns == stamp
    assert torch.equal(first.test["pix"], second.test["pix"])
    assert len(first.directions) == 30
    # standardised with training statistics
    assert torch.allclose(first.train["fou"].mean(0), torch.zeros(76), atol=1e-4)


def test_quick_study_via_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mfeat) -> None:
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["study", "l2dir", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "results.md").read_text()
    assert f"`mmgeom study l2dir --quick --out {out}`" in md
    data = json.loads((out / "results.json").read_text())
    fashion = fashion_mnist_available() and text_backbone_available()
    assert set(data["tasks"]) == ({"fashion", "mfeat"} if fashion else {"mfeat"})
    if not fashion:
        assert "skipped" in md
    for task in data["tasks"].values():
        assert list(task["runs"]) == list(METHODS)
        for method, runs in task["runs"].items():
            assert len(runs) == 1, method
            for key in ("cosine/map", "magnitude/map", "cosine/hit@1", "magnitude/ndcg@10", "mag/auc"):
                assert 0.0 <= runs[0][key] <= 1.0, (method, key)
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert not Path(png).is_absolute() and (out / png).is_file()
    assert "## Answers" in md and "release" in md and "## Validation grid" in md
    for task in data["tasks"].values():
        for method, points in task["grid"].items():
            key = f"val/{METHODS[method].select_score}/map"
            assert [p["params"] for p in points] == list(METHODS[method].grid)
            best = max(range(len(points)), key=lambda i: sum(points[i]["val"]))
            assert [p["chosen"] for p in points] == [i == best for i in range(len(points))]
            # the reported run of the chosen point is the one whose validation score was recorded
            assert task["runs"][method][0][key] == points[best]["val"][0]
    assert "MagnitudeHead: 128 → softplus scalar on the raw frozen features (no input LayerNorm" in md

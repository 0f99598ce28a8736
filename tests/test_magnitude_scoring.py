"""Magnitude scoring as the L2Dir study and the CLI use it: naive loops, query-magnitude invariance.

``mmgeom.retrieval`` already checks ``topk`` with ``gallery_magnitudes`` against a naive loop and a
hypothesis property on the query's scale (tests/test_retrieval_topk.py); these tests cover the metrics
the study reports (``score_retrieval``) and the CLI's ``--score magnitude`` re-scoring.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.cli.train import magnitude_scored as _magnitude_scored
from mmgeom.studies.l2dir.metrics import score_retrieval


def naive_metrics(
    q: torch.Tensor, g: torch.Tensor, rel: torch.Tensor, mags: torch.Tensor
) -> dict[str, float]:
    """hit@K, mAP and nDCG@10 by explicit loops over ``<q/|q|, r_d g_d/|g_d|>`` (ties: lower index first)."""
    out = {"hit@1": 0.0, "hit@5": 0.0, "hit@10": 0.0, "map": 0.0, "ndcg@10": 0.0}
    for i in range(q.shape[0]):
        qi = [float(x) for x in q[i]]
        qn = math.sqrt(sum(x * x for x in qi))
        scores = []
        for d in range(g.shape[0]):
            gd = [float(x) for x in g[d]]
            gn = math.sqrt(sum(x * x for x in gd))
            scores.append(float(mags[d]) * sum(a / qn * b / gn for a, b in zip(qi, gd, strict=True)))
        order = sorted(range(len(scores)), key=lambda d: (-scores[d], d))
        hits = [bool(rel[i, d]) for d in order]
        first = hits.index(True)
        for k in (1, 5, 10):
            out[f"hit@{k}"] += float(first < k)
        found, ap = 0, 0.0
        for rank, h in enumerate(hits):
            if h:
                found += 1
                ap += found / (rank + 1)
        out["map"] += ap / found
        dcg = sum(1 / math.log2(r + 2) for r in range(10) if hits[r])
        idcg = sum(1 / math.log2(r + 2) for r in range(min(10, found)))
        out["ndcg@10"] += dcg / idcg
    return {k: v / q.shape[0] for k, v in out.items()}


def test_study_magnitude_metrics_equal_naive_loop() -> None:
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 4
    g = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    mags = torch.rand(40, generator=gen, dtype=torch.float64) * 3
    rel = (torch.arange(6)[:, None] % 3) == (torch.arange(40)[None, :] % 3)
    got = score_retrieval(q, g, rel, "magnitude", mags)
    want = naive_metrics(q, g, rel, mags)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    cos = score_retrieval(q, g, rel, "cosine", mags)  # cosine ignores the magnitudes
    assert cos["map"] == pytest.approx(naive_metrics(q, g, rel, torch.ones(40))["map"], abs=1e-12)
    with pytest.raises(ValueError, match="score: expected one of"):
        score_retrieval(q, g, rel, "dot", mags)


finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=arrays(np.float64, (4, 3), elements=finite),
    g=arrays(np.float64, (12, 3), elements=finite),
    mags=arrays(np.float64, (12,), elements=st.floats(0.05, 5, allow_nan=False, width=64)),
    scales=arrays(np.float64, (4,), elements=st.floats(1e-3, 1e3, allow_nan=False, width=64)),
)
def test_query_magnitude_never_changes_the_study_metrics(q, g, mags, scales) -> None:
    qt, gt, r = torch.from_numpy(q), torch.from_numpy(g), torch.from_numpy(mags)
    # Keep rows well away from zero and from near-ties, where rounding could reorder equal scores.
    assume(bool((qt.norm(dim=1) > 1e-2).all() and (gt.norm(dim=1) > 1e-2).all()))
    s = torch.nn.functional.normalize(qt, dim=1) @ (torch.nn.functional.normalize(gt, dim=1) * r[:, None]).T
    gaps = s.sort(dim=1).values.diff(dim=1)
    assume(bool((gaps > 1e-9).all()))
    rel = (torch.arange(4)[:, None] + torch.arange(12)[None, :]) % 3 == 0
    base = score_retrieval(qt, gt, rel, "magnitude", r)
    scaled = score_retrieval(qt * torch.from_numpy(scales)[:, None], gt, rel, "magnitude", r)
    assert base == pytest.approx(scaled, abs=1e-12)


def test_cli_magnitude_rescoring_matches_independent_loop(tmp_path, mfeat) -> None:
    from mmgeom.train import Trainer, demo_config, embed_views

    cfg = demo_config(3, ["data.views=[pix, kar]", "eval.diagnostics=false", "train.eval_before=false"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    result = trainer.fit()
    scored = _magnitude_scored(trainer, result, cfg)
    emb = embed_views(trainer.encoder, trainer.data.part("test"))
    n = emb["pix"].shape[0]
    # The gallery keeps the L2 norm of its raw embedding: <q/|q|, g>. (mfeat has exact duplicate digits.)
    for a, b in (("pix", "kar"), ("kar", "pix")):
        s = torch.nn.functional.normalize(emb[a].double(), dim=1) @ emb[b].double().T
        pos = s.diagonal()[:, None]
        earlier = torch.arange(n)[None, :] < torch.arange(n)[:, None]
        ranks = ((s > pos) | ((s == pos) & earlier)).sum(dim=1)  # ties: lower gallery index first
        assert scored.final_eval[f"retrieval/{a}->{b}/hit@1"] == pytest.approx(
            float((ranks < 1).double().mean())
        )
        assert scored.final_eval[f"retrieval/{a}->{b}/map"] == pytest.approx(
            float((1.0 / (ranks + 1)).mean())
        )
    both = [scored.final_eval[f"retrieval/{x}/map"] for x in ("pix->kar", "kar->pix")]
    assert scored.final_eval["retrieval/pix<->kar/map"] == pytest.approx(sum(both) / 2)
    assert scored.final_eval["retrieval/mean/map"] == pytest.approx(sum(both) / 2)


def test_demo_score_option(tmp_path, mfeat) -> None:
    runner = CliRunner()
    args = ["demo", "--loss", "infonce", "--steps", "2", "--no-progress", "--out", str(tmp_path / "d")]
    args += ["--score", "magnitude"]
    args += ["--set", "data.views=[pix, fou]", "--set", "eval.diagnostics=false"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "score: magnitude" in result.output and "pix<->fou" in result.output
    bad = runner.invoke(app, ["demo", "--score", "dot"])
    assert bad.exit_code == 2 and "dot" in bad.output
    alone = runner.invoke(app, ["demo", "--score", "magnitude", "--out", str(tmp_path / "e")])
    assert alone.exit_code == 2 and "--loss" in alone.output
    assert not (tmp_path / "e").exists()

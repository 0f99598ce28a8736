"""The single-loss demo (`mmgeom demo --loss infonce`) on the real data: a short schedule must align every
view pair."""

from __future__ import annotations

from itertools import combinations

from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import MFEAT_VIEWS
from mmgeom.train import demo_config, read_jsonl

STEPS = 120


def test_demo_trains_every_view_pair_far_above_chance(tmp_path, mfeat):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--loss", "infonce", "--steps", str(STEPS), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "Cross-view retrieval on the test split" in result.output
    assert "Geometry diagnostics" in result.output and "effective rank" in result.output

    events = read_jsonl(out / "metrics.jsonl")
    train = [e for e in events if e["event"] == "train"]
    before, after = (e for e in events if e["event"] == "eval")
    assert (before["step"], after["step"]) == (0, STEPS)
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]

    n_gallery = 400  # 20% of 2000 digits, stratified
    chance = 1.0 / n_gallery
    assert after["chance/hit@1"] == chance
    for a, b in combinations(MFEAT_VIEWS, 2):
        key = f"retrieval/{a}<->{b}/hit@1"
        assert before[key] < 5 * chance, key  # random heads: near chance
        assert after[key] > 5 * chance, (key, after[key])  # weakest pair (fou, mor): ~9x chance
        assert after[key] > before[key] + 3 * chance
    strong = [k for k in after if k.endswith("hit@1") and "<->" in k and after[k] > 40 * chance]
    assert len(strong) >= 10  # 14 of the 15 pairs at 120 steps
    assert after["retrieval/mean/hit@1"] > 0.3
    assert after["geometry/gap/fac-pix"] < before["geometry/gap/fac-pix"]


def test_demo_config_scales_warmup_with_steps():
    assert demo_config().train.steps == 300
    cfg = demo_config(steps=50)
    assert cfg.train.steps == 50 and cfg.optim.warmup_steps == 5

"""Study utilities: mean ± std vs numpy, tables, plots, loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.studies.plots import PlotPanel, line_plots
from mmgeom.studies.results_io import write_json
from mmgeom.studies.runner import run_seeds, study_command, torch_threads
from mmgeom.studies.tables import aggregate, format_mean_std, markdown_table, mean_std
from mmgeom.train.lean import train_loop


@pytest.mark.parametrize("n", [1, 2, 5, 13])
def test_mean_std_matches_numpy(n: int) -> None:
    vals = np.random.default_rng(n).normal(size=n) * 3 + 1
    m, s = mean_std(vals.tolist())
    assert m == pytest.approx(float(np.mean(vals)), rel=1e-12)
    expected = float(np.std(vals, ddof=1)) if n > 1 else 0.0
    assert s == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_aggregate_matches_numpy_per_key() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, 3))
    records = [{"a": r[0], "b": r[1], "c": r[2]} for r in table]
    records[2]["only"] = 4.0
    agg = aggregate(records)
    assert list(agg) == ["a", "b", "c", "only"]
    for j, k in enumerate("abc"):
        assert agg[k]["mean"] == pytest.approx(table[:, j].mean(), rel=1e-12)
        assert agg[k]["std"] == pytest.approx(table[:, j].std(ddof=1), rel=1e-12)
        assert agg[k]["n"] == 5
    assert agg["only"] == {"mean": 4.0, "std": 0.0, "n": 1.0}
    assert math.isnan(aggregate([{"x": float("nan")}, {"x": 1.0}])["x"]["mean"])
    with pytest.raises(ValueError):
        mean_std([])


def test_formatting_and_tables() -> None:
    assert format_mean_std(0.91234, 0.0041) == "0.912 ± 0.004"
    assert format_mean_std(float("nan"), 0.0) == "nan"
    table = markdown_table(["loss", "hit@1"], [["a|b", 0.5], ["c", "1"]])
    assert table.splitlines() == ["| loss | hit@1 |", "|:--|--:|", "| a\\|b | 0.5 |", "| c | 1 |"]
    with pytest.raises(ValueError, match="expected 2 cells"):
        markdown_table(["a", "b"], [[1]])
    assert (
        study_command("unialign", "out", 3, quick=True) == "mmgeom study unialign --quick --seeds 3 --out out"
    )


def test_write_json_rounds_and_nulls(tmp_path: Path) -> None:
    path = write_json(tmp_path / "r.json", {"a": 1 / 3, "b": [float("nan"), 2], "c": torch.tensor([0.5])})
    assert json.loads(path.read_text()) == {"a": 0.333333, "b": [None, 2], "c": [0.5]}


def test_line_plots_writes_png(tmp_path: Path) -> None:
    panel = PlotPanel([2, 3], {"x": [[1.0, 2.0], [2.0, 2.5]], "y": [0.5, 0.7]}, "M", "zeta", hline=1.0)
    path = line_plots(tmp_path / "p.png", [panel, panel], ncols=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="expected 2 points"):
        line_plots(tmp_path / "q.png", [PlotPanel([1, 2], {"x": [1.0]})])


def test_torch_threads_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_run_seeds_seeds_torch() -> None:
    draws = run_seeds(lambda s: (s, float(torch.rand(()))), 2)
    again = run_seeds(lambda s: (s, float(torch.rand(()))), [1])
    assert [d[0] for d in draws] == [0, 1]
    assert draws[1] == again[0]


def test_train_loop_fits_least_squares_and_calls_back() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    target = x @ torch.tensor([1.0, -2.0, 0.5])
    w = torch.nn.Parameter(torch.zeros(3))
    seen: list[int] = []
    hist = train_loop(
        [w],
        lambda idx: ((x[idx] @ w - target[idx]) ** 2).mean(),
        num_rows=64,
        steps=300,
        batch_size=16,
        lr=0.05,
        warmup_steps=10,
        every=100,
        callback=seen.append,
    )
    assert len(hist) == 300
    assert seen == [0, 100, 200, 300]
    assert torch.allclose(w.detach(), torch.tensor([1.0, -2.0, 0.5]), atol=1e-2)


def test_train_loop_takes_parameter_groups_with_their_own_weight_decay() -> None:
    # zero loss gradient: AdamW's decoupled decay alone moves each weight, w <- w * (1 - lr * wd) per step
    # (the schedule is constant without warm-up and min_lr = lr), so the no-decay group stays put
    decayed = torch.nn.Parameter(torch.ones(2))
    exempt = torch.nn.Parameter(torch.ones(2))
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    steps, lr, wd = 5, 0.1, 0.5
    train_loop(
        [{"params": [decayed, frozen]}, {"params": [exempt], "weight_decay": 0.0}],
        lambda idx: (decayed * 0.0).sum() + (exempt * 0.0).sum(),
        num_rows=8,
        steps=steps,
        batch_size=4,
        lr=lr,
        min_lr=lr,
        weight_decay=wd,
    )
    assert torch.allclose(decayed.detach(), torch.full((2,), (1 - lr * wd) ** steps))
    assert torch.equal(exempt.detach(), torch.ones(2))
    assert torch.equal(frozen.detach(), torch.ones(2))
    with pytest.raises(ValueError, match="not a mix"):
        train_loop(
            [decayed, {"params": [exempt]}],
            lambda idx: decayed.sum(),
            num_rows=8,
            steps=1,
            batch_size=4,
            lr=lr,
        )

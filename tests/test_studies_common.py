"""Study utilities: linear probe vs independent references, mean ± std vs numpy, tables, plots, loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.studies.plots import PlotPanel, line_plots
from mmgeom.studies.probe import fit_linear_probe, linear_probe_accuracy
from mmgeom.studies.results_io import write_json
from mmgeom.studies.runner import run_seeds, study_command, torch_threads
from mmgeom.studies.tables import aggregate, format_mean_std, markdown_table, mean_std
from mmgeom.train.lean import train_loop


def _numpy_softmax_regression(
    x: np.ndarray, y: np.ndarray, c: int, l2: float, steps: int = 60000, lr: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Hand-built reference: plain gradient descent on mean CE + l2/2 ||W||^2 (no standardisation)."""
    n, d = x.shape
    w = np.zeros((c, d))
    b = np.zeros(c)
    onehot = np.eye(c)[y]
    for _ in range(steps):
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (g.T @ x + l2 * w)
        b -= lr * g.sum(axis=0)
    return w, b


def _probs(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_probe_matches_hand_built_softmax_regression() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    y = np.array([0, 1, 2] * 4)
    x[y == 1] += 1.0
    x[y == 2] -= 1.0
    l2 = 0.1
    w_ref, b_ref = _numpy_softmax_regression(x, y, 3, l2)
    probe = fit_linear_probe(torch.from_numpy(x), torch.from_numpy(y), l2=l2, standardize=False)
    assert np.allclose(probe.weight.numpy(), w_ref, atol=1e-6)
    # The bias is defined up to a constant shift (softmax invariance); the probabilities are unique.
    got = _probs(probe.logits(torch.from_numpy(x)).numpy())
    ref = _probs(x @ w_ref.T + b_ref)
    assert np.allclose(got, ref, atol=1e-7)


def test_probe_optimality_condition() -> None:
    """At the optimum the gradient of the penalised objective vanishes (first-order condition)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (50,), generator=g)
    probe = fit_linear_probe(x, y, l2=0.05)
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    xs = (x - probe.mean) / probe.scale
    loss = torch.nn.functional.cross_entropy(xs @ w.T + b, y) + 0.025 * w.square().sum()
    loss.backward()
    assert w.grad is not None and b.grad is not None
    assert float(w.grad.abs().max()) < 1e-6
    assert float(b.grad.abs().max()) < 1e-6


def test_probe_reaches_full_accuracy_on_separable_data() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(10, 16) * 6.0
    y = torch.arange(10).repeat(30)
    x = centres[y] + torch.randn(300, 16, generator=g)
    test_y = torch.arange(10).repeat(5)
    test_x = centres[test_y] + torch.randn(50, 16, generator=g)
    assert linear_probe_accuracy(x, y, test_x, test_y, l2=1e-4) == 1.0


def test_probe_standardisation_is_invariant_to_feature_scale() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(80, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    a = fit_linear_probe(x, y)
    b = fit_linear_probe(x * torch.tensor([100.0, 0.01, 3.0, 1.0]) + 7.0, y)
    assert torch.equal(a.predict(x), b.predict(x * torch.tensor([100.0, 0.01, 3.0, 1.0]) + 7.0))


def test_probe_bad_inputs() -> None:
    with pytest.raises(ValueError, match="y: expected"):
        fit_linear_probe(torch.randn(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="class ids must lie"):
        fit_linear_probe(torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 4]), num_classes=3)
    probe = fit_linear_probe(torch.randn(5, 2), torch.tensor([0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 2\)"):
        probe.predict(torch.randn(3, 3))


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

"""Linear probe (mmgeom.evaluation.probe) against a hand-built softmax regression and its optimality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgeom.evaluation import fit_linear_probe, linear_probe_accuracy


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

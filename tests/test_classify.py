"""mmgeom.classify: training modes (DGL gradients, OGM-GE coefficients), evaluation, DAGR wiring, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmgeom.classify import (
    ClassifyConfig,
    accuracy_metrics,
    evaluate_classifier,
    modality_scores,
    ogm_ge_coefficients,
    scale_grad,
    task_loss,
    train_classifier,
)
from mmgeom.classify.trainer import shared_head_unimodal_logits
from mmgeom.data import MultiViewDataset
from mmgeom.models import FusionClassifier, create_head


def toy_data(n: int = 96, seed: int = 0, views: tuple[str, ...] = ("strong", "weak")) -> MultiViewDataset:
    """Three classes; the "strong" view separates them well, the others weakly."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.randn(3, 5, generator=g)
    out = {}
    for k, v in enumerate(views):
        noise = 0.3 if k == 0 else 2.0
        out[v] = (centres[y] + noise * torch.randn(n, 5, generator=g)).float()
    return MultiViewDataset(out, y, "toy")


def toy_model(fusion: str = "concat", views: tuple[str, ...] = ("strong", "weak"), seed: int = 0):
    torch.manual_seed(seed)
    return FusionClassifier({v: create_head("mlp", 5, 8, hidden=16, modality=v) for v in views}, 3, fusion)


def encoder_grads(model: FusionClassifier) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.encoder.named_parameters()
    }


def test_dgl_aux_fusion_loss_sends_no_gradient_into_encoders() -> None:
    data, model = toy_data(), toy_model()
    batch, y = data.batch(torch.arange(32)), data.labels[:32]
    # alpha = 0: only the fusion-head loss; the encoders get nothing, the fusion head does.
    loss, _ = task_loss(model, model.encode(batch), y, ClassifyConfig(mode="dgl-aux", dgl_alpha=0.0))
    loss.backward()
    assert all(float(g.abs().max()) == 0.0 for g in encoder_grads(model).values())
    assert float(model.fusion.linear.weight.grad.abs().max()) > 0
    # alpha > 0: the encoders' gradient is exactly that of the weighted unimodal losses.
    model.zero_grad()
    loss, _ = task_loss(model, model.encode(batch), y, ClassifyConfig(mode="dgl-aux", dgl_alpha=0.7))
    loss.backward()
    full = encoder_grads(model)
    model.zero_grad()
    feats = model.encode(batch)
    uni = sum(torch.nn.functional.cross_entropy(model.aux[m](h), y) for m, h in feats.items())
    (0.7 * uni).backward()
    for name, g in encoder_grads(model).items():
        torch.testing.assert_close(full[name], g, rtol=1e-6, atol=1e-8)
        assert float(g.abs().max()) > 0


def test_dgl_is_the_public_protocol_against_plain_zero_padded_logits() -> None:
    """``dgl``: the loss is CE(W [sg h] + b) + alpha sum_m CE(W [0..h_m..0] + b); the encoders get exactly the
    unimodal gradient through the shared (constant) W, the head exactly the fused gradient."""
    data, model = toy_data(), toy_model()
    batch, y = data.batch(torch.arange(32)), data.labels[:32]
    alpha = 0.7
    feats = model.encode(batch)
    loss, _ = task_loss(model, feats, y, ClassifyConfig(mode="dgl", dgl_alpha=alpha))
    loss.backward()
    enc, head_w = encoder_grads(model), model.fusion.linear.weight.grad.clone()
    assert all(model.aux[m].weight.grad is None for m in model.modalities)  # the aux heads play no part

    # Plain computation: explicit concatenation with zero blocks, weights copied as constants.
    model.zero_grad()
    w = model.fusion.linear.weight.detach().clone()
    b = model.fusion.linear.bias.detach().clone()
    mods, dim = list(model.modalities), model.embed_dim
    feats = model.encode(batch)
    uni = torch.zeros(())
    for m in mods:
        blocks = [feats[n] if n == m else torch.zeros(32, dim) for n in mods]
        uni = uni + torch.nn.functional.cross_entropy(torch.cat(blocks, dim=1) @ w.T + b, y)
    fused_plain = torch.cat([feats[n].detach() for n in mods], dim=1) @ w.T + b
    fused_ce = torch.nn.functional.cross_entropy(fused_plain, y)
    assert float(loss) == pytest.approx(float(fused_ce + alpha * uni), rel=1e-6)
    (alpha * uni).backward()
    for name, g in encoder_grads(model).items():
        torch.testing.assert_close(enc[name], g, rtol=1e-6, atol=1e-8)
    # The head's gradient is that of the fused CE alone (the unimodal losses do not reach it).
    model.zero_grad()
    feats = {m: h.detach() for m, h in model.encode(batch).items()}
    torch.nn.functional.cross_entropy(model.fuse(feats), y).backward()
    torch.testing.assert_close(head_w, model.fusion.linear.weight.grad, rtol=1e-6, atol=1e-8)


def test_dgl_unimodal_accuracy_reads_the_trained_shared_head() -> None:
    """The evaluation's ``unimodal/m`` is the zero-padded shared head, the one ``dgl`` trains on."""
    data, model = toy_data(), toy_model()
    feats = model.encode(data.batch(torch.arange(16)))
    for m, logits in shared_head_unimodal_logits(model, feats).items():
        torch.testing.assert_close(logits, model.unimodal_logits(feats)[m])


def test_ogm_ge_coefficients_against_hand_computed_values() -> None:
    k = ogm_ge_coefficients({"audio": 3.0, "video": 1.0}, alpha=0.5)
    assert k["audio"] == pytest.approx(1 - math.tanh(0.5 * (3.0 - 1.0)))
    assert k["video"] == 1.0
    # The paper's Eq. (10) form (offset 0) jumps at ratio 1.
    paper = ogm_ge_coefficients({"a": 1.0, "v": 3.0}, 0.5, offset=0.0)
    assert paper["v"] == pytest.approx(1 - math.tanh(1.5))
    # M = 3: ratio to the mean of the others; only modalities above it are slowed down.
    k3 = ogm_ge_coefficients({"a": 4.0, "b": 1.0, "c": 3.0}, alpha=0.8)
    assert k3["a"] == pytest.approx(1 - math.tanh(0.8 * (4.0 / 2.0 - 1)))
    assert k3["c"] == pytest.approx(1 - math.tanh(0.8 * (3.0 / 2.5 - 1)))
    assert k3["b"] == 1.0
    assert ogm_ge_coefficients({"a": 2.0, "b": 2.0}, alpha=1.0) == {"a": 1.0, "b": 1.0}
    with pytest.raises(ValueError, match="at least 2 modalities"):
        ogm_ge_coefficients({"a": 1.0}, 0.5)
    with pytest.raises(ValueError, match="b: expected a finite score"):
        ogm_ge_coefficients({"a": 1.0, "b": -1.0}, 0.5)
    # Scores: summed softmax probability of the true class.
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 1])
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(axis=1, keepdims=True)
    assert modality_scores({"a": logits}, y)["a"] == pytest.approx(p[0, 0] + p[1, 1], rel=1e-6)


def test_ogm_ge_mode_scales_each_encoder_gradient_by_its_coefficient() -> None:
    data, model = toy_data(), toy_model()
    batch, y = data.batch(torch.arange(48)), data.labels[:48]
    loss, logs = task_loss(model, model.encode(batch), y, ClassifyConfig(mode="ogm_ge", ogm_alpha=2.0))
    loss.backward()
    modulated = encoder_grads(model)
    head_grad = model.fusion.linear.weight.grad.clone()
    model.zero_grad()
    loss, _ = task_loss(model, model.encode(batch), y, ClassifyConfig(mode="joint"))
    loss.backward()
    plain = encoder_grads(model)
    assert min(logs.values()) < 1.0  # the strong view dominates and is slowed down
    for name, g in plain.items():
        k = logs[f"ogm/k/{name.split('.')[1]}"]
        torch.testing.assert_close(modulated[name], k * g, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(head_grad, model.fusion.linear.weight.grad)  # the head is not modulated
    x = torch.ones(3, requires_grad=True)
    scale_grad(x, 0.25).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 0.25))


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_missing_modality_accuracy_matches_hand_built_drop(fusion: str) -> None:
    views = ("a", "b", "c")
    data, model = toy_data(60, views=views), toy_model(fusion, views)
    feats = {m: h.detach() for m, h in model.encode(data.views).items()}
    got = accuracy_metrics(model, feats, data.labels)
    for m in views:
        if fusion == "concat":
            padded = dict(feats)
            padded[m] = torch.zeros_like(feats[m])
            logits = model.fusion.linear(torch.cat([padded[v] for v in views], dim=1))
        else:
            logits = sum(model.fusion.heads[v](feats[v]) for v in views if v != m)
        acc = float((logits.argmax(1) == data.labels).float().mean())
        assert got[f"missing/{m}"] == pytest.approx(acc)
    assert got["missing/mean"] == pytest.approx(np.mean([got[f"missing/{m}"] for m in views]))
    assert got["missing/min"] == min(got[f"missing/{m}"] for m in views)


@pytest.mark.parametrize("mode", ["joint", "dgl", "dgl-aux", "ogm_ge"])
def test_training_learns_records_history_and_calibrates_the_band(mode: str) -> None:
    train, test = toy_data(96, seed=0), toy_data(60, seed=0)
    model = toy_model()
    dagr = {"lambda_d": 0.1, "lambda_a": 1.0, "delta": "auto"}
    cfg = ClassifyConfig(mode=mode, epochs=6, batch_size=32, lr=0.1, warmup_epochs=0.0, dagr=dagr)
    result = train_classifier(model, train, cfg, monitor=test)
    assert result.steps_per_epoch == 3
    assert [h["epoch"] for h in result.history] == list(range(7))
    # delta="auto": calibrated on the first epoch (calibration_steps = steps per epoch).
    assert math.isnan(result.history[0]["dagr/delta"])
    assert 0 < result.history[1]["dagr/delta"] == result.history[6]["dagr/delta"] < 4
    assert result.regularizer is not None and result.regularizer.calibration_steps == 3
    assert result.history[-1]["fused"] > max(0.6, result.history[0]["fused"] + 0.2)
    geometry_keys = {"drift/strong-weak", "rank/weak", "margin/strong", "cos_gap/strong-weak"}
    assert geometry_keys <= set(result.history[1])
    if mode == "ogm_ge":
        assert "ogm/k/strong" in result.history[1]
    ev = evaluate_classifier(model, test, train=train, aux=mode == "dgl-aux")
    assert {"fused", "unimodal/weak", "probe/strong", "missing/strong", "drift/mean", "rank/mean"} <= set(ev)
    assert ("aux/weak" in ev) == (mode == "dgl-aux")


def test_training_is_reproducible() -> None:
    data = toy_data()
    runs = []
    for _ in range(2):
        model = toy_model(seed=3)
        cfg = ClassifyConfig(mode="ogm_ge", epochs=2, batch_size=32, seed=5, dagr={"lambda_d": 0.1})
        train_classifier(model, data, cfg)
        runs.append(model.fuse(model.encode(data.views)).detach())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="mode: unknown training mode 'balanced'"):
        ClassifyConfig(mode="balanced")
    with pytest.raises(ValueError, match="optimizer: unknown 'adam'"):
        ClassifyConfig(optimizer="adam")
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 2"):
        ClassifyConfig(batch_size=1)
    with pytest.raises(ValueError, match="ogm_alpha: expected a finite number >= 0"):
        ClassifyConfig(ogm_alpha=-1.0)
    data, model = toy_data(), toy_model()
    with pytest.raises(ValueError, match="batch_size: 200 exceeds the 96 training rows"):
        train_classifier(model, data, ClassifyConfig(batch_size=200))
    other = toy_data(views=("strong", "pix"))
    with pytest.raises(ValueError, match=r"train: views \['strong', 'pix'\] do not match"):
        train_classifier(model, other, ClassifyConfig())
    with pytest.raises(ValueError, match="delta"):
        train_classifier(model, data, ClassifyConfig(dagr={"delta": "median"}))
    with pytest.raises(ValueError, match=r"weak: expected 32 rows to pair with strong"):
        task_loss(
            model,
            {"strong": torch.randn(32, 8), "weak": torch.randn(31, 8)},
            torch.zeros(32, dtype=torch.long),
            ClassifyConfig(),
        )

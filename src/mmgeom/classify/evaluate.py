"""Evaluation of fusion classifiers: fused, unimodal and missing-modality accuracy, and the geometry of
the pre-fusion embeddings (drift, effective rank, semantic margin, positive/negative cosine gap).

Keys of the returned dicts (``m``, ``n`` modality names, pairs in model order):

* ``fused``: accuracy with every modality;
* ``unimodal/m``: the fusion head given modality ``m`` alone (zero-padded in the concatenation head, the
  DGL protocol; the other heads omitted in late fusion); ``unimodal/mean``;
* ``missing/m``: accuracy with modality ``m`` dropped at test time (zero-padded / omitted);
  ``missing/mean``, ``missing/min``;
* ``probe/m``: a linear probe (multinomial logistic regression) fitted on the *frozen* training
  embeddings of ``m`` alone; ``probe/mean``;
* ``aux/m``: accuracy of the model's own unimodal head of ``m`` (trained only in DGL mode);
* ``drift/m-n``: ``E ||z^m - z^n||^2`` of normalised paired embeddings; ``drift/mean``;
* ``rank/m``: effective rank; ``margin/m``: semantic margin; ``cos_gap/m-n``: positive minus negative
  cosine; each with ``/mean``.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import torch
from torch import Tensor

from .. import geometry
from ..data import MultiViewDataset
from ..models.fusion import FusionClassifier


def check_views(model: FusionClassifier, data: MultiViewDataset, what: str = "data") -> None:
    """The dataset must hold exactly the model's modalities (same names), with at least two rows."""
    if set(data.view_names) != set(model.modalities):
        raise ValueError(
            f"{what}: views {list(data.view_names)} do not match the model's modalities "
            f"{list(model.modalities)}"
        )
    if len(data) < 2:
        raise ValueError(f"{what}: expected at least 2 rows, got {len(data)}")


@torch.no_grad()
def embed(model: FusionClassifier, data: MultiViewDataset, batch_size: int = 2048) -> dict[str, Tensor]:
    """Pre-fusion embeddings ``modality -> (N, D)`` of every row, in eval mode (mode restored after)."""
    check_views(model, data)
    was = model.training
    model.eval()
    try:
        parts: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            for m, h in model.encode(data.batch(idx)).items():
                parts[m].append(h.float())
        return {m: torch.cat(v) for m, v in parts.items()}
    finally:
        model.train(was)


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).double().mean())


def _mean(values: Mapping[str, float], prefix: str) -> float:
    picked = [v for k, v in values.items() if k.startswith(prefix + "/")]
    return sum(picked) / len(picked)


@torch.no_grad()
def accuracy_metrics(
    model: FusionClassifier, features: Mapping[str, Tensor], labels: Tensor, *, aux: bool = False
) -> dict[str, float]:
    """``fused``, ``unimodal/*``, ``missing/*`` (and ``aux/*``) accuracies from pre-fusion ``features``."""
    out = {"fused": _accuracy(model.fuse(features), labels)}
    uni = {f"unimodal/{m}": _accuracy(o, labels) for m, o in model.unimodal_logits(features).items()}
    miss = {f"missing/{m}": _accuracy(model.fuse(features, drop=[m]), labels) for m in model.modalities}
    out.update(uni)
    out["unimodal/mean"] = _mean(uni, "unimodal")
    out.update(miss)
    out["missing/mean"] = _mean(miss, "missing")
    out["missing/min"] = min(miss.values())
    if aux:
        heads = {f"aux/{m}": _accuracy(o, labels) for m, o in model.aux_logits(features).items()}
        out.update(heads)
        out["aux/mean"] = _mean(heads, "aux")
    return out


@torch.no_grad()
def geometry_metrics(features: Mapping[str, Tensor], labels: Tensor) -> dict[str, float]:
    """Drift and cosine gap per pair, effective rank and semantic margin per modality (plus means)."""
    out: dict[str, float] = {}
    mods = list(features)
    for m, n in combinations(mods, 2):
        out[f"drift/{m}-{n}"] = geometry.drift(features[m], features[n])
        pos = float(geometry.positive_cosines(features[m], features[n]).mean())
        out[f"cos_gap/{m}-{n}"] = pos - geometry.negative_cosine_mean(features[m], features[n])
    for m in mods:
        out[f"rank/{m}"] = geometry.effective_rank(features[m])
        out[f"margin/{m}"] = geometry.semantic_margin(features[m], labels)
    for key in ("drift", "cos_gap", "rank", "margin"):
        out[f"{key}/mean"] = _mean(out, key)
    return out


def probe_metrics(
    train_features: Mapping[str, Tensor],
    train_labels: Tensor,
    test_features: Mapping[str, Tensor],
    test_labels: Tensor,
    num_classes: int,
    max_iter: int = 100,
) -> dict[str, float]:
    """``probe/m``: test accuracy of a linear probe fitted on modality ``m``'s frozen training embeddings.

    The probe is :func:`mmgeom.studies.common.fit_linear_probe` (multinomial logistic regression on
    standardised features, L2 weight ``1e-3``, at most ``max_iter`` L-BFGS iterations).
    """
    from ..studies.probe import fit_linear_probe

    out = {}
    for m, x in train_features.items():
        probe = fit_linear_probe(x, train_labels, num_classes=num_classes, l2=1e-3, max_iter=max_iter)
        out[f"probe/{m}"] = probe.accuracy(test_features[m], test_labels)
    out["probe/mean"] = _mean(out, "probe")
    return out


def evaluate_classifier(
    model: FusionClassifier,
    test: MultiViewDataset,
    *,
    train: MultiViewDataset | None = None,
    geometry_too: bool = True,
    aux: bool = False,
    probe_iters: int = 100,
) -> dict[str, float]:
    """Every metric of the module docstring on ``test`` (probes only when ``train`` is given).

    Args:
        model: a trained classifier.
        test: evaluation rows (views = the model's modalities).
        train: training rows for the linear probes (``None``: no ``probe/*`` keys).
        geometry_too: add the geometry keys.
        aux: add ``aux/*`` (the model's own unimodal heads; meaningful after DGL-style training).
        probe_iters: L-BFGS iteration cap of each linear probe.
    """
    feats = embed(model, test)
    labels = test.labels
    out = accuracy_metrics(model, feats, labels, aux=aux)
    if geometry_too:
        out.update(geometry_metrics(feats, labels))
    if train is not None:
        check_views(model, train, "train")
        num_classes = max(test.num_classes, train.num_classes, model.num_classes)
        out.update(probe_metrics(embed(model, train), train.labels, feats, labels, num_classes, probe_iters))
    return out

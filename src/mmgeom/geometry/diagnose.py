"""All diagnostics of a batch in one flat ``dict[str, float]`` with stable keys (for logs and plots)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._validation import check_anchor, check_labels, check_positive, validation
from ..functional import alignment, uniformity
from ..functional.centroid import centroid
from ._batch import even_subsample, modality_pairs, pair_key, present_rows, select_rows, split_batch
from .conflict import conflict_metrics
from .drift import drift
from .gap import modality_gap
from .holder import DEFAULT_BANDWIDTH, MAX_TUPLES, holder_divergence
from .margin import semantic_margin
from .norms import norm_correlation, norm_stats
from .similarity import MAX_NEGATIVES, cosine_stats
from .spectrum import effective_rank

#: Default cap on the rows used by the quadratic diagnostics (uniformity, Hölder, conflict).
MAX_ROWS = 4096

#: Default Monte-Carlo samples per term of the Hölder estimate inside :func:`diagnose` (kept cheap).
HOLDER_SAMPLES = 512


def _subsample(mods: dict[str, Tensor], max_rows: int | None) -> dict[str, Tensor]:
    first = next(iter(mods.values()))
    idx = even_subsample(first.shape[0], max_rows, first.device)
    return mods if idx is None else {k: v[idx] for k, v in mods.items()}


@torch.no_grad()
def diagnose(
    batch: Mapping[str, Tensor],
    labels: Tensor | None = None,
    *,
    holder_bandwidth: float | None = None,
    conflict_anchor: str | None = None,
    temperature: float = 0.07,
    t: float = 2.0,
    align_alpha: float = 2.0,
    max_negatives: int | None = MAX_NEGATIVES,
    max_rows: int | None = MAX_ROWS,
    holder_method: str = "auto",
    holder_samples: int = HOLDER_SAMPLES,
    holder_max_tuples: int = MAX_TUPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Every geometry diagnostic of a batch, as a flat dict of plain floats with stable keys.

    Keys (``m``, ``n`` modality names, pairs ``m-n`` in batch order; every key is documented in
    ``docs/diagnostics.md``):

    * per pair: ``gap/m-n`` (:func:`modality_gap`), ``pos_cos/m-n``, ``neg_cos/m-n``, ``cos_diff/m-n``,
      ``ks/m-n`` (:func:`cosine_stats`), ``align/m-n`` (Wang–Isola alignment with ``align_alpha``),
      ``drift/m-n`` (:func:`drift`), ``norm_corr/m-n`` (:func:`norm_correlation`);
    * per modality: ``uniform/m`` (Wang–Isola uniformity with ``t``), ``erank/m`` (:func:`effective_rank`),
      ``norm_mean/m``, ``norm_std/m``, ``norm_cv/m`` (:func:`norm_stats`), and ``margin/m``
      (:func:`semantic_margin`) when labels are given;
    * whole batch: ``uniform/centroid`` (uniformity of the per-row centroids), ``holder``
      (:func:`holder_divergence`), ``zeta`` and ``chi`` (:func:`conflict_metrics`).

    Rows: with a ``"mask"`` entry (modality -> ``(B,)`` bool), per-modality values use that modality's
    present rows, pair values the rows where both are present, and whole-batch values the rows where all
    are present. The quadratic diagnostics (``uniform/*``, ``holder``, ``zeta``, ``chi``) then use at most
    ``max_rows`` evenly spaced rows; ``ks`` uses at most ``max_negatives`` negative pairs.

    Reference: see the individual functions (Wang & Isola 2020; Liang et al. 2022; Roy & Vetterli 2007;
    Yin et al., arXiv 2602.09507; Xia et al., arXiv 2601.21670; Zong et al., ACL 2026).

    Args:
        batch: ``{modality: (B, D)}`` raw embeddings, ``M >= 2``, ``B >= 2``; may hold ``"labels"`` and
            ``"mask"``.
        labels: ``(B,)`` class ids for ``margin/*`` (default: ``batch["labels"]`` if present).
        holder_bandwidth: KDE bandwidth of ``holder`` (default ``0.5``).
        conflict_anchor: anchor of ``zeta``/``chi`` (default: the first modality).
        temperature: InfoNCE temperature of ``zeta``.
        t: uniformity scale of ``uniform/*``.
        align_alpha: exponent of ``align/*`` (with the default 2 it equals ``drift/*``).
        max_negatives: cap on the negatives of ``ks/*`` (``None``: all ``B (B - 1)``).
        max_rows: cap on the rows of the quadratic diagnostics (``None``: all).
        holder_method: ``"auto"``, ``"exact"`` or ``"mc"`` (see :func:`holder_divergence`).
        holder_samples: Monte-Carlo samples per term of ``holder``.
        holder_max_tuples: exact-enumeration budget of ``holder`` under ``"auto"``.
        seed: seed of the Monte-Carlo generator.

    Example:
        >>> b = {"image": torch.randn(32, 8), "text": torch.randn(32, 8)}
        >>> sorted(diagnose(b))[:3]
        ['align/image-text', 'chi', 'cos_diff/image-text']
    """
    mods, mask = split_batch(batch)
    names = list(mods)
    rows = next(iter(mods.values())).shape[0]
    if labels is None:
        labels = batch.get("labels")
    labels = check_labels(labels, rows)
    anchor = check_anchor(conflict_anchor, names)
    bandwidth = DEFAULT_BANDWIDTH
    if holder_bandwidth is not None:
        bandwidth = check_positive(holder_bandwidth, "holder_bandwidth")
    check_positive(t, "t")
    check_positive(temperature, "temperature")
    if max_rows is not None and int(max_rows) < 2:
        raise ValueError(f"max_rows: expected an integer >= 2 or None, got {max_rows!r}")
    # The batch was checked once above (values included); the parts below only re-check shapes.
    with validation(False):
        return _diagnose(
            mods,
            mask,
            labels,
            anchor=anchor,
            bandwidth=bandwidth,
            temperature=temperature,
            t=t,
            align_alpha=align_alpha,
            max_negatives=max_negatives,
            max_rows=max_rows,
            holder_method=holder_method,
            holder_samples=holder_samples,
            holder_max_tuples=holder_max_tuples,
            seed=seed,
        )


def _diagnose(
    mods: dict[str, Tensor],
    mask: dict[str, Tensor],
    labels: Tensor | None,
    *,
    anchor: str,
    bandwidth: float,
    temperature: float,
    t: float,
    align_alpha: float,
    max_negatives: int | None,
    max_rows: int | None,
    holder_method: str,
    holder_samples: int,
    holder_max_tuples: int,
    seed: int,
) -> dict[str, float]:
    names = list(mods)

    out: dict[str, float] = {}
    for m, n in modality_pairs(names):
        key = pair_key(m, n)
        sel = present_rows(mask, (m, n))
        pair = select_rows(mods, (m, n), sel, min_rows=2, what=f"pair {key}")
        za, zb = pair[m], pair[n]
        out[f"gap/{key}"] = modality_gap(za, zb)
        for stat, value in cosine_stats(za, zb, max_negatives=max_negatives).items():
            out[f"{stat}/{key}"] = value
        out[f"align/{key}"] = float(alignment(za, zb, alpha=align_alpha))
        out[f"drift/{key}"] = drift(za, zb)
        out[f"norm_corr/{key}"] = norm_correlation(za, zb)

    for m in names:
        sel = present_rows(mask, (m,))
        z = select_rows(mods, (m,), sel, min_rows=2, what=f"modality {m}")[m]
        out[f"uniform/{m}"] = float(uniformity(_subsample({m: z}, max_rows)[m], t=t))
        out[f"erank/{m}"] = effective_rank(z)
        for stat, value in norm_stats(z).items():
            out[f"norm_{stat}/{m}"] = value
        if labels is not None:
            y = labels if sel is None else labels[sel.to(labels.device)]
            out[f"margin/{m}"] = semantic_margin(z, y)

    full = select_rows(mods, names, present_rows(mask, names), min_rows=2, what="all modalities")
    full = _subsample(full, max_rows)
    out["uniform/centroid"] = float(uniformity(centroid(*full.values()), t=t))
    out["holder"] = holder_divergence(
        full,
        bandwidth,
        method=holder_method,
        max_tuples=holder_max_tuples,
        n_samples=holder_samples,
        seed=seed,
    )
    out.update(conflict_metrics(full, anchor, temperature))
    return out

"""The local-loss regime of InfoNCE: each rank scores its own rows against the gathered columns.

For a pair ``(m, n)`` with the global logits ``S = a b^T / tau`` (rows L2-normalised), the symmetric
loss is ``L = 1/(2B) sum_i [CE(S_i, i) + CE(S^T_i, i)]``: a sum over rows. Rank ``r`` holding rows ``R_r``
computes ``L_r = W/(2B) sum_{i in R_r} [CE(S_i, i) + CE(S^T_i, i)]`` from its rows of ``S`` and of
``S^T`` (its local rows against every gathered row), so ``sum_r L_r = W L``. The gather's backward sums
every rank's contribution, giving rank r ``dL/dZ_r * W`` for its rows, and DDP's ``1/W`` gives the
single-process gradient — the same identity as the global regime (``docs/distributed.md``), with
``O(B_r B)`` logits per rank instead of ``O(B^2)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_batch, check_labels
from ..functional import normalize
from ..losses import InfoNCELoss, LossOutput
from ..losses.pairs import resolve_pairs
from .env import get_rank, get_world_size
from .gather import gather_rows, gather_with_grad


def supports_local(loss: nn.Module) -> bool:
    """Whether ``loss`` has a local-regime implementation (``InfoNCELoss``)."""
    return isinstance(loss, InfoNCELoss)


def _local_cross_entropy(
    queries: Tensor, keys: Tensor, tau: Tensor, start: int, labels_q: Tensor | None, labels_k: Tensor | None
) -> Tensor:
    """``sum_i CE(q_i . K^T / tau, target_i)`` over the local query rows; target = own global row or,
    with labels, the same-label distribution over the gathered rows."""
    logits = (queries @ keys.T) / tau
    logp = logits.log_softmax(dim=1)
    if labels_q is None or labels_k is None:
        rows = torch.arange(queries.shape[0], device=queries.device)
        return -logp[rows, rows + start].sum()
    same = (labels_q[:, None] == labels_k[None, :]).to(logp.dtype)
    soft = same / same.sum(dim=1, keepdim=True)
    return -(soft * logp).sum()


def local_info_nce_output(
    loss: nn.Module, batch: Mapping[str, Any], sizes: list[int], labels: Tensor | None = None, **kwargs: Any
) -> LossOutput:
    """This rank's share ``L_r`` of an :class:`~mmgeom.losses.InfoNCELoss` (see the module docstring).

    Args:
        loss: the InfoNCE module (its temperature, pair spec and anchor are used).
        batch: this rank's ``modality -> (B_r, D)`` (plus optional ``labels``).
        sizes: every rank's ``B_r``.
        labels: optional ``(B_r,)`` class ids (multi-positive targets).

    Returns:
        ``total = L_r`` (back-propagate it) and the per-pair shares as terms.
    """
    if not isinstance(loss, InfoNCELoss):
        raise ValueError(f"local regime: expected an InfoNCELoss, got {type(loss).__name__}")
    if kwargs:
        raise ValueError(f"infonce: unexpected arguments {sorted(kwargs)}")
    mods = check_batch(batch, min_modalities=2, min_rows=1)
    if labels is None:
        labels = batch.get("labels")
    rows = next(iter(mods.values())).shape[0]
    labels = check_labels(labels, rows)
    rank, world = get_rank(), get_world_size()
    start, total_rows = sum(sizes[:rank]), sum(sizes)
    if total_rows < 2:
        raise ValueError(f"infonce: expected at least 2 rows in the global batch, got {total_rows}")
    everyone = {m: normalize(gather_with_grad(z, sizes)) for m, z in mods.items()}
    mine = {m: z[start : start + rows] for m, z in everyone.items()}
    all_labels = gather_rows(labels, sizes) if labels is not None else None
    tau = loss.temperature()
    scale = world / (2.0 * total_rows)
    triples = resolve_pairs(loss.pairs, list(mods), loss.anchor)
    terms: dict[str, Tensor] = {}
    total: Tensor | None = None
    for m, n, w in triples:
        forward = _local_cross_entropy(mine[m], everyone[n], tau, start, labels, all_labels)
        backward = _local_cross_entropy(mine[n], everyone[m], tau, start, labels, all_labels)
        value = scale * (forward + backward)
        terms[f"pair/{m}-{n}"] = value.detach()
        total = w * value if total is None else total + w * value
    assert total is not None
    terms["temperature"] = tau.detach()
    return LossOutput(total / sum(w for _, _, w in triples), terms)

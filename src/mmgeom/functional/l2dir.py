"""L2Dir's magnitude-aware objectives: TN similarities, InfoTN, the release objective, magnitude targets.

The vectors named ``u``/``v`` here are *full* (un-normalised) embeddings, ``u_i = r_i · ẑ_i``: magnitude
is the point, so nothing here normalises them. ``q̂``/``p̂`` are directions (unit rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor

from .._validation import check_labels, check_pair
from ._common import EPS, accum_dtype, unit_and_norm
from .contrastive import info_nce_from_logits

#: Floor of the cosine inside the release pair term's ``-log`` (the public code's clamp).
RELEASE_COS_FLOOR = 1e-6
#: Temperature of the public release code (its ``InfoTNLoss`` default).
RELEASE_TEMPERATURE = 0.02


def directions_and_norms(x: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Unit rows and row norms of ``(B, D)`` inputs from one norm: ``(x / max(||x_i||, eps), ||x_i||)``.

    The directions are exactly :func:`mmgeom.functional.normalize`'s (accumulation dtype); L2Dir needs
    both the direction ``ẑ`` and the magnitude ``r = ||h||`` of each input, and the TN distance needs the
    norms of the full vectors ``u = r ẑ = h`` again, so computing ``||h||`` once saves a (B, D) reduction
    and its backward per use.
    """
    return unit_and_norm(x, eps)


def tn_distance_from_norms(u: Tensor, v: Tensor, norm_u: Tensor, norm_v: Tensor, eps: float = EPS) -> Tensor:
    """:func:`mmgeom.functional.tn_distance` ``||u_i - v_i|| / (||u_i|| + ||v_i||)`` with the norms given.

    ``norm_u``/``norm_v`` must be the ``(B,)`` row norms of ``u``/``v`` (e.g. from
    :func:`directions_and_norms`); unchecked (for loss modules that validated their batch).
    """
    u = u.to(accum_dtype(u))
    v = v.to(accum_dtype(v))
    return (u - v).norm(dim=1) / (norm_u + norm_v).clamp_min(eps)


def tn_similarity(u: Tensor, v: Tensor, eps: float = EPS) -> Tensor:
    """TN similarity matrix ``S_TN[i, j] = 1 - ||u_i - v_j|| / (||u_i|| + ||v_j||)``, values in ``[0, 1]``.

    1 exactly when ``u_i = v_j`` (same norm *and* direction), 0 when they point in opposite directions.
    It is invariant to a common rescaling of both sides but not to per-example magnitudes, so a ranking
    over it depends on magnitude. Distances use the exact difference form (not ``a² + b² - 2ab``), so a
    coinciding pair gives exactly 1 and a finite (zero) gradient.

    Reference: Zong et al., "L2-norm alignment and Directional consistency", ACL 2026 (InfoTN).

    Example:
        >>> u = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
        >>> tn_similarity(u, u).diagonal().tolist()
        [1.0, 1.0]
    """
    check_pair(u, v, ("u", "v"), normalised=False)
    u = u.to(accum_dtype(u))
    v = v.to(accum_dtype(v))
    dist = torch.cdist(u, v, compute_mode="donot_use_mm_for_euclid_dist")
    total = u.norm(dim=1)[:, None] + v.norm(dim=1)[None, :]
    return 1.0 - dist / total.clamp_min(eps)


def info_tn(
    u: Tensor,
    v: Tensor,
    temperature: float | Tensor = 0.07,
    labels: Tensor | None = None,
) -> Tensor:
    """InfoTN: symmetric cross-entropy over the TN similarities, ``(CE(S_TN/τ, T) + CE(S_TNᵀ/τ, T)) / 2``.

    ``T`` is the identity (row i's positive is column i), or the same-label target distribution when
    ``labels`` are given, exactly as :func:`info_nce` — only the logits differ: ``S_TN`` from
    :func:`tn_similarity` instead of cosines, so each example's magnitude takes part in the ranking.

    Reference: Zong et al., ACL 2026 (InfoTN; the public code logs a one-directional form).

    Args:
        u: ``(B, D)`` full vectors of the first modality (B >= 2), magnitudes included.
        v: ``(B, D)`` full vectors of the second modality, row i paired with ``u[i]``.
        temperature: ``τ > 0``.
        labels: optional ``(B,)`` class ids for multi-positive targets.
    """
    check_pair(u, v, ("u", "v"), min_rows=2, normalised=False)
    check_labels(labels, u.shape[0])
    return info_nce_from_logits(tn_similarity(u, v) / temperature, labels)


def norm_difference_logits(q: Tensor, p: Tensor) -> Tensor:
    """``N[i, j] = ||q_i|| - ||p_j||``: the release code's norm-difference "similarity".

    The release applies it to *already normalised* rows, so ``N ≈ 0`` everywhere (up to rounding) and
    ``CE(N/τ)`` is ``≈ log B`` with a gradient that vanishes through the normalisation; it is transcribed
    as published, not repaired.
    """
    check_pair(q, p, ("q", "p"), normalised=False)
    q = q.to(accum_dtype(q))
    p = p.to(accum_dtype(p))
    return q.norm(dim=1)[:, None] - p.norm(dim=1)[None, :]


def release_pair_term(
    q_dir: Tensor,
    p_dir: Tensor,
    u: Tensor,
    v: Tensor,
    eps: float = EPS,
) -> Tensor:
    """The release's pair term, query row ``2k`` against target row ``2k + 1`` across the two sides.

    ``L_pair = mean_k -log(clamp(cos(q̂_{2k}, p̂_{2k+1}), 1e-6, 1)) · ||u_{2k} - v_{2k+1}|| /
    (2(||u_{2k}|| + ||v_{2k+1}||))`` for ``k = 0 .. floor(B/2) - 1``. With an odd ``B`` the last row
    (``B - 1``) has no partner and is left out (the public code asserts an even batch instead).

    Args:
        q_dir: ``(B, D)`` query-side embeddings whose cosine is taken (normalised here).
        p_dir: ``(B, D)`` target-side embeddings, likewise.
        u: ``(B, D)`` full query-side vectors (magnitude times direction).
        v: ``(B, D)`` full target-side vectors.
    """
    check_pair(q_dir, p_dir, ("q_dir", "p_dir"), min_rows=2, normalised=False)
    check_pair(u, v, ("u", "v"), min_rows=2, normalised=False)
    if u.shape[0] != q_dir.shape[0]:
        raise ValueError(f"u: expected {q_dir.shape[0]} rows like q_dir, got {u.shape[0]}")
    half = q_dir.shape[0] // 2
    dt = accum_dtype(q_dir)
    qa = q_dir.to(dt)[0 : 2 * half : 2]
    pb = p_dir.to(dt)[1 : 2 * half : 2]
    cos = (qa * pb).sum(dim=1) / (qa.norm(dim=1) * pb.norm(dim=1)).clamp_min(eps)
    ua = u.to(accum_dtype(u))[0 : 2 * half : 2]
    vb = v.to(accum_dtype(v))[1 : 2 * half : 2]
    weight = (ua - vb).norm(dim=1) / (2.0 * (ua.norm(dim=1) + vb.norm(dim=1)).clamp_min(eps))
    return (-cos.clamp(RELEASE_COS_FLOOR, 1.0).log() * weight.to(cos.dtype)).mean()


def release_objective(
    q_dir: Tensor,
    p_dir: Tensor,
    u: Tensor,
    v: Tensor,
    temperature: float = RELEASE_TEMPERATURE,
) -> tuple[Tensor, Tensor, Tensor]:
    """The public L2Dir code's returned loss ``0.5 · L_pair + 0.5 · CE(N/τ, diagonal targets)``.

    ``L_pair`` is :func:`release_pair_term`; ``N`` is :func:`norm_difference_logits` of ``q_dir`` and
    ``p_dir`` as given — the release passes its *normalised* rows ``q̂``, ``p̂`` (so ``N ≈ 0``); the CE is
    one-directional (query rows over target columns, mean over rows), as in the public code.

    Args:
        q_dir: ``(B, D)`` query directions ``q̂`` (unit rows; B >= 2).
        p_dir: ``(B, D)`` target directions ``p̂``.
        u: ``(B, D)`` full query vectors.
        v: ``(B, D)`` full target vectors.
        temperature: ``τ_r`` of the norm-difference CE (the release's 0.02).

    Returns:
        ``(total, L_pair, CE(N/τ))``.
    """
    pair = release_pair_term(q_dir, p_dir, u, v)
    target = torch.arange(q_dir.shape[0], device=q_dir.device)
    norm_ce = nnf.cross_entropy(norm_difference_logits(q_dir, p_dir) / temperature, target)
    return 0.5 * pair + 0.5 * norm_ce, pair, norm_ce


def magnitude_reconstruction(r: Tensor, target: Tensor, centered: bool = True, eps: float = EPS) -> Tensor:
    """Squared error of log-magnitudes against target magnitudes (e.g. frozen feature norms).

    ``centered=False``: ``mean_i (log r_i - log t_i)²`` — the head reproduces the targets themselves.
    ``centered=True``: ``mean_i ((log r_i - mean_j log r_j) - (log t_i - mean_j log t_j))²`` — only the
    *relative* pattern (which example is larger, by what factor) is reconstructed; the overall level is
    left to the other terms (the norm alignment of positives across modalities, whose feature norms live
    on unrelated scales). Log space makes the error relative, so its size does not depend on the units of
    the feature.

    Args:
        r: ``(B,)`` predicted magnitudes ``> 0`` (gradients flow).
        target: ``(B,)`` target magnitudes ``> 0`` (treated as constants).
        centered: reconstruct only the relative pattern (see above).
    """
    if r.dim() != 1 or target.shape != r.shape:
        raise ValueError(
            f"magnitude_reconstruction: expected r and target of one shape (B,), got "
            f"{tuple(r.shape)} and {tuple(target.shape)}"
        )
    dt = accum_dtype(r)
    lr = r.to(dt).clamp_min(eps).log()
    lt = target.detach().to(dt).clamp_min(eps).log()
    if centered:
        lr = lr - lr.mean()
        lt = lt - lt.mean()
    return (lr - lt).pow(2).mean()

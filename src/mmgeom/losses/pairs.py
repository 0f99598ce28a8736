"""Which modality pairs a pairwise loss averages over."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

from torch import Tensor

from .._validation import check_anchor, check_positive

#: ``"all"``, ``"anchor"``, or explicit ``(m, n)`` / ``(m, n, weight)`` tuples.
PairSpec = str | Sequence[Sequence[object]]


def validate_pair_spec(pairs: PairSpec) -> None:
    """Check a pair spec at construction time (modality names are only checked against a batch)."""
    if isinstance(pairs, str):
        if pairs not in ("all", "anchor"):
            raise ValueError(f"pairs: expected 'all', 'anchor' or a list of (m, n[, weight]), got {pairs!r}")
        return
    if len(pairs) == 0:
        raise ValueError("pairs: the explicit pair list is empty")
    for p in pairs:
        if len(p) not in (2, 3) or not all(isinstance(x, str) for x in p[:2]):
            raise ValueError(f"pairs: expected (m, n) or (m, n, weight) with modality names, got {p!r}")
        if p[0] == p[1]:
            raise ValueError(f"pairs: a pair needs two different modalities, got {p!r}")
        if len(p) == 3:
            check_positive(float(p[2]), f"pairs weight of {p[0]}-{p[1]}")  # type: ignore[arg-type]


def resolve_pairs(
    pairs: PairSpec, modalities: Sequence[str], anchor: str | None = None
) -> list[tuple[str, str, float]]:
    """Expand a pair spec against the modalities of a batch into ``(m, n, weight)`` triples."""
    if pairs == "all":
        return [(m, n, 1.0) for m, n in combinations(modalities, 2)]
    if pairs == "anchor":
        a = check_anchor(anchor, modalities)
        return [(a, n, 1.0) for n in modalities if n != a]
    out = []
    for p in pairs:
        m, n = str(p[0]), str(p[1])
        for name in (m, n):
            if name not in modalities:
                raise ValueError(f"pairs: modality {name!r} is not in the batch {list(modalities)}")
        out.append((m, n, float(p[2]) if len(p) == 3 else 1.0))  # type: ignore[arg-type]
    return out


def weighted_pair_mean(
    triples: Sequence[tuple[str, str, float]],
    pair_loss: Callable[[str, str], Tensor],
    prefix: str = "pair",
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_p w_p L_p / sum_p w_p`` over resolved pairs, with each ``L_p`` named ``"{prefix}/m-n"``."""
    terms: dict[str, Tensor] = {}
    total: Tensor | None = None
    for m, n, w in triples:
        value = pair_loss(m, n)
        terms[f"{prefix}/{m}-{n}"] = value
        total = w * value if total is None else total + w * value
    if total is None:
        raise ValueError("pairs: no modality pair to compute the loss over")
    return total / sum(w for _, _, w in triples), terms

"""A user's feature store as the studies' data: the request checked, the parts read into memory.

``mmgeom study unialign|l2dir --store PATH`` run their protocol on a store's features instead of the
bundled data. :func:`read_store_parts` does what both need:

* **the request** — every asked modality must be in the store, the anchor among the chosen modalities,
  at least ``min_modalities`` of them; the store must have a ``train`` and a ``test`` split. A bad request
  is a ``ValueError`` naming the store, the key and what was expected.
* **validation rows** — the store's ``val`` split when it has one. Without one, a seeded
  ``val_fraction`` of the *training* rows is held out (:func:`holdout_rows`) and never trained on: every
  choice of the protocols is made on validation rows, so a store without them still gets some, and the
  test rows stay untouched by any choice.
* **missing modalities** — a row where a chosen modality is absent (presence mask) is dropped from every
  part: the protocols' losses and cross-view retrieval need every view of a row. The counts are reported.
* **labels** — a store label of ``-1`` means "no label"; :attr:`StoreParts.labelled` says whether every
  kept row has one (the parts of a protocol that need classes are skipped otherwise).
* **size** — ``max_rows`` caps each part by a seeded sample (the protocols hold the parts in memory and
  score test retrieval exactly, ``N x N``).

Features are read as float32 and returned raw; each study standardises with its own training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import FeatureStore, MultiViewDataset

__all__ = ["PARTS", "StoreParts", "check_request", "holdout_rows", "read_store_parts"]

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class StoreParts:
    """The parts of a store a study uses (raw float32 features of the chosen modalities, anchor first).

    Attributes:
        path: the store folder.
        modalities: the chosen modalities, the anchor first, then the others in the asked order.
        anchor: the anchor modality.
        parts: ``"train"``, ``"val"``, ``"test"`` -> in-memory dataset (labels ``-1`` where none).
        rows: part -> the store rows it holds (int64, ascending).
        labelled: every kept row has a class label (>= 0).
        val_source: ``"store"`` (the store's ``val`` split) or ``"holdout"`` (held out of ``train``).
        notes: sentences for the report: what was dropped, held out or sampled, and why.
    """

    path: Path
    modalities: tuple[str, ...]
    anchor: str
    parts: dict[str, MultiViewDataset]
    rows: dict[str, np.ndarray]
    labelled: bool
    val_source: str
    notes: list[str] = field(default_factory=list)


def holdout_rows(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, held)``: ``round(fraction * len(rows))`` rows (at least 1, at most ``len - 1``) drawn by
    ``numpy.random.default_rng(seed)`` from ``rows``; both sorted.

    Raises:
        ValueError: ``fraction`` not in ``(0, 1)`` or fewer than 2 rows.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {fraction!r}")
    if rows.size < 2:
        raise ValueError(f"train: expected at least 2 training rows to hold some out, got {rows.size}")
    n = min(rows.size - 1, max(1, round(fraction * rows.size)))
    perm = np.random.default_rng(seed).permutation(rows.size)
    return np.sort(rows[perm[n:]]), np.sort(rows[perm[:n]])


def check_request(
    store: FeatureStore,
    modalities: Sequence[str] | None,
    anchor: str | None,
    min_modalities: int,
    study: str,
) -> tuple[str, ...]:
    """The chosen modalities, anchor first; a ``ValueError`` naming the store and key on a bad request."""
    names = store.chosen_modalities(modalities)
    if len(names) < min_modalities:
        raise ValueError(
            f"{store.path}: modalities: the {study} study needs at least {min_modalities} modalities, "
            f"got {names}"
        )
    anchor = names[0] if anchor is None else anchor
    if anchor not in names:
        where = "the chosen modalities" if anchor in store.modalities else "the store"
        raise ValueError(f"{store.path}: anchor: {anchor!r} is not among {where}; expected one of {names}")
    return (anchor, *[m for m in names if m != anchor])


def read_store_parts(
    path: str | Path,
    *,
    modalities: Sequence[str] | None = None,
    anchor: str | None = None,
    min_modalities: int = 2,
    study: str = "",
    val_fraction: float = 0.1,
    max_rows: int | None = None,
    seed: int = 0,
) -> StoreParts:
    """Check the request and read a store's train / val / test parts (see the module docstring).

    Args:
        path: the store folder.
        modalities: modalities to use (``None``: all of the store's, in store order).
        anchor: the anchor modality (``None``: the first chosen one).
        min_modalities: fewest modalities the study can use.
        study: the study's name, for messages.
        val_fraction: share of the training rows held out when the store has no ``val`` split.
        max_rows: at most this many rows per part (a seeded sample; ``None``: all).
        seed: seed of the hold-out and of the sampling.

    Raises:
        ValueError: an unknown or repeated modality, an anchor outside the chosen modalities, too few
            modalities, no ``train``/``test`` split, a part left empty, ``max_rows < 1``; a
            :class:`~mmgeom.data.FeatureStoreError` (a ``ValueError``) for a store that does not open.
    """
    store = FeatureStore.open(path)
    order = check_request(store, modalities, anchor, min_modalities, study)
    if max_rows is not None and (isinstance(max_rows, bool) or int(max_rows) < 1):
        raise ValueError(f"max_rows: expected an integer >= 1 or None, got {max_rows!r}")
    for part in ("train", "test"):
        if part not in store.split_names:
            raise ValueError(
                f"{store.path}: split: the store has no {part!r} split (it has {list(store.split_names)}); "
                f"the {study} study trains on 'train' and reports on 'test'"
            )
    notes: list[str] = []
    rows = {p: store.indices(p) for p in PARTS if p in store.split_names}
    complete = {p: np.ones(r.size, dtype=bool) for p, r in rows.items()}
    for m in order:
        for p, r in rows.items():
            complete[p] &= store.present(m, r)
    dropped = {p: int((~c).sum()) for p, c in complete.items()}
    rows = {p: r[complete[p]] for p, r in rows.items()}
    if any(dropped.values()):
        notes.append(
            "Rows where a chosen modality is absent were dropped (every view of a row is needed): "
            + ", ".join(f"{p} {n}" for p, n in dropped.items())
            + "."
        )
    if "val" in rows:
        val_source = "store"
    else:
        rows["train"], rows["val"] = holdout_rows(rows["train"], val_fraction, seed)
        val_source = "holdout"
        notes.append(
            f"The store has no 'val' split: {rows['val'].size} of the training rows (a seeded "
            f"{val_fraction:g}, seed {seed}) were held out as validation rows and never trained on; every "
            "choice was made on them, the test rows played no part."
        )
    if max_rows is not None:
        gen = np.random.default_rng([seed, 1])
        for p in PARTS:
            if rows[p].size > max_rows:
                notes.append(f"{p}: a seeded sample of {max_rows} of its {rows[p].size} rows (max_rows).")
                rows[p] = np.sort(gen.choice(rows[p], size=int(max_rows), replace=False))
    for p in PARTS:
        if rows[p].size < 2:
            raise ValueError(
                f"{store.path}: split: part {p!r} has {rows[p].size} row(s) with every chosen modality "
                f"{list(order)}; expected at least 2"
            )
    labels = {p: torch.from_numpy(np.asarray(store.labels[r], dtype=np.int64)) for p, r in rows.items()}
    labelled = all(bool((y >= 0).all()) for y in labels.values())
    name = str(store.metadata.get("source", store.path.name))
    parts = {
        p: MultiViewDataset({m: store.read(m, rows=rows[p]) for m in order}, labels[p], name) for p in PARTS
    }
    return StoreParts(store.path, order, order[0], parts, rows, labelled, val_source, notes)

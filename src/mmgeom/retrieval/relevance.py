"""Which gallery items are relevant to each query, in compact forms.

Three representations, all read one query chunk at a time so that no ``(N_q, N_g)`` matrix is built
unless the user passed one:

* :class:`IndexRelevance` — CSR lists of gallery indices (one positive per query, five captions per
  image, any list of lists);
* :class:`MaskRelevance` — a dense boolean ``(N_q, N_g)`` matrix, as given;
* :class:`LabelRelevance` — same-label retrieval from ``(N_q,)`` and ``(N_g,)`` class ids (positives are
  expanded per query chunk only).

:func:`as_relevance` turns any accepted input into one of these and checks it: indices inside
``[0, N_g)``, and at least one positive per query (a query with no positive has no rank; this is an
error rather than a silent 0 or a skipped query).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def padded_from_mask(m: Tensor) -> Tensor:
    """``(r, P)`` ascending column indices of the True entries of each row, padded with ``-1``."""
    counts = m.sum(dim=1)
    width = int(counts.max()) if m.shape[0] else 0
    out = torch.full((m.shape[0], width), -1, dtype=torch.long)
    row, col = m.nonzero(as_tuple=True)
    pos = torch.arange(row.numel()) - (torch.cumsum(counts, 0) - counts)[row]
    out[row, pos] = col
    return out


class Relevance:
    """Base class: positives of each query, read by query chunk ``[start, stop)``."""

    num_queries: int
    num_gallery: int

    def counts(self, start: int, stop: int) -> Tensor:
        """``(r,)`` int64 number of positives of each query in the chunk."""
        raise NotImplementedError

    def padded(self, start: int, stop: int) -> Tensor:
        """``(r, P)`` int64 positive gallery indices, ascending, padded with ``-1`` (P = chunk max)."""
        raise NotImplementedError

    def mask(self, start: int, stop: int) -> Tensor:
        """``(r, N_g)`` boolean positives of the chunk's queries."""
        rows = self.padded(start, stop)
        out = torch.zeros(rows.shape[0], self.num_gallery + 1, dtype=torch.bool)
        out.scatter_(1, torch.where(rows < 0, self.num_gallery, rows), True)
        return out[:, : self.num_gallery]

    def max_count(self, start: int, stop: int) -> int:
        return int(self.counts(start, stop).max())

    def _check_nonempty(self) -> None:
        counts = self.counts(0, self.num_queries)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            raise ValueError(
                f"relevance: {empty.numel()} of {self.num_queries} queries have no positive "
                f"(first: query {int(empty[0])}); every query needs at least one relevant gallery item"
            )


class IndexRelevance(Relevance):
    """CSR positives: query ``i`` is relevant to ``indices[indptr[i]:indptr[i + 1]]`` (ascending, unique).

    Args:
        indptr: ``(N_q + 1,)`` int64 offsets.
        indices: ``(nnz,)`` int64 gallery indices.
        num_gallery: ``N_g``.
    """

    def __init__(self, indptr: Tensor, indices: Tensor, num_gallery: int) -> None:
        self.indptr = indptr.to(torch.long).cpu()
        self.indices = indices.to(torch.long).cpu()
        self.num_queries = int(self.indptr.numel()) - 1
        self.num_gallery = int(num_gallery)
        if self.indices.numel():
            lo, hi = int(self.indices.min()), int(self.indices.max())
            if lo < 0 or hi >= self.num_gallery:
                bad = lo if lo < 0 else hi
                at = (self.indices == bad).nonzero()[0]
                query = int(torch.searchsorted(self.indptr, at, right=True)) - 1
                raise ValueError(
                    f"relevance: query {query} lists gallery index {bad}, "
                    f"outside [0, N_g = {self.num_gallery})"
                )
        self._check_nonempty()

    @classmethod
    def from_lists(
        cls, lists: Sequence[Sequence[int]] | Sequence[Tensor], num_gallery: int
    ) -> IndexRelevance:
        """From one list of gallery indices per query (duplicates dropped, order irrelevant)."""
        rows = [np.unique(np.asarray(row, dtype=np.int64).reshape(-1)) for row in lists]
        counts = torch.tensor([len(r) for r in rows], dtype=torch.long)
        indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return cls(indptr, torch.from_numpy(flat), num_gallery)

    @classmethod
    def from_single(cls, index: Tensor, num_gallery: int) -> IndexRelevance:
        """One positive per query: ``index[i]`` is query ``i``'s gallery item."""
        indptr = torch.arange(index.numel() + 1, dtype=torch.long)
        return cls(indptr, index.reshape(-1), num_gallery)

    def counts(self, start: int, stop: int) -> Tensor:
        return self.indptr[start + 1 : stop + 1] - self.indptr[start:stop]

    def padded(self, start: int, stop: int) -> Tensor:
        counts = self.counts(start, stop)
        r, width = stop - start, int(counts.max()) if stop > start else 0
        out = torch.full((r, width), -1, dtype=torch.long)
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        row = torch.repeat_interleave(torch.arange(r), counts)
        pos = torch.arange(hi - lo) - (self.indptr[start:stop] - lo)[row]
        out[row, pos] = self.indices[lo:hi]
        return out


class MaskRelevance(Relevance):
    """Dense boolean ``(N_q, N_g)`` relevance, used as given."""

    def __init__(self, mask: Tensor) -> None:
        self.matrix = mask.to(torch.bool).cpu()
        self.num_queries, self.num_gallery = (int(s) for s in self.matrix.shape)
        self._check_nonempty()

    def counts(self, start: int, stop: int) -> Tensor:
        return self.matrix[start:stop].sum(dim=1)

    def mask(self, start: int, stop: int) -> Tensor:
        return self.matrix[start:stop]

    def padded(self, start: int, stop: int) -> Tensor:
        return padded_from_mask(self.matrix[start:stop])


class LabelRelevance(Relevance):
    """Same-label relevance: gallery item ``j`` is a positive of query ``i`` iff their labels are equal.

    Args:
        query_labels: ``(N_q,)`` integer class ids.
        gallery_labels: ``(N_g,)`` integer class ids.
    """

    def __init__(self, query_labels: Tensor, gallery_labels: Tensor) -> None:
        self.query_labels = query_labels.to(torch.long).cpu().reshape(-1)
        self.gallery_labels = gallery_labels.to(torch.long).cpu().reshape(-1)
        self.num_queries = int(self.query_labels.numel())
        self.num_gallery = int(self.gallery_labels.numel())
        classes, inverse = torch.unique(self.gallery_labels, return_inverse=True)
        per_class = torch.bincount(inverse, minlength=classes.numel())
        pos = torch.searchsorted(classes, self.query_labels).clamp(max=max(classes.numel() - 1, 0))
        found = classes[pos] == self.query_labels
        self._counts = torch.where(found, per_class[pos], 0)
        self._check_nonempty()

    def counts(self, start: int, stop: int) -> Tensor:
        return self._counts[start:stop]

    def mask(self, start: int, stop: int) -> Tensor:
        return self.query_labels[start:stop, None] == self.gallery_labels[None, :]

    def padded(self, start: int, stop: int) -> Tensor:
        return padded_from_mask(self.mask(start, stop))


def _integer_tensor(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer ids, got dtype {t.dtype}")
    return t


def relevance_from_labels(
    query_labels: Tensor | np.ndarray, gallery_labels: Tensor | np.ndarray
) -> LabelRelevance:
    """Same-class relevance from class ids, kept as labels (positives are expanded per query chunk).

    Also covers "five captions per image": for image queries against a caption gallery pass
    ``query_labels = arange(N_images)`` and ``gallery_labels = image id of each caption``.

    Args:
        query_labels: ``(N_q,)`` integer class ids.
        gallery_labels: ``(N_g,)`` integer class ids.

    Example:
        >>> rel = relevance_from_labels(torch.tensor([0, 1]), torch.tensor([1, 0, 0]))
        >>> rel.counts(0, 2).tolist()
        [2, 1]
    """
    q = _integer_tensor(query_labels, "query_labels")
    g = _integer_tensor(gallery_labels, "gallery_labels")
    if q.dim() != 1:
        raise ValueError(f"query_labels: expected shape (N_q,), got {tuple(q.shape)}")
    if g.dim() != 1:
        raise ValueError(f"gallery_labels: expected shape (N_g,), got {tuple(g.shape)}")
    return LabelRelevance(q, g)


def as_relevance(relevance: object, num_queries: int, num_gallery: int) -> Relevance:
    """Turn a user's relevance argument into a :class:`Relevance` and check it against the sizes.

    Accepted: a :class:`Relevance`; a ``(N_q,)`` integer tensor/array (one positive each); a boolean
    ``(N_q, N_g)`` tensor/array; a list of ``N_q`` index lists.
    """
    rel: Relevance
    if isinstance(relevance, Relevance):
        rel = relevance
    elif isinstance(relevance, (Tensor, np.ndarray)):
        t = torch.from_numpy(np.asarray(relevance)) if isinstance(relevance, np.ndarray) else relevance
        if t.dim() == 1:
            rel = IndexRelevance.from_single(_integer_tensor(t, "relevance"), num_gallery)
        elif t.dim() == 2 and t.dtype == torch.bool:
            if t.shape[1] != num_gallery:
                raise ValueError(
                    f"relevance: expected a boolean matrix of shape ({num_queries}, {num_gallery}), "
                    f"got {tuple(t.shape)}"
                )
            rel = MaskRelevance(t)
        else:
            raise ValueError(
                "relevance: expected a (N_q,) integer tensor, a boolean (N_q, N_g) matrix or a list of "
                f"index lists, got a tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
            )
    elif isinstance(relevance, (list, tuple)):
        rel = IndexRelevance.from_lists(relevance, num_gallery)
    else:
        raise ValueError(
            "relevance: expected a (N_q,) integer tensor, a boolean (N_q, N_g) matrix or a list of "
            f"index lists, got {type(relevance).__name__}"
        )
    if rel.num_queries != num_queries:
        raise ValueError(
            f"relevance: expected {num_queries} queries (one per query row), got {rel.num_queries}"
        )
    if rel.num_gallery != num_gallery:
        raise ValueError(f"relevance: expected N_g = {num_gallery} gallery items, got {rel.num_gallery}")
    return rel

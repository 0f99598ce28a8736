"""The in-memory multi-view dataset: several aligned feature matrices (views) plus class labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._validation import RESERVED_KEYS


@dataclass(frozen=True)
class MultiViewDataset:
    """Aligned views of the same examples: row ``i`` of every view is example ``i``.

    Attributes:
        views: view name -> ``(N, D_view)`` float32 tensor, in the dataset's view order.
        labels: ``(N,)`` int64 class ids.
        name: short dataset name (``"mfeat"``).
        class_names: optional names of the classes, indexed by class id.

    Raises:
        ValueError: on a non-2-D view, a row count that differs between views or from ``labels``, a
            reserved view name (``labels``/``mask``), non-finite entries, or no view at all.
    """

    views: dict[str, Tensor]
    labels: Tensor
    name: str = ""
    class_names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"{self.name or 'dataset'}: expected at least one view, got none")
        if not isinstance(self.labels, Tensor) or self.labels.dim() != 1:
            shape = tuple(self.labels.shape) if isinstance(self.labels, Tensor) else type(self.labels)
            raise ValueError(f"labels: expected a (N,) tensor, got {shape}")
        if self.labels.is_floating_point():
            raise ValueError(f"labels: expected integer class ids, got dtype {self.labels.dtype}")
        n = self.labels.shape[0]
        for view, x in self.views.items():
            if view in RESERVED_KEYS:
                raise ValueError(f"view name {view!r} is reserved for batch metadata ({RESERVED_KEYS})")
            if not isinstance(x, Tensor) or x.dim() != 2:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{view}: expected a (N, D) tensor, got {shape}")
            if x.shape[0] != n:
                raise ValueError(f"{view}: expected {n} rows (one per label), got shape {tuple(x.shape)}")
            if x.dtype != torch.float32:
                raise ValueError(f"{view}: expected dtype float32, got {x.dtype}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{view}: contains NaN or Inf entries")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def view_names(self) -> tuple[str, ...]:
        """The view names in order."""
        return tuple(self.views)

    @property
    def view_dims(self) -> dict[str, int]:
        """View name -> feature dimension ``D_view``."""
        return {k: int(v.shape[1]) for k, v in self.views.items()}

    @property
    def num_classes(self) -> int:
        """``max(label) + 1`` (0 for an empty dataset)."""
        return int(self.labels.max()) + 1 if len(self) else 0

    def select_views(self, names: Sequence[str] | None) -> MultiViewDataset:
        """A dataset with only ``names``, in that order (``None`` keeps all views).

        Raises:
            ValueError: on an unknown or repeated view name, or an empty selection.
        """
        if names is None:
            return self
        names = list(names)
        if not names:
            raise ValueError("views: expected at least one view name, got an empty list")
        seen: set[str] = set()
        for v in names:
            if v not in self.views:
                raise ValueError(
                    f"views: unknown view {v!r}; {self.name or 'the dataset'} has {list(self.views)}"
                )
            if v in seen:
                raise ValueError(f"views: view {v!r} is listed twice")
            seen.add(v)
        return MultiViewDataset({v: self.views[v] for v in names}, self.labels, self.name, self.class_names)

    def subset(self, indices: Tensor | Sequence[int]) -> MultiViewDataset:
        """The rows ``indices`` of every view (and of the labels), in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return MultiViewDataset(
            {k: v[idx] for k, v in self.views.items()}, self.labels[idx], self.name, self.class_names
        )

    def batch(self, indices: Tensor | None = None, *, with_labels: bool = False) -> dict[str, Tensor]:
        """A batch dict ``view -> (B, D_view)`` of rows ``indices`` (all rows when ``None``).

        Args:
            indices: row indices; ``None`` for the whole dataset.
            with_labels: add the ``"labels"`` entry.
        """
        if indices is None:
            out = dict(self.views)
            labels = self.labels
        else:
            out = {k: v[indices] for k, v in self.views.items()}
            labels = self.labels[indices]
        if with_labels:
            out["labels"] = labels
        return out


def check_view_mapping(views: Mapping[str, Tensor], dims: Mapping[str, int]) -> None:
    """Check that every view in ``views`` is known to ``dims`` and has that feature dimension."""
    for v, x in views.items():
        if v not in dims:
            raise ValueError(f"{v}: unknown view; expected one of {list(dims)}")
        if x.dim() != 2 or x.shape[1] != dims[v]:
            raise ValueError(f"{v}: expected shape (N, {dims[v]}), got {tuple(x.shape)}")

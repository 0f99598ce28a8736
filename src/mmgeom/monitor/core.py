"""Geometry and retrieval of held-out pairs, every N steps of anybody's training loop.

:class:`GeometryMonitor` holds a fixed evaluation subset (at most ``max_rows`` rows, chosen once with a
seeded generator), an encoder callable and its sinks. At each due step it embeds the subset once with
:func:`mmgeom.evaluation.embed` (eval mode, no autograd graph, the module's train/eval mode restored),
computes :func:`mmgeom.evaluation.cross_view_retrieval` (exact ranks) and
:func:`mmgeom.evaluation.geometry_diagnostics` (:func:`mmgeom.geometry.diagnose`) on those embeddings and
writes the flat dict to TensorBoard, a JSONL file and/or a callback. The keys are those of a run's
``metrics.jsonl`` evaluation events, so ``mmgeom report`` and ``mmgeom compare`` read a monitor's JSONL
file as they read a run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import MultiViewDataset
from ..data.features import FeatureStore
from ..evaluation import cross_view_retrieval, embed, geometry_diagnostics
from ..train.logging import JsonlWriter
from ..train.logging.tensorboard import TensorBoardLogger

__all__ = ["GeometryMonitor", "MonitorCallback"]

#: Turns one batch (view -> ``(B, D_v)`` rows) into named embeddings (name -> ``(B, D)``).
EncodeFn = Callable[[Mapping[str, Tensor]], Mapping[str, Tensor]]
#: ``callback(step, metrics)``, called after every evaluation.
MonitorCallback = Callable[[int, dict[str, float]], None]


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_dataset(
    data: MultiViewDataset | FeatureStore | str | Path | Mapping[str, Any],
    labels: Tensor | np.ndarray | Sequence[int] | None,
    split: str | None,
) -> MultiViewDataset:
    """The held-out rows as one in-memory :class:`MultiViewDataset` (a store's split is read here)."""
    if isinstance(data, MultiViewDataset):
        if labels is not None:
            raise ValueError("labels: a MultiViewDataset carries its own labels; pass labels=None")
        return data
    if isinstance(data, (str, Path)):
        data = FeatureStore.open(data)
    if isinstance(data, FeatureStore):
        if labels is not None:
            raise ValueError("labels: a feature store carries its own labels; pass labels=None")
        idx = data.indices(split)  # FeatureStoreError (a ValueError) naming the store's splits
        views = {
            m: torch.from_numpy(np.asarray(data.array(m)[idx], dtype=np.float32)) for m in data.modalities
        }
        return MultiViewDataset(views, torch.from_numpy(np.asarray(data.labels[idx], dtype=np.int64)))
    if not isinstance(data, Mapping) or len(data) < 2:
        raise ValueError(
            "data: expected a MultiViewDataset, a FeatureStore (or its folder) or a mapping of at least "
            f"two views -> (N, D) tensors, got {type(data).__name__}"
        )
    views = {str(k): torch.as_tensor(v) for k, v in data.items()}
    n = next(iter(views.values())).shape[0]
    y = torch.zeros(n, dtype=torch.long) if labels is None else torch.as_tensor(labels, dtype=torch.long)
    return MultiViewDataset(views, y)  # validates shapes and row counts, naming the view


class GeometryMonitor:
    """Every ``every`` steps: embed a fixed held-out subset once, log retrieval and geometry.

    Cost is bounded: one forward pass over at most ``max_rows`` rows per evaluation, without gradients;
    the diagnostics' quadratic parts are capped by :func:`~mmgeom.geometry.diagnose` itself.

    Args:
        data: held-out paired inputs: a :class:`~mmgeom.data.MultiViewDataset`, a
            :class:`~mmgeom.data.FeatureStore` or its folder (rows of ``split``), or a mapping
            view -> ``(N, D_v)`` tensor with rows aligned across views.
        encode: batch (view -> ``(B, D_v)``) -> named embeddings (name -> ``(B, D)``); default: ``module``
            itself. The Lightning and Hugging Face adapters bind ``module`` to the trained model.
        module: the ``nn.Module`` whose mode is switched to eval for the pass and restored afterwards
            (default: ``encode`` when it is a module).
        every: evaluate at steps ``0, every, 2 every, ...`` (:meth:`due`).
        max_rows: size of the fixed evaluation subset (rows drawn once, seeded, kept in dataset order).
        labels: ``(N,)`` class ids for the label-aware diagnostics when ``data`` is a mapping (they are
            skipped without labels, or when the subset holds a single class).
        split: the split of a feature store to read (``None``: every row).
        keys: which embeddings to score, in this order (default: the data's view names).
        pairs: ``(query, gallery)`` pairs to score (default: every pair of ``keys``).
        ks: hit@K cut-offs.
        tensorboard: a log directory for TensorBoard event files (needs ``pip install tensorboard``).
        jsonl: a JSONL file; each evaluation is one ``{"event": "eval", "step": ..., ...}`` line and
            :meth:`record_loss` adds ``"train"`` lines, as in a run's ``metrics.jsonl``.
        callback: ``callback(step, metrics)`` after each evaluation.
        device: where batches go (default: the device of the module's first parameter, else unchanged).
        batch_size: rows per forward pass.
        seed: seed of the subset draw and of the diagnostics' Monte-Carlo estimate.

    Example:
        >>> monitor = GeometryMonitor(val_views, encode=model.encode, module=model, every=100,
        ...                           jsonl="runs/me/metrics.jsonl")        # doctest: +SKIP
        >>> for step, batch in enumerate(loader):                          # doctest: +SKIP
        ...     loss = ...; loss.backward(); opt.step()
        ...     monitor.step(step + 1, loss=loss.item())
    """

    def __init__(
        self,
        data: MultiViewDataset | FeatureStore | str | Path | Mapping[str, Any],
        encode: EncodeFn | None = None,
        *,
        module: nn.Module | None = None,
        every: int = 100,
        max_rows: int = 512,
        labels: Tensor | np.ndarray | Sequence[int] | None = None,
        split: str | None = None,
        keys: Sequence[str] | None = None,
        pairs: Sequence[tuple[str, str]] | None = None,
        ks: Sequence[int] = (1, 5, 10),
        tensorboard: str | Path | None = None,
        jsonl: str | Path | None = None,
        callback: MonitorCallback | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        self.every = _positive_int(every, "every")
        max_rows = _positive_int(max_rows, "max_rows", minimum=2)
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.seed = int(seed)
        full = _as_dataset(data, labels, split)
        if len(full) < 2:
            raise ValueError(f"data: expected at least 2 held-out rows, got {len(full)}")
        if len(full) > max_rows:
            gen = torch.Generator().manual_seed(self.seed)
            rows = torch.randperm(len(full), generator=gen)[:max_rows].sort().values
            full = full.subset(rows)
        self.data = full
        # Label-aware diagnostics (margin/*) need at least two classes among the rows; mapping inputs
        # without labels get placeholder zeros above and are diagnosed without labels.
        has_labels = not (isinstance(data, Mapping) and labels is None)
        self.labels = full.labels if has_labels and full.labels.unique().numel() >= 2 else None
        self.keys = list(keys) if keys is not None else list(full.view_names)
        if len(self.keys) < 2:
            raise ValueError(f"keys: expected at least two embeddings to compare, got {self.keys}")
        self.pairs: list[tuple[str, str]] = (
            [(str(q), str(g)) for q, g in pairs] if pairs is not None else list(combinations(self.keys, 2))
        )
        for q, g in self.pairs:
            for name in (q, g):
                if name not in self.keys:
                    raise ValueError(f"pairs: {name!r} is not one of the scored embeddings {self.keys}")
        self.ks = tuple(ks)
        self.encode = encode
        self.module = module if module is not None else (encode if isinstance(encode, nn.Module) else None)
        self.device = device
        self.callback = callback
        self.history: list[tuple[int, dict[str, float]]] = []
        self._losses: list[float] = []
        self._tb = TensorBoardLogger(tensorboard) if tensorboard is not None else None
        self._jsonl = JsonlWriter(jsonl) if jsonl is not None else None

    def bind(self, module: nn.Module) -> None:
        """Use ``module`` as the model (its mode is restored after each pass; the default encoder)."""
        self.module = module

    def due(self, step: int) -> bool:
        """Whether ``step`` is an evaluation step (a multiple of ``every``, step 0 included)."""
        return int(step) % self.every == 0

    def _device(self, module: nn.Module) -> str | torch.device | None:
        if self.device is not None:
            return self.device
        first = next(module.parameters(), None)
        return first.device if first is not None else None

    def embed(self) -> dict[str, Tensor]:
        """Embeddings of the evaluation subset: name -> ``(n, D)`` float32 on the CPU."""
        module = self.module
        run = self.encode
        if module is None and run is None:
            raise ValueError("encode: give an encoder callable or a module (or bind() one) to embed with")
        if module is None:
            module = nn.Module()  # a stand-in whose mode embed() can switch; the callable runs as given
        if run is None:
            run = module
        device = self._device(module)
        return embed(module, self.data, encode=run, keys=self.keys, device=device, batch_size=self.batch_size)

    def metrics(self, embeddings: Mapping[str, Tensor]) -> dict[str, float]:
        """Retrieval (``retrieval/...``), diagnostics (``geometry/...``) and ``chance/hit@1``."""
        out = cross_view_retrieval(embeddings, self.pairs, "both", self.ks)
        out.update(geometry_diagnostics(embeddings, self.labels))
        out["chance/hit@1"] = 1.0 / len(self.data)
        return out

    def evaluate(self, step: int) -> dict[str, float]:
        """Embed the subset, compute every metric, send them to the sinks; returns them."""
        values = self.metrics(self.embed())
        self.history.append((int(step), values))
        if self._tb is not None:
            self._tb.scalars(int(step), values)
        if self._jsonl is not None:
            self._jsonl.write("eval", int(step), split="monitor", **values)
        if self.callback is not None:
            self.callback(int(step), values)
        return values

    def record_loss(self, loss: float | Tensor) -> None:
        """Remember a training loss; its mean since the last evaluation is logged at the next one."""
        self._losses.append(float(loss.detach()) if isinstance(loss, Tensor) else float(loss))

    def step(self, step: int, loss: float | Tensor | None = None) -> dict[str, float] | None:
        """Call after each optimiser step (``step`` = updates so far): evaluates when :meth:`due`.

        Args:
            step: the number of updates made so far.
            loss: this step's training loss (optional); the interval mean is logged as ``loss`` in a
                ``"train"`` event (JSONL) and as ``train/loss`` (TensorBoard) at each due step.

        Returns:
            The metrics when this step was evaluated, else ``None``.
        """
        if loss is not None:
            self.record_loss(loss)
        if not self.due(step):
            return None
        if self._losses:
            mean = sum(self._losses) / len(self._losses)
            self._losses.clear()
            self.log_train(step, loss=mean)
        return self.evaluate(step)

    def log_train(self, step: int, **scalars: float) -> None:
        """Write training scalars now: a ``"train"`` JSONL event and ``train/<name>`` TensorBoard tags."""
        if self._jsonl is not None:
            self._jsonl.write("train", int(step), **scalars)
        if self._tb is not None:
            self._tb.scalars(int(step), scalars, prefix="train/")

    def close(self) -> None:
        """Flush and close the TensorBoard and JSONL files (idempotent)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

"""Apply a trained encoder's heads to every row of a feature store and write the embeddings as a new store.

This is what a user ships to a search index: one ``(N, out_dim)`` embedding per modality, with the input
store's ids, labels, split and presence masks carried over. Rows are read in chunks from the memory maps,
standardised with the statistics the run trained with, encoded without gradients and written through the
resumable, atomic store builder, so memory stays bounded and an interrupted run continues.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.features import FeatureStore
from ..data.importers.base import Block, Source, file_fingerprint, run_import
from ..data.standardize import Standardizer
from ..data.store_format import FeatureStoreError

__all__ = ["EncodedStore", "embed_store"]


class EncodedStore(Source):
    """The rows of ``store`` passed through ``encoder`` (a :class:`~mmgeom.data.importers.Source`)."""

    def __init__(
        self,
        store: FeatureStore,
        encoder: nn.Module,
        modalities: Sequence[str],
        out_dim: int,
        standardizer: Standardizer | None,
        *,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        extra_metadata: dict[str, Any] | None = None,
    ) -> None:
        missing = [m for m in modalities if m not in store.modalities]
        if missing:
            raise FeatureStoreError(
                f"{store.path}: no modality {missing[0]!r}; the run encodes {list(modalities)}, "
                f"the store has {list(store.modalities)}"
            )
        self.store, self.encoder, self.modalities = store, encoder, list(modalities)
        self.standardizer, self.device = standardizer, torch.device(device)
        self.num_rows = store.num_rows
        self.specs = {m: (int(out_dim), dtype) for m in self.modalities}
        self.extra_metadata = dict(extra_metadata or {})

    @torch.no_grad()
    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        split = self.store.split  # (N,) names: small next to the features
        for a in range(start, self.num_rows, chunk_rows):
            rows = np.arange(a, min(a + chunk_rows, self.num_rows))
            views, present = {}, {}
            for m in self.modalities:
                x = self.store.read(m, rows=rows)
                if self.standardizer is not None:
                    x = (x - self.standardizer.mean[m]) / self.standardizer.scale[m]
                keep = self.store.present(m, rows)
                x[torch.from_numpy(~keep)] = 0.0
                views[m], present[m] = x.to(self.device), keep
            emb = self.encoder(views)
            yield Block(
                a,
                {m: emb[m].float().cpu().numpy() for m in self.modalities},
                present,
                ids=np.asarray(self.store.ids[rows]),
                labels=np.asarray(self.store.labels[rows]),
                split=split[rows],
            )

    def locate(self, modality: str, row: int) -> str:
        return f"{self.store.path}, row {row} (encoded {modality!r})"

    def fingerprint(self) -> dict[str, Any]:
        files = [self.store.path / "manifest.json"] + [
            self.store.path / s["file"] for s in self.store.manifest["modalities"].values()
        ]
        weights = sum(float(p.detach().double().sum()) for p in self.encoder.parameters())
        return {"kind": "embed", "files": file_fingerprint(files), "weights_sum": weights}

    def metadata(self) -> dict[str, Any]:
        meta = {"source": "embed", "input": str(self.store.path), "input_metadata": self.store.metadata}
        return {**meta, **self.extra_metadata}


def embed_store(
    encoder: nn.Module,
    store: str | Path | FeatureStore,
    out: str | Path,
    *,
    modalities: Sequence[str],
    out_dim: int,
    standardizer: Standardizer | None,
    metadata: dict[str, Any] | None = None,
    chunk_rows: int = 16384,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = False,
) -> FeatureStore:
    """Write ``encoder``'s embeddings of every row of ``store`` to a new store at ``out``.

    Args:
        encoder: a :class:`~mmgeom.models.MultiViewEncoder` (put in eval mode here).
        store: the input store (or its folder).
        modalities: the modalities to encode (the run's views).
        out_dim: the encoder's output dimension.
        standardizer: the run's training statistics (``None``: the run did not standardise).
        metadata: extra JSON recorded in the output store (run directory, weights, step).
        chunk_rows: rows per chunk.
        device: where the encoder runs.
        overwrite: replace an existing store at ``out``.
        progress: show a progress bar.

    Returns:
        The written store: modality → ``(N, out_dim)`` float32 embeddings, same ids/labels/split/masks.
    """
    src_store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    encoder.eval()
    source = EncodedStore(
        src_store, encoder, modalities, out_dim, standardizer, device=device, extra_metadata=metadata
    )
    path = run_import(source, out, chunk_rows=chunk_rows, overwrite=overwrite, progress=progress)
    return FeatureStore.open(path)

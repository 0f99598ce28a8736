"""The folder ``clip-retrieval inference`` writes: ``img_emb/``, ``text_emb/`` and ``metadata/`` shards.

Layout (shards numbered from 0, rows aligned across the three)::

    img_emb/img_emb_0.npy      (n_0, D) image embeddings      -> modality "image"
    text_emb/text_emb_0.npy    (n_0, D) caption embeddings    -> modality "text"
    metadata/metadata_0.parquet n_0 rows (image_path, caption, url, ...)

The embeddings are memory-mapped; the metadata is read in record batches with pyarrow (only the id,
label and split columns asked for), so nothing is loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..store_format import FeatureStoreError
from .arrays import ArraysSource, expand_shards
from .base import Block, file_fingerprint
from .tables import TableReader

__all__ = ["ClipRetrievalSource"]


class ClipRetrievalSource(ArraysSource):
    """Rows of a ``clip-retrieval`` output folder.

    Args:
        root: the folder with ``img_emb/`` and/or ``text_emb/`` (and optionally ``metadata/``).
        id_column, label_column, split_column: metadata columns to keep (e.g. ``image_path`` as ids).
        dtype: store dtype (``None``: the shards' own, float16 from clip-retrieval).
        kernel_copy: copy shards that match the store byte for byte inside the kernel
            (:class:`~.arrays.ArraysSource`).

    Raises:
        FeatureStoreError: no embedding folder, row counts that disagree (naming the folders).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        id_column: str | None = None,
        label_column: str | None = None,
        split_column: str | None = None,
        dtype: str | None = None,
        kernel_copy: bool = True,
    ) -> None:
        self.root = Path(root)
        mods = {
            m: str(self.root / f"{d}_emb" / f"{d}_emb_*.npy")
            for m, d in (("image", "img"), ("text", "text"))
            if (self.root / f"{d}_emb").is_dir()
        }
        if not mods:
            raise FeatureStoreError(f"{self.root}: no img_emb/ or text_emb/ folder (clip-retrieval layout)")
        super().__init__(mods, dtype=dtype, kernel_copy=kernel_copy)
        self.id_column, self.label_column, self.split_column = id_column, label_column, split_column
        cols = [c for c in (id_column, label_column, split_column) if c]
        self.meta: TableReader | None = None
        if cols:
            files = expand_shards(str(self.root / "metadata" / "metadata_*.parquet"))
            self.meta = TableReader(files, cols)
            if self.meta.num_rows != self.num_rows:
                raise FeatureStoreError(
                    f"{self.root / 'metadata'}: {self.meta.num_rows} rows, but the embeddings have "
                    f"{self.num_rows}; the metadata shards must align with img_emb/text_emb"
                )

    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        if self.meta is None:
            yield from super().blocks(start, chunk_rows)
            return
        for first, table in self.meta.tables(start, chunk_rows):
            b = table.num_rows
            yield Block(
                first,
                self.read_features(first, first + b, chunk_rows),
                ids=self._column(table, self.id_column, first),
                labels=self._column(table, self.label_column, first),
                split=self._column(table, self.split_column, first),
            )

    def _column(self, table: Any, name: str | None, first: int) -> np.ndarray | None:
        if name is None or self.meta is None:
            return None
        values = table.column(name).to_pylist()
        if name == self.id_column and any(v is None for v in values):
            i = next(i for i, v in enumerate(values) if v is None)
            path, r = self.meta.locate(first + i)
            raise FeatureStoreError(f"{path}, row {r}, column {name!r}: missing id")
        return np.asarray(["" if v is None else str(v) for v in values])

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        out["kind"] = "clip-retrieval"
        if self.meta is not None:
            out["metadata"] = file_fingerprint(self.meta.paths)
            out["columns"] = [self.id_column, self.label_column, self.split_column]
        return out

    def metadata(self) -> dict[str, Any]:
        return {"source": "clip-retrieval", "root": str(self.root)}

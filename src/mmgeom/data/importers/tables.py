"""Tables — Parquet, CSV, JSON Lines, read with pyarrow in record batches — as store rows.

Columns take roles: an **embedding** column (a list of numbers per row; in CSV a string such as
``"[0.1, 0.2]"`` or ``"0.1 0.2"``) becomes a modality as is; a **text** column is encoded by a frozen
sentence encoder (MiniLM by default) into a modality; an **image** column holds image paths (relative to
the table's folder) decoded by an :class:`~mmgeom.data.importers.images.ImageDecoder`. Optional id,
label and split columns. A null cell makes that modality absent in that row (kept, with a presence
mask); an empty text or a path that does not decode is an error naming file, row and column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..store_format import FeatureStoreError
from .base import Block, FileRows, Source, encode_texts, file_fingerprint
from .images import ImageDecoder

__all__ = ["TableReader", "TableSource", "encode_texts", "require_pyarrow"]

IMPORT_INSTALL = "pip install 'mmgeom[import]'"


def require_pyarrow() -> Any:
    """``pyarrow``, or a clear error with the install command."""
    try:
        import pyarrow
    except ImportError:
        from ...errors import DataUnavailableError

        raise DataUnavailableError(f"reading tables needs pyarrow; install: {IMPORT_INSTALL}") from None
    return pyarrow


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    kinds = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}
    if suffix not in kinds:
        raise FeatureStoreError(f"{path}: unknown table format {suffix!r}; expected .parquet, .csv or .jsonl")
    return kinds[suffix]


class TableReader:
    """Several table files read as one sequence of rows, in record batches (bounded memory)."""

    def __init__(self, paths: Sequence[Path], columns: Sequence[str]) -> None:
        self.pa = require_pyarrow()
        self.paths = [Path(p) for p in paths]
        self.columns = list(dict.fromkeys(columns))
        counts = []
        for p in self.paths:
            names = self._names(p)
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise FeatureStoreError(f"{p}: no column {missing[0]!r}; the table has {names}")
            counts.append(sum(batch.num_rows for batch in self._batches(p, count_only=True)))
        self.offsets = np.cumsum([0, *counts])
        self.num_rows = int(self.offsets[-1])

    def _names(self, path: Path) -> list[str]:
        kind = _kind(path)
        try:
            if kind == "parquet":
                import pyarrow.parquet as pq

                return list(pq.ParquetFile(path).schema_arrow.names)
            if kind == "csv":
                import pyarrow.csv as pcsv

                return list(pcsv.open_csv(path).schema.names)
            import pyarrow.json as pjson

            return list(pjson.open_json(path).schema.names)
        except (self.pa.ArrowInvalid, OSError) as err:
            raise FeatureStoreError(f"{path}: cannot be read as {kind} ({err})") from None

    def _batches(self, path: Path, count_only: bool = False) -> Iterator[Any]:
        kind = _kind(path)
        try:
            if kind == "parquet":
                import pyarrow.parquet as pq

                f = pq.ParquetFile(path)
                if count_only:
                    # Row counts come from the footer; no data is read.
                    yield self.pa.record_batch([self.pa.nulls(f.metadata.num_rows)], names=["_"])
                    return
                yield from f.iter_batches(batch_size=8192, columns=self.columns)
            elif kind == "csv":
                import pyarrow.csv as pcsv

                conv = pcsv.ConvertOptions(
                    include_columns=self.columns[:1] if count_only else self.columns,
                    column_types={c: self.pa.string() for c in self.columns},
                    strings_can_be_null=True,
                )
                yield from pcsv.open_csv(path, convert_options=conv)
            else:
                import pyarrow.json as pjson

                yield from pjson.open_json(path)
        except (self.pa.ArrowInvalid, OSError) as err:
            raise FeatureStoreError(f"{path}: cannot be read as {kind} ({err})") from None

    def locate(self, row: int) -> tuple[Path, int]:
        k = int(np.searchsorted(self.offsets, row, side="right")) - 1
        k = min(max(k, 0), len(self.paths) - 1)
        return self.paths[k], row - int(self.offsets[k])

    def tables(self, start: int, chunk_rows: int) -> Iterator[tuple[int, Any]]:
        """``(first row, pyarrow Table of <= chunk_rows rows)`` from ``start`` on; files are not joined."""
        for k, path in enumerate(self.paths):
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            if hi <= start:
                continue  # a whole file done before an interruption is not read again
            row, buf, size = lo, [], 0
            for batch in self._batches(path):
                b = batch.num_rows
                if row + b <= start:
                    row += b
                    continue
                if row < start:
                    batch, row = batch.slice(start - row), start
                buf.append(batch)
                size += batch.num_rows
                while size >= chunk_rows:
                    table = self.pa.Table.from_batches(buf).select(self.columns)
                    yield row, table.slice(0, chunk_rows)
                    rest = table.slice(chunk_rows)
                    buf, size, row = rest.to_batches(), rest.num_rows, row + chunk_rows
            if size:
                yield row, self.pa.Table.from_batches(buf).select(self.columns)


class TableSource(Source):
    """Rows of one or more tables with column roles (see the module docstring).

    Args:
        paths: table files (same columns), read in order.
        embeddings: column → modality for list/embedding columns.
        texts: column → modality for raw text columns (encoded by ``text_encoder``).
        images: column → modality for image path columns (decoded by ``image_decoder``).
        id_column, label_column, split_column: optional columns.
        text_encoder: object with ``dim`` and ``encode(list[str]).pooled`` (a
            :class:`~mmgeom.data.text_encoder.MiniLMTextEncoder`).
        image_decoder: the decoder of image columns.
        dtype: store dtype of embedding modalities (``None``: float32); encoded/decoded ones are float32
            unless ``dtype`` is given.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        embeddings: Mapping[str, str] | None = None,
        texts: Mapping[str, str] | None = None,
        images: Mapping[str, str] | None = None,
        id_column: str | None = None,
        label_column: str | None = None,
        split_column: str | None = None,
        text_encoder: Any | None = None,
        image_decoder: ImageDecoder | None = None,
        dtype: str | None = None,
    ) -> None:
        self.embeddings, self.texts, self.images = (
            dict(embeddings or {}),
            dict(texts or {}),
            dict(images or {}),
        )
        roles = {**self.embeddings, **self.texts, **self.images}
        if not roles:
            raise FeatureStoreError("import: name at least one embedding, text or image column")
        if len(set(roles.values())) != len(roles):
            raise FeatureStoreError(f"import: two columns map to the same modality: {roles}")
        if self.texts and text_encoder is None:
            raise FeatureStoreError("import: text columns need a text encoder")
        if self.images and image_decoder is None:
            image_decoder = ImageDecoder()
        self.encoder, self.decoder = text_encoder, image_decoder
        self.id_column, self.label_column, self.split_column = id_column, label_column, split_column
        extra = [c for c in (id_column, label_column, split_column) if c]
        self.reader = TableReader([Path(p) for p in paths], [*roles, *extra])
        self.num_rows = self.reader.num_rows
        out_dtype = dtype or "float32"
        self.specs = {}
        for col, m in self.embeddings.items():
            self.specs[m] = (self._embedding_dim(col), out_dtype)
        text_dim = int(getattr(text_encoder, "dim", 0))
        for _, m in self.texts.items():
            self.specs[m] = (text_dim, out_dtype)
        for _, m in self.images.items():
            assert self.decoder is not None
            self.specs[m] = (self.decoder.dim, out_dtype)

    def _embedding_dim(self, col: str) -> int:
        for start, table in self.reader.tables(0, 1024):
            values, present = self._vectors(table.column(col), col, start, None)
            if present.any():
                return int(values.shape[1])
        raise FeatureStoreError(f"{self.reader.paths[0]}: column {col!r} has no non-null value")

    def _where(self, row: int, col: str) -> str:
        path, r = self.reader.locate(row)
        return f"{path}, row {r}, column {col!r}"

    def _vectors(self, column: Any, col: str, start: int, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
        """A list or string column as ``((b, dim) float64, present)``."""
        pa = self.reader.pa
        arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
        present = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        b = len(arr)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            rows: list[np.ndarray | None] = []
            for i, s in enumerate(arr.to_pylist()):
                if s is None:
                    rows.append(None)
                    continue
                try:
                    rows.append(np.asarray(s.strip().strip("[]").replace(",", " ").split(), dtype=np.float64))
                except ValueError:
                    raise FeatureStoreError(f"{self._where(start + i, col)}: not a list of numbers") from None
        elif (
            pa.types.is_list(arr.type)
            or pa.types.is_large_list(arr.type)
            or pa.types.is_fixed_size_list(arr.type)
        ):
            rows = [
                None if v is None else np.asarray(v, dtype=np.float64)
                for v in arr.to_numpy(zero_copy_only=False)
            ]
        else:
            raise FeatureStoreError(
                f"{self._where(start, col)}: column type {arr.type}, expected a list of numbers per row"
            )
        width = dim if dim is not None else next((r.size for r in rows if r is not None), 0)
        out = np.zeros((b, max(width, 1)), dtype=np.float64)
        for i, r in enumerate(rows):
            if r is None:
                continue
            if r.ndim != 1 or r.size != width:
                raise FeatureStoreError(f"{self._where(start + i, col)}: {r.size} values, expected {width}")
            out[i] = r
        return out, present

    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        for first, table in self.reader.tables(start, chunk_rows):
            feats: dict[str, np.ndarray | FileRows] = {}
            present: dict[str, np.ndarray] = {}
            for col, m in self.embeddings.items():
                feats[m], present[m] = self._vectors(table.column(col), col, first, self.specs[m][0])
            for col, m in self.texts.items():
                texts = table.column(col).to_pylist()
                for i, t in enumerate(texts):
                    if t is not None and not str(t).strip():
                        raise FeatureStoreError(f"{self._where(first + i, col)}: empty text")
                feats[m], present[m] = encode_texts(
                    self.encoder, [None if t is None else str(t) for t in texts], self.specs[m][0]
                )
            for col, m in self.images.items():
                assert self.decoder is not None
                paths = table.column(col).to_pylist()
                x = np.zeros((len(paths), self.decoder.dim), dtype=np.float32)
                for i, p in enumerate(paths):
                    if p is None:
                        continue
                    file, _ = self.reader.locate(first + i)
                    full = Path(p) if Path(p).is_absolute() else file.parent / p
                    x[i] = self.decoder.decode(full, f"{self._where(first + i, col)} ({full})")
                feats[m], present[m] = x, np.asarray([p is not None for p in paths])
            yield Block(
                first,
                feats,
                present,
                ids=self._column(table, self.id_column, first),
                labels=self._column(table, self.label_column, first),
                split=self._column(table, self.split_column, first, as_str=True),
            )

    def _column(self, table: Any, col: str | None, first: int, as_str: bool = False) -> np.ndarray | None:
        if col is None:
            return None
        values = table.column(col).to_pylist()
        if any(v is None for v in values) and col == self.id_column:
            i = next(i for i, v in enumerate(values) if v is None)
            raise FeatureStoreError(f"{self._where(first + i, col)}: missing id")
        if col == self.label_column and not as_str:
            # Integer labels stay class ids (a CSV gives them as digit strings); anything else is a name.
            text = ["" if v is None else str(v).strip() for v in values]
            if all(t == "" or t.lstrip("-").isdigit() for t in text) and not isinstance(values[0], float):
                return np.asarray([-1 if t == "" else int(t) for t in text], dtype=np.int64)
            return np.asarray(text)
        if col == self.id_column and all(isinstance(v, int) for v in values):
            return np.asarray(values, dtype=np.int64)
        return np.asarray(["" if v is None else str(v) for v in values])

    def locate(self, modality: str, row: int) -> str:
        col = next(c for c, m in {**self.embeddings, **self.texts, **self.images}.items() if m == modality)
        return self._where(row, col)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "files": file_fingerprint(self.reader.paths),
            "roles": {"embeddings": self.embeddings, "texts": self.texts, "images": self.images},
            "columns": [self.id_column, self.label_column, self.split_column],
            "encoder": str(getattr(self.encoder, "model_path", None)),
            "image": None if self.decoder is None else self.decoder.describe(),
            "specs": {m: list(s) for m, s in self.specs.items()},
        }

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"source": "table", "files": [str(p) for p in self.reader.paths]}
        if self.texts:
            meta["text_encoder"] = str(getattr(self.encoder, "model_path", "custom"))
            meta["text_features"] = "mean-pooled last hidden state, not normalised"
        if self.images and self.decoder is not None:
            meta["image"] = self.decoder.describe()
        return meta

"""Importers: write a :class:`~mmgeom.data.FeatureStore` from a user's own files (``mmgeom import``).

One module per input format, each a :class:`Source` that :func:`run_import` writes chunk by chunk
(bounded memory, resumable, atomic):

* :mod:`.arrays` — per-modality ``.npy`` / ``.npz`` / ``.safetensors`` shards;
* :mod:`.clip_retrieval` — the ``clip-retrieval inference`` output folder;
* :mod:`.tables` — Parquet / CSV / JSON Lines with embedding, text and image-path columns;
* :mod:`.images` — image folders and webdataset-style tar shards.
"""

from .arrays import ArraysSource, expand_shards
from .base import Block, Source, run_import
from .clip_retrieval import ClipRetrievalSource
from .images import ImageDecoder, ImageFolderSource, TarShardSource
from .tables import TableSource

__all__ = [
    "ArraysSource",
    "Block",
    "ClipRetrievalSource",
    "ImageDecoder",
    "ImageFolderSource",
    "Source",
    "TableSource",
    "TarShardSource",
    "expand_shards",
    "run_import",
]

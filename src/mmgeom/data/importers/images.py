"""Image files decoded with Pillow into fixed-size pixel rows; image folders; webdataset-style tar shards.

Every image becomes ``height * width * channels`` values ``uint8 / 255`` in row-major ``(H, W, C)`` order
(mode ``"L"``: one channel, ``"RGB"``: three), resized to the fixed size with bilinear filtering (the
aspect ratio is not kept), so a trainable image head sees one vector per row.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..store_format import FeatureStoreError
from .base import Block, FileRows, Source, encode_texts, file_fingerprint

__all__ = ["IMAGE_SUFFIXES", "ImageDecoder", "ImageFolderSource", "TarShardSource"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageDecoder:
    """Decode an image file (or bytes) to a ``(H * W * C,)`` float32 row in ``[0, 1]``.

    Args:
        size: ``(height, width)`` after resizing.
        mode: ``"L"`` (grayscale) or ``"RGB"``.

    Raises:
        ValueError: a bad size or mode.
    """

    def __init__(self, size: Sequence[int] = (28, 28), mode: str = "L") -> None:
        if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
            raise ValueError(f"image size: expected (height, width) of positive integers, got {size!r}")
        if mode not in ("L", "RGB"):
            raise ValueError(f"image mode: expected 'L' or 'RGB', got {mode!r}")
        self.size = (int(size[0]), int(size[1]))
        self.mode = mode

    @property
    def dim(self) -> int:
        """Values per image."""
        return self.size[0] * self.size[1] * (1 if self.mode == "L" else 3)

    def decode(self, data: str | Path | bytes, where: str) -> np.ndarray:
        """One image as a float32 row; ``where`` names the input in the error.

        Raises:
            FeatureStoreError: the file is missing or Pillow cannot decode it.
        """
        from PIL import Image, UnidentifiedImageError

        try:
            src = io.BytesIO(data) if isinstance(data, bytes) else data
            with Image.open(src) as img:
                img = img.convert(self.mode)
                if img.size != (self.size[1], self.size[0]):
                    img = img.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise FeatureStoreError(f"{where}: unreadable image ({err})") from None
        return arr.reshape(-1).astype(np.float32) / 255.0

    def describe(self) -> dict[str, Any]:
        """JSON description for the store metadata."""
        return {"size": list(self.size), "mode": self.mode, "values": "uint8 / 255, row-major (H, W, C)"}


class ImageFolderSource(Source):
    """A folder of images: ``ROOT/<class>/<file>`` (labels = class folder names) or a flat folder.

    Ids are the paths relative to ``root``; files are taken in sorted order.
    """

    def __init__(
        self, root: str | Path, decoder: ImageDecoder, *, modality: str = "image", dtype: str = "float32"
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FeatureStoreError(f"{self.root}: not a folder")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FeatureStoreError(f"{self.root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.decoder, self.modality = decoder, modality
        self.num_rows = len(self.files)
        self.specs = {modality: (decoder.dim, dtype)}
        self.labelled = all(p.parent != self.root for p in self.files)

    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        for a in range(start, self.num_rows, chunk_rows):
            files = self.files[a : a + chunk_rows]
            x = np.stack([self.decoder.decode(p, f"{p}") for p in files])
            rel = [str(p.relative_to(self.root)) for p in files]
            labels = np.asarray([p.parent.name for p in files]) if self.labelled else None
            yield Block(a, {self.modality: x}, ids=np.asarray(rel), labels=labels)

    def locate(self, modality: str, row: int) -> str:
        return str(self.files[row])

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "image-folder",
            "files": file_fingerprint(self.files),
            "decoder": self.decoder.describe(),
        }

    def metadata(self) -> dict[str, Any]:
        return {"source": "image-folder", "root": str(self.root), "image": self.decoder.describe()}


class TarShardSource(Source):
    """Webdataset-style tar shards: members ``KEY.jpg`` (or another image suffix), ``KEY.txt``, ``KEY.cls``.

    Each key is one row: the image decoded into ``image_modality``; the caption (``.txt``) encoded by
    ``text_encoder`` into ``text_modality`` (absent when the key has no caption); ``.cls`` an integer
    label. Ids are the keys.

    Raises:
        FeatureStoreError: an unreadable shard, a key without an image, a duplicate key, an empty caption.
    """

    def __init__(
        self,
        shards: Sequence[Path],
        decoder: ImageDecoder,
        *,
        text_encoder: Any | None = None,
        image_modality: str = "image",
        text_modality: str = "text",
        dtype: str = "float32",
    ) -> None:
        self.shards = list(shards)
        self.decoder, self.encoder = decoder, text_encoder
        self.image_modality, self.text_modality = image_modality, text_modality
        self.keys: list[tuple[int, str]] = []
        for k, shard in enumerate(self.shards):
            try:
                with tarfile.open(shard) as tf:
                    names = [m.name for m in tf.getmembers() if m.isfile()]
            except (OSError, tarfile.TarError) as err:
                raise FeatureStoreError(f"{shard}: not a readable tar shard ({err})") from None
            seen: list[str] = []
            for name in names:
                stem, _, suffix = name.rpartition(".")
                if "." + suffix.lower() in IMAGE_SUFFIXES:
                    seen.append(stem)
            self.keys.extend((k, s) for s in seen)
        if not self.keys:
            raise FeatureStoreError(f"{[str(s) for s in self.shards]}: no image members in the tar shards")
        self.num_rows = len(self.keys)
        self.specs = {image_modality: (decoder.dim, dtype)}
        if text_encoder is not None:
            self.specs[text_modality] = (int(text_encoder.dim), dtype)

    def _members(self, shard: int) -> dict[str, dict[str, bytes]]:
        out: dict[str, dict[str, bytes]] = {}
        with tarfile.open(self.shards[shard]) as tf:
            for m in tf.getmembers():
                if not m.isfile():
                    continue
                stem, _, suffix = m.name.rpartition(".")
                fh = tf.extractfile(m)
                assert fh is not None
                out.setdefault(stem, {})[suffix.lower()] = fh.read()
        return out

    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        cache: tuple[int, dict[str, dict[str, bytes]]] | None = None
        for a in range(start, self.num_rows, chunk_rows):
            rows = self.keys[a : a + chunk_rows]
            images, captions, labels = [], [], []
            for k, key in rows:
                if cache is None or cache[0] != k:
                    cache = (k, self._members(k))  # one shard in memory at a time
                parts = cache[1][key]
                img = next(v for s, v in parts.items() if "." + s in IMAGE_SUFFIXES)
                images.append(self.decoder.decode(img, f"{self.shards[k]}: member {key}"))
                cap = parts.get("txt")
                caption = None if cap is None else cap.decode("utf-8").strip()
                if caption == "":
                    raise FeatureStoreError(f"{self.shards[k]}: member {key}.txt: empty caption")
                captions.append(caption)
                labels.append(int(parts["cls"].decode().strip()) if "cls" in parts else -1)
            feats: dict[str, np.ndarray | FileRows] = {self.image_modality: np.stack(images)}
            present = {}
            if self.encoder is not None:
                feats[self.text_modality], present[self.text_modality] = encode_texts(
                    self.encoder, captions, self.specs[self.text_modality][0]
                )
            yield Block(
                a, feats, present, ids=np.asarray([key for _, key in rows]), labels=np.asarray(labels)
            )

    def locate(self, modality: str, row: int) -> str:
        k, key = self.keys[row]
        return f"{self.shards[k]}: member {key}"

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "tar", "files": file_fingerprint(self.shards), "decoder": self.decoder.describe()}

    def metadata(self) -> dict[str, Any]:
        return {
            "source": "webdataset-tar",
            "shards": [str(s) for s in self.shards],
            "image": self.decoder.describe(),
        }

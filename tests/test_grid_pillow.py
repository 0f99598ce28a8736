"""``generation.grid`` writes PNGs with Pillow: decoded pixels equal the grid, read by two decoders."""

from __future__ import annotations

import sys
import zlib

import numpy as np
import pytest
import torch

from mmgeom.generation.grid import encode_png, image_grid, save_grid
from test_generation_metrics import _decode_png


def test_grid_pixels_survive_the_pillow_encoder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    images = torch.rand(7, 1, 16, 15, generator=torch.Generator().manual_seed(0))
    grid = image_grid(images, nrow=4, pad=2, scale=3)
    data = save_grid(tmp_path / "g.png", images, nrow=4, pad=2, scale=3).read_bytes()
    np.testing.assert_array_equal(_decode_png(data), grid)  # the hand-written reader of the spec
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L" and im.size == (grid.shape[1], grid.shape[0])
        np.testing.assert_array_equal(np.asarray(im), grid)


def test_the_reference_reader_sees_filtered_scanlines():
    """Pillow filters the scanlines of a smooth image, so the reader's unfiltering is really exercised."""
    ramp = (np.add.outer(np.arange(40), np.arange(50)) % 256).astype(np.uint8)
    data = encode_png(ramp)
    idat = b"".join(
        data[i + 8 : i + 8 + int.from_bytes(data[i : i + 4], "big")]
        for i in _chunk_offsets(data)
        if data[i + 4 : i + 8] == b"IDAT"
    )
    filters = set(np.frombuffer(zlib.decompress(idat), np.uint8).reshape(40, 51)[:, 0].tolist())
    assert filters - {0}, filters
    np.testing.assert_array_equal(_decode_png(data), ramp)


def _chunk_offsets(data: bytes) -> list[int]:
    out, pos = [], 8
    while pos < len(data):
        out.append(pos)
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return out


def test_missing_pillow_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="pip install pillow"):
        encode_png(np.zeros((2, 2), dtype=np.uint8))

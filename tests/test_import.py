"""Importers: each format round-trips against numpy/Pillow/the encoder; bad inputs are named."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mmgeom.data import FeatureStore, FeatureStoreError
from mmgeom.data.importers import (
    ArraysSource,
    ClipRetrievalSource,
    ImageDecoder,
    ImageFolderSource,
    TableSource,
    TarShardSource,
    run_import,
)
from mmgeom.data.store_builder import seeded_split

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
Image = pytest.importorskip("PIL.Image")


class FakeEncoder:
    """A deterministic stand-in for MiniLM: the text's byte histogram (so tests need no model)."""

    dim = 4
    model_path = "fake"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, sentences: list[str]) -> object:
        self.calls.append(list(sentences))
        rows = [[len(s), s.count("a"), s.count(" "), sum(map(ord, s)) % 97] for s in sentences]

        class Out:
            pooled = np.asarray(rows, dtype=np.float32)

        return Out()


def test_array_shards_round_trip_in_natural_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 4)).astype(np.float16) for n in (5, 3, 4)]
    for k, p in zip((0, 2, 10), parts, strict=True):
        np.save(tmp_path / f"img_{k}.npy", p)  # img_10 must come after img_2
    text = rng.normal(size=(12, 3))
    np.savez(tmp_path / "t.npz", text=text, other=text[:1])
    from safetensors.numpy import save_file

    save_file({"x": (text * 3).astype(np.float32)}, str(tmp_path / "a.safetensors"))
    labels = np.arange(12) % 3
    np.save(tmp_path / "labels.npy", labels)
    src = ArraysSource(
        {
            "image": str(tmp_path / "img_*.npy"),
            "text": tmp_path / "t.npz",
            "audio": tmp_path / "a.safetensors",
        },
        labels=tmp_path / "labels.npy",
    )
    store = FeatureStore.open(run_import(src, tmp_path / "s", chunk_rows=5))
    np.testing.assert_array_equal(store.array("image"), np.concatenate(parts))
    assert store.dtypes == {"image": "float16", "text": "float64", "audio": "float32"}
    np.testing.assert_array_equal(store.array("text"), text)
    np.testing.assert_array_equal(store.array("audio"), (text * 3).astype(np.float32))
    np.testing.assert_array_equal(store.labels, labels)
    np.testing.assert_array_equal(store.ids, np.arange(12))
    assert not store.has_masks
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no work folder left


def test_arrays_bad_inputs_are_named(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 2), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((5, 2), np.float32))
    np.save(tmp_path / "c.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "i.npy", np.zeros((4, 2), np.int32))
    with pytest.raises(FeatureStoreError, match=r"modality 'y' .*b.npy.*: 5 rows, but 'x' has 4"):
        ArraysSource({"x": tmp_path / "a.npy", "y": tmp_path / "b.npy"})
    with pytest.raises(FeatureStoreError, match=r"c.npy: dim 3, but .*a.npy has 2"):
        ArraysSource({"x": [tmp_path / "a.npy", tmp_path / "c.npy"]})
    with pytest.raises(FeatureStoreError, match=r"i.npy: dtype int32, expected floating"):
        ArraysSource({"x": tmp_path / "i.npy"})
    with pytest.raises(FeatureStoreError, match=r"nope_\*.npy: no file matches"):
        ArraysSource({"x": str(tmp_path / "nope_*.npy")})
    bad = np.zeros((6, 2), np.float32)
    bad[4, 1] = np.inf
    np.save(tmp_path / "z_1.npy", bad)
    np.save(tmp_path / "z_0.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(FeatureStoreError, match=r"z_1.npy, row 4, column 1: modality 'x' has a NaN or Inf"):
        run_import(ArraysSource({"x": str(tmp_path / "z_*.npy")}), tmp_path / "s", chunk_rows=4)
    assert not (tmp_path / "s").exists()
    np.save(tmp_path / "ids.npy", np.array([1, 2, 3, 2]))
    with pytest.raises(FeatureStoreError, match=r"ids: 2 appears more than once \(rows 1 and 3\)"):
        run_import(ArraysSource({"x": tmp_path / "a.npy"}, ids=tmp_path / "ids.npy"), tmp_path / "s2")


def _clip_folder(root: Path, sizes: tuple[int, ...] = (4, 3)) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(1)
    imgs, txts, paths = [], [], []
    for d in ("img_emb", "text_emb", "metadata"):
        (root / d).mkdir(parents=True)
    row = 0
    for k, n in enumerate(sizes):
        img = rng.normal(size=(n, 6)).astype(np.float16)
        txt = rng.normal(size=(n, 6)).astype(np.float16)
        np.save(root / "img_emb" / f"img_emb_{k}.npy", img)
        np.save(root / "text_emb" / f"text_emb_{k}.npy", txt)
        names = [f"images/{row + i:05d}.jpg" for i in range(n)]
        pq.write_table(
            pa.table(
                {
                    "image_path": names,
                    "caption": [f"c{i}" for i in range(n)],
                    "label": [i % 2 for i in range(n)],
                }
            ),
            root / "metadata" / f"metadata_{k}.parquet",
        )
        imgs.append(img)
        txts.append(txt)
        paths += names
        row += n
    return np.concatenate(imgs), np.concatenate(txts), paths


def test_clip_retrieval_layout_round_trips(tmp_path: Path) -> None:
    img, txt, paths = _clip_folder(tmp_path / "cr")
    src = ClipRetrievalSource(tmp_path / "cr", id_column="image_path", label_column="label")
    store = FeatureStore.open(run_import(src, tmp_path / "s", chunk_rows=2))
    np.testing.assert_array_equal(store.array("image"), img)
    np.testing.assert_array_equal(store.array("text"), txt)
    assert store.ids.tolist() == paths
    assert store.labels.tolist() == [0, 1, 0, 1, 0, 1, 0]
    (tmp_path / "cr" / "metadata" / "metadata_1.parquet").unlink()
    with pytest.raises(FeatureStoreError, match=r"metadata: 4 rows, but the embeddings have 7"):
        ClipRetrievalSource(tmp_path / "cr", id_column="image_path")


def _rows() -> list[dict]:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(7, 3)).round(4)
    return [
        {
            "id": f"r{i}",
            "emb": None if i == 2 else emb[i].tolist(),
            "cap": None if i == 5 else f"a caption number {i}",
            "label": ["shirt", "bag"][i % 2],
            "part": "test" if i >= 5 else "train",
        }
        for i in range(7)
    ]


def _write_tables(tmp_path: Path, rows: list[dict]) -> dict[str, Path]:
    paths = {k: tmp_path / f"t.{k}" for k in ("parquet", "csv", "jsonl")}
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    with open(paths["jsonl"], "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow(["" if v is None else json.dumps(v) if isinstance(v, list) else v for v in r.values()])
    return paths


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl"])
def test_tables_round_trip_with_masks_labels_split_and_text(tmp_path: Path, kind: str) -> None:
    rows = _rows()
    path = _write_tables(tmp_path, rows)[kind]
    enc = FakeEncoder()
    src = TableSource(
        [path],
        embeddings={"emb": "vec"},
        texts={"cap": "text"},
        id_column="id",
        label_column="label",
        split_column="part",
        text_encoder=enc,
    )
    store = FeatureStore.open(run_import(src, tmp_path / "s", chunk_rows=3))
    emb_mask = np.array([r["emb"] is not None for r in rows])
    np.testing.assert_array_equal(store.present("vec"), emb_mask)
    want = np.array([r["emb"] for r in rows if r["emb"] is not None], dtype=np.float32)
    np.testing.assert_array_equal(store.array("vec")[emb_mask], want)
    np.testing.assert_array_equal(store.array("vec")[~emb_mask], 0)
    caps = [r["cap"] for r in rows if r["cap"] is not None]
    np.testing.assert_array_equal(
        store.array("text")[store.present("text")], FakeEncoder().encode(caps).pooled
    )
    assert all(len(c) <= 3 for c in enc.calls[1:])  # batched per block, missing captions not encoded
    assert store.metadata["class_names"] == ["bag", "shirt"]
    assert store.labels.tolist() == [1, 0, 1, 0, 1, 0, 1]
    assert store.split.tolist() == [r["part"] for r in rows]
    assert store.ids.tolist() == [r["id"] for r in rows]


def test_text_column_matches_minilm_called_directly(tmp_path: Path) -> None:
    from mmgeom.data.text_encoder import MiniLMTextEncoder, text_backbone_available

    if not text_backbone_available():
        pytest.skip("the bundled MiniLM is not installed")
    rows = _rows()
    path = _write_tables(tmp_path, rows)["parquet"]
    enc = MiniLMTextEncoder(batch_size=4)
    store = FeatureStore.open(
        run_import(
            TableSource([path], texts={"cap": "text"}, embeddings={"emb": "e"}, text_encoder=enc),
            tmp_path / "s",
            chunk_rows=4,
        )
    )
    direct = enc.encode([r["cap"] for r in rows if r["cap"] is not None]).pooled.numpy()
    np.testing.assert_allclose(store.array("text")[store.present("text")], direct, rtol=0, atol=1e-5)
    assert store.metadata["text_encoder"] == str(enc.model_path)


def test_table_bad_inputs_are_named(tmp_path: Path) -> None:
    rows = _rows()
    rows[4]["emb"] = [1.0, 2.0]
    path = _write_tables(tmp_path, rows)["jsonl"]
    with pytest.raises(FeatureStoreError, match=r"t.jsonl, row 4, column 'emb': 2 values, expected 3"):
        run_import(TableSource([path], embeddings={"emb": "vec"}), tmp_path / "s")
    rows = _rows()
    rows[3]["cap"] = "   "
    path = _write_tables(tmp_path, rows)["parquet"]
    with pytest.raises(FeatureStoreError, match=r"t.parquet, row 3, column 'cap': empty text"):
        run_import(TableSource([path], texts={"cap": "t"}, text_encoder=FakeEncoder()), tmp_path / "s")
    with pytest.raises(FeatureStoreError, match=r"t.parquet: no column 'nope'; the table has"):
        TableSource([path], embeddings={"nope": "vec"})
    rows = _rows()
    rows[6]["id"] = "r1"
    path = _write_tables(tmp_path, rows)["csv"]
    with pytest.raises(FeatureStoreError, match=r"ids: 'r1' appears more than once \(rows 1 and 6\)"):
        run_import(TableSource([path], embeddings={"emb": "v"}, id_column="id"), tmp_path / "s")
    rows = _rows()
    rows[1]["emb"] = [1.0, float("nan"), 0.0]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "n.parquet")
    with pytest.raises(
        FeatureStoreError, match=r"n.parquet, row 1, column 'emb', column 1: modality 'v' has a NaN"
    ):
        run_import(TableSource([tmp_path / "n.parquet"], embeddings={"emb": "v"}), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def _png(path: Path, seed: int, size: tuple[int, int] = (6, 5), mode: str = "L") -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, 3)
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return arr


def test_image_path_column_decodes_to_pixels(tmp_path: Path) -> None:
    pixels = [_png(tmp_path / f"im{i}.png", i, mode="RGB") for i in range(3)]
    pq.write_table(
        pa.table({"img": ["im0.png", None, "im2.png"], "e": [[1.0], [2.0], [3.0]]}), tmp_path / "t.parquet"
    )
    src = TableSource(
        [tmp_path / "t.parquet"],
        images={"img": "image"},
        embeddings={"e": "e"},
        image_decoder=ImageDecoder((6, 5), "RGB"),
    )
    store = FeatureStore.open(run_import(src, tmp_path / "s"))
    assert store.dims["image"] == 6 * 5 * 3
    np.testing.assert_array_equal(store.present("image"), [True, False, True])
    for i in (0, 2):  # (H, W, C) row-major uint8 / 255, same as Pillow's array
        np.testing.assert_allclose(store.array("image")[i], pixels[i].reshape(-1) / 255.0, rtol=0, atol=1e-7)
    (tmp_path / "im2.png").write_bytes(b"not an image")
    with pytest.raises(
        FeatureStoreError, match=r"t.parquet, row 2, column 'img' .*im2.png\): unreadable image"
    ):
        run_import(
            TableSource(
                [tmp_path / "t.parquet"], images={"img": "image"}, image_decoder=ImageDecoder((6, 5))
            ),
            tmp_path / "s2",
        )


def test_resized_image_matches_pillow_bilinear(tmp_path: Path) -> None:
    arr = _png(tmp_path / "big.png", 3, size=(40, 30))
    got = ImageDecoder((8, 6), "L").decode(tmp_path / "big.png", "big")
    ref = np.asarray(Image.fromarray(arr).resize((6, 8), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(got, ref.reshape(-1))


def test_image_folder_and_tar_shards(tmp_path: Path) -> None:
    for cls in ("boot", "coat"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            _png(tmp_path / "imgs" / cls / f"{i}.png", hash((cls, i)) % 1000)
    store = FeatureStore.open(
        run_import(ImageFolderSource(tmp_path / "imgs", ImageDecoder((6, 5))), tmp_path / "s")
    )
    assert store.ids.tolist() == ["boot/0.png", "boot/1.png", "coat/0.png", "coat/1.png"]
    assert store.labels.tolist() == [0, 0, 1, 1] and store.metadata["class_names"] == ["boot", "coat"]
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tf:
        for key, cap, cls in (("k0", "a red coat", 1), ("k1", None, 0), ("k2", "a boot", 0)):
            buf = io.BytesIO()
            Image.fromarray(np.full((6, 5), 7 * int(key[1]), np.uint8)).save(buf, "PNG")
            members = {f"{key}.png": buf.getvalue(), f"{key}.cls": str(cls).encode()}
            if cap is not None:
                members[f"{key}.txt"] = cap.encode()
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    src = TarShardSource([shard], ImageDecoder((6, 5)), text_encoder=FakeEncoder())
    store = FeatureStore.open(run_import(src, tmp_path / "w"))
    assert store.ids.tolist() == ["k0", "k1", "k2"] and store.labels.tolist() == [1, 0, 0]
    np.testing.assert_array_equal(store.present("text"), [True, False, True])
    np.testing.assert_array_equal(
        store.array("text")[[0, 2]], FakeEncoder().encode(["a red coat", "a boot"]).pooled
    )
    np.testing.assert_allclose(store.array("image")[2], np.full(30, 14 / 255.0), rtol=0, atol=1e-7)


def test_seeded_split_is_stratified_or_random_and_reproducible() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 30])
    s = seeded_split(labels, 60, (0.7, 0.1, 0.2), seed=4)
    for c, n in zip(range(3), (10, 20, 30), strict=True):  # per class: round(n*0.1) val, round(n*0.2) test
        part = s[labels == c]
        assert (part == "val").sum() == round(n * 0.1) and (part == "test").sum() == round(n * 0.2)
    np.testing.assert_array_equal(s, seeded_split(labels, 60, (0.7, 0.1, 0.2), seed=4))
    assert not np.array_equal(s, seeded_split(labels, 60, (0.7, 0.1, 0.2), seed=5))
    r = seeded_split(np.full(50, -1), 50, (0.8, 0.1, 0.1), seed=0)  # unlabelled: random
    assert (r == "val").sum() == 5 and (r == "test").sum() == 5


def test_import_refuses_foreign_targets(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 2), np.float32))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(FeatureStoreError, match="not a feature store"):
        run_import(ArraysSource({"x": tmp_path / "a.npy"}), tmp_path / "mine", overwrite=True)
    (tmp_path / ".other.import").mkdir()
    (tmp_path / ".other.import" / "keep.txt").write_text("x")
    with pytest.raises(FeatureStoreError, match="not an mmgeom import work folder"):
        run_import(ArraysSource({"x": tmp_path / "a.npy"}), tmp_path / "other")
    assert (tmp_path / "mine" / "keep.txt").exists() and (tmp_path / ".other.import" / "keep.txt").exists()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nonfinite_rows_matches_isfinite(dtype: type) -> None:
    from mmgeom.data.importers.base import nonfinite_rows

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7)).astype(dtype)
    x[3, 2], x[10, 0], x[11, 6] = np.nan, np.inf, -np.inf
    x[20, 1] = np.finfo(dtype).max  # the largest finite value is not flagged
    x[21, 1] = np.finfo(dtype).tiny / 2  # nor a subnormal
    np.testing.assert_array_equal(nonfinite_rows(x), ~np.isfinite(x).all(axis=1))
    np.testing.assert_array_equal(np.flatnonzero(nonfinite_rows(x)), [3, 10, 11])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_any_nonfinite_matches_isfinite_across_steps(dtype: type) -> None:
    from mmgeom.data.importers.base import _STEP, any_nonfinite

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3 * _STEP // 64 + 5, 64)).astype(dtype)  # several fused steps, a ragged tail
    x[7, 3] = np.finfo(dtype).max
    assert not any_nonfinite(x) and np.isfinite(x).all()
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[-1, -1] = bad  # in the last, partial step
        assert any_nonfinite(y)
        y = x.copy()
        y[x.shape[0] // 2, 10] = bad
        assert any_nonfinite(y)
    assert any_nonfinite(np.asfortranarray(np.where(np.eye(4) > 0, np.nan, 1.0).astype(dtype)))
    y = x.copy()
    y[5, 5] = -np.abs(np.array(np.nan, dtype))  # a NaN with its sign bit set
    assert np.signbit(y[5, 5]) and any_nonfinite(y)


def test_any_nonfinite_on_every_float16_bit_pattern() -> None:
    from mmgeom.data.importers.base import any_nonfinite

    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    want = ~np.isfinite(every)
    assert want.sum() == 2 * 1024  # +-Inf and 2 * 1023 NaN payloads
    got = np.asarray([any_nonfinite(every[i : i + 1]) for i in range(every.size)])
    np.testing.assert_array_equal(got, want)
    # and in larger arrays: a finite array with one non-finite value placed anywhere
    finite = every[np.isfinite(every)]
    assert not any_nonfinite(finite)
    for v in every[want][::97]:
        assert any_nonfinite(np.concatenate([finite[:1000], [v], finite[1000:]]))


def test_resume_trusts_rows_of_this_boot_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmgeom.data import store_builder

    def builder() -> store_builder.StoreBuilder:
        return store_builder.StoreBuilder(
            tmp_path / "s", 6, {"a": (2, "float32")}, {"k": 1}, commit_seconds=0
        )

    b = builder()
    b.write(
        0,
        {"a": np.ones((3, 2), np.float32)},
        {"a": np.ones(3, bool)},
        np.arange(3),
        -np.ones(3),
        np.zeros(3, "<U1"),
    )
    assert b.rows_done == 3
    assert builder().rows_done == 3  # same boot: resumed
    monkeypatch.setattr(store_builder, "boot_id", lambda: "another-boot")
    assert builder().rows_done == 0  # rows written before a reboot may not be on disk: start over


def test_fortran_order_and_mixed_precision_shards(tmp_path: Path) -> None:
    # preadv reads C-ordered shards; a Fortran-ordered one is sliced instead, and a float16 shard next to
    # a float32 one is widened: all must equal numpy's concatenation, across block boundaries.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(9, 3)).astype(np.float32)
    b = np.asfortranarray(rng.normal(size=(7, 3)).astype(np.float32))
    c = rng.normal(size=(6, 3)).astype(np.float16)
    for k, arr in enumerate((a, b, c)):
        np.save(tmp_path / f"x_{k}.npy", arr)
    np.save(tmp_path / "y.npy", rng.normal(size=(22, 2)).astype(np.float16))
    src = ArraysSource({"x": str(tmp_path / "x_*.npy"), "y": tmp_path / "y.npy"})
    store = FeatureStore.open(run_import(src, tmp_path / "s", chunk_rows=4))
    assert store.dtypes["x"] == "float32"
    np.testing.assert_array_equal(store.array("x"), np.concatenate([a, b, c.astype(np.float32)]))
    np.testing.assert_array_equal(store.array("y"), np.load(tmp_path / "y.npy"))

"""Evaluation of generated images: FID, improved precision/recall, the feature classifier, PNG grids.

References are independent of the code under test: ``scipy.linalg.sqrtm`` and a diagonal closed form for
the Fréchet distance, ``numpy.cov`` for the statistics, plain Python loops for precision/recall, and a
PNG decoder written here from the specification (plus matplotlib's reader when it is installed).
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.generation.classifier import FeatureClassifier, train_feature_classifier
from mmgeom.generation.fid import feature_statistics, fid_from_features, frechet_distance
from mmgeom.generation.grid import encode_png, image_grid, save_grid, save_png
from mmgeom.generation.precision_recall import (
    PrecisionRecall,
    in_manifold,
    manifold_radii,
    precision_recall,
)

DTYPES = [torch.float32, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correlated(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = _gen(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + 0.3).to(dtype)


def _random_cov(d: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- FID


def _fid_scipy(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean).real)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fid_of_a_sample_against_itself_is_zero(dtype: torch.dtype) -> None:
    feats = _correlated(500, 16, seed=0, dtype=dtype)
    _, sigma = feature_statistics(feats)
    fid = fid_from_features(feats, feats)
    assert 0.0 <= fid <= 1e-6 * float(torch.trace(sigma))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fid_grows_with_added_noise(dtype: torch.dtype) -> None:
    real = _correlated(2000, 8, seed=1, dtype=dtype)
    noise = torch.randn(real.shape, generator=_gen(2), dtype=torch.float64).to(dtype)
    fids = [fid_from_features(real, real + s * noise) for s in (0.1, 0.5, 1.5)]
    assert 0.0 < fids[0] < fids[1] < fids[2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 3, 10])
def test_frechet_distance_matches_scipy_sqrtm(d: int, dtype: torch.dtype) -> None:
    g = _gen(10 + d)
    for _ in range(3):
        mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g)
        s1, s2 = _random_cov(d, g), _random_cov(d, g)
        args = [t.to(dtype) for t in (mu1, s1, mu2, s2)]
        # The reference sees exactly the (possibly fp32-rounded) values the function sees.
        ref = _fid_scipy(*(t.double().numpy() for t in args))
        assert frechet_distance(*args) == pytest.approx(ref, rel=1e-8, abs=1e-9)


def test_frechet_distance_diagonal_closed_form() -> None:
    g = _gen(3)
    d = 6
    mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g).double()
    a = torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(d, generator=g, dtype=torch.float64) * 3
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    got = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_hand_value_and_numpy_inputs() -> None:
    # ‖(1,1,1)‖² + tr I + tr 4I − 2 tr (2I) = 3 + 3 + 12 − 12.
    value = frechet_distance(np.zeros(3), np.eye(3), np.ones(3), 4 * np.eye(3))
    assert value == pytest.approx(6.0, abs=1e-12)
    assert isinstance(value, float)


def test_rank_deficient_covariances_are_handled() -> None:
    # N < D: singular covariances (eigenvalues rounding to about ±1e-17) must not raise or go NaN.
    few = _correlated(5, 12, seed=4)
    other = _correlated(6, 12, seed=5)
    assert fid_from_features(few, few) < 1e-9
    value = fid_from_features(few, other)
    assert math.isfinite(value)
    assert value > 0
    # Tiny negative eigenvalues are clamped to 0: diag(1, −1e-13) is treated as diag(1, 0).
    mu = torch.zeros(2, dtype=torch.float64)
    clamped = frechet_distance(
        mu, torch.diag(torch.tensor([1.0, -1e-13]).double()), mu, torch.eye(2).double()
    )
    assert clamped == pytest.approx(1.0, rel=1e-9)  # (√1 − √1)² + (√0 − √1)²


@pytest.mark.parametrize("dtype", DTYPES)
def test_feature_statistics_match_numpy(dtype: torch.dtype) -> None:
    x = _correlated(50, 4, seed=6, dtype=dtype)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == torch.float64
    ref = x.double().numpy()
    np.testing.assert_allclose(mu.numpy(), ref.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(ref, rowvar=False), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(3), torch.eye(4), torch.zeros(3), torch.eye(3)), r"sigma1.*\(3, 3\).*\(4, 4\)"),
        ((torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4)), r"mu2.*D = 3"),
        ((torch.zeros(3, 1), torch.eye(3), torch.zeros(3), torch.eye(3)), r"mu1.*\(D,\)"),
        (
            (torch.zeros(2), torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), torch.zeros(2), torch.eye(2)),
            "NaN",
        ),
        ((torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2), torch.eye(2)), "symmetric"),
        (
            (torch.zeros(2), torch.diag(torch.tensor([1.0, -0.5])), torch.zeros(2), torch.eye(2)),
            "semi-definite",
        ),
        ((torch.zeros(2, dtype=torch.int64), torch.eye(2), torch.zeros(2), torch.eye(2)), "floating"),
    ],
)
def test_frechet_distance_rejects_bad_statistics(args: tuple[torch.Tensor, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        frechet_distance(*args)


def test_feature_errors() -> None:
    with pytest.raises(ValueError, match=r"N >= 2"):
        feature_statistics(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        feature_statistics(torch.randn(10))
    bad = torch.randn(10, 3)
    bad[4, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        fid_from_features(torch.randn(10, 3), bad)
    with pytest.raises(ValueError, match=r"fake_feats.*D = 3"):
        fid_from_features(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match=r"real_feats.*N >= 2"):
        fid_from_features(torch.randn(1, 3), torch.randn(10, 3))


# -------------------------------------------------------------------------------- precision / recall


def _pr_loop(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 straight from the definition, one pair at a time in Python floats."""
    a = [[float(v) for v in row] for row in real.double()]
    b = [[float(v) for v in row] for row in fake.double()]

    def radii(pts: list[list[float]]) -> list[float]:
        out = []
        for p in pts:
            dists = sorted(math.dist(p, q) for q in pts)  # includes the point itself at 0
            out.append(dists[k])
        return out

    def coverage(queries: list[list[float]], ref: list[list[float]], r: list[float]) -> float:
        inside = 0
        for q in queries:
            if any(math.dist(q, p) <= rp for p, rp in zip(ref, r, strict=True)):
                inside += 1
        return inside / len(queries)

    return coverage(b, a, radii(a)), coverage(a, b, radii(b))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_loop(k: int, dtype: torch.dtype) -> None:
    g = _gen(20 + k)
    real = torch.randn(40, 3, generator=g).to(dtype)
    # Narrow along one axis and shifted: neither precision nor recall is 0 or 1 for any k tested.
    fake = (torch.randn(33, 3, generator=g) * torch.tensor([1.5, 0.4, 1.0]) + 1.0).to(dtype)
    expected = _pr_loop(real, fake, k)
    assert 0.0 < expected[0] < 1.0
    assert 0.0 < expected[1] < 1.0
    for block in (None, 1, 7, 1000):
        result = precision_recall(real, fake, k=k, block_size=block)
        assert isinstance(result, PrecisionRecall)
        assert result == pytest.approx(expected, abs=0.0)


def test_identical_sets_give_precision_and_recall_one() -> None:
    x = torch.randn(30, 5, generator=_gen(30))
    x = torch.cat([x, x[:4]])  # duplicates as well
    assert precision_recall(x, x, block_size=4) == (1.0, 1.0)
    far = x + 100.0
    assert precision_recall(x, far) == (0.0, 0.0)


def test_manifold_radii_and_membership_by_hand() -> None:
    pts = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    torch.testing.assert_close(manifold_radii(pts, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0]).double())
    torch.testing.assert_close(
        manifold_radii(pts, k=2, block_size=1), torch.tensor([3.0, 2.0, 3.0, 6.0]).double()
    )
    radii = torch.tensor([1.0, 1.0, 2.0, 4.0])
    queries = torch.tensor([[-1.0], [5.0], [11.0], [11.5], [-1.5]])
    # Boundary included: −1 is exactly 1 from 0; 11 exactly 4 from 7.
    expected = torch.tensor([True, True, True, False, False])
    assert torch.equal(in_manifold(queries, pts, radii, block_size=2), expected)


def test_precision_recall_errors() -> None:
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"k \+ 1 = 6"):
        precision_recall(x, torch.randn(10, 2), k=5)
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match=r"fake_feats.*D = 2"):
        precision_recall(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="block_size"):
        precision_recall(x, x, k=1, block_size=0)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(x, bad, k=1)
    with pytest.raises(ValueError, match=r"radii: expected shape \(5,\)"):
        in_manifold(x, x, torch.ones(4))


# ----------------------------------------------------------------------------------------- classifier

H, W, CLASSES = 12, 9, 4


def _bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images with one bright horizontal bar whose row depends on the class (odd size, like mfeat)."""
    g = _gen(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    images = 0.3 * torch.rand(n, 1, H, W, generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, 0, 2 + 3 * c, :] = 0.7 + 0.3 * torch.rand(W, generator=g)
    return images, labels


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureClassifier, torch.Tensor, torch.Tensor]:
    # Module-scoped, so it runs before the function-scoped one-thread fixture: set (and restore) here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = _bars(256, seed=40)
        clf = train_feature_classifier(x, y, steps=60, batch_size=32, lr=3e-3, seed=0)
    finally:
        torch.set_num_threads(before)
    return clf, *_bars(200, seed=41)


Trained = tuple[FeatureClassifier, torch.Tensor, torch.Tensor]


def test_classifier_learns_an_easy_task(trained: Trained) -> None:
    clf, x_test, y_test = trained
    assert clf.image_shape == (H, W)
    assert clf.num_classes == CLASSES
    assert clf.accuracy(x_test, y_test) > 0.9
    feats = clf.features(x_test)
    assert feats.shape == (200, 64)
    assert feats.dtype == torch.float32
    pred = clf.predict(x_test)
    assert pred.dtype == torch.int64
    assert pred.shape == (200,)
    assert not clf.training


def test_classifier_training_is_deterministic_and_leaves_global_rng_alone() -> None:
    x, y = _bars(64, seed=50)
    state = torch.get_rng_state()
    a = train_feature_classifier(x, y, steps=8, batch_size=16, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = train_feature_classifier(x, y, steps=8, batch_size=16, seed=7)
    c = train_feature_classifier(x, y, steps=8, batch_size=16, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_classifier_other_sizes() -> None:
    clf = FeatureClassifier((28, 28), num_classes=10, feature_dim=32)
    assert clf.features(torch.rand(3, 1, 28, 28)).shape == (3, 32)
    clf = FeatureClassifier((16, 15), num_classes=10)
    assert clf.predict(torch.rand(2, 1, 16, 15)).shape == (2,)


def test_classifier_rejects_bad_images(trained: Trained) -> None:
    clf, x, y = trained
    expected = rf"\(N, 1, {H}, {W}\)"
    for bad in (x[:, 0], x.transpose(2, 3), x.repeat(1, 3, 1, 1), x[:, :, :-1]):
        with pytest.raises(ValueError, match=expected):
            clf.features(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.predict(x * 255)
    with pytest.raises(ValueError, match="floating"):
        clf.predict((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"labels: expected shape \(200,\)"):
        clf.accuracy(x, y[:10])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        train_feature_classifier(x[:, 0], y, steps=1)
    with pytest.raises(ValueError, match="num_classes"):
        train_feature_classifier(x, torch.zeros(200, dtype=torch.int64), steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_feature_classifier(x, y, steps=0)


# ------------------------------------------------------------------------------------------ PNG, grid


def _decode_png(data: bytes) -> np.ndarray:
    """Minimal reader for 8-bit greyscale, non-interlaced PNGs (what save_png writes), any scanline filter."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header, kinds = 8, b"", None, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        kinds.append(kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) == (8, 0, 0)
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width + 1)
    # Undo each scanline's filter (PNG spec. section 9.2; one byte per pixel, so bpp = 1): 0 None, 1 Sub,
    # 2 Up, 3 Average, 4 Paeth — in plain Python, independent of the encoder (Pillow) under test.
    out = np.zeros((height, width), dtype=np.int64)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        assert kind in (0, 1, 2, 3, 4), kind
        for x in range(width):
            a = int(out[y, x - 1]) if x else 0
            b = int(out[y - 1, x]) if y else 0
            c = int(out[y - 1, x - 1]) if x and y else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            pred = (0, a, b, (a + b) // 2, paeth)[kind]
            out[y, x] = (int(line[x]) + pred) % 256
    return out.astype(np.uint8)


def test_png_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(7, 5), dtype=np.uint8)
    path = save_png(tmp_path / "sub" / "a.png", img)
    assert path == tmp_path / "sub" / "a.png"
    np.testing.assert_array_equal(_decode_png(path.read_bytes()), img)
    # Overwrite in place; no temporary file is left behind.
    img2 = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    save_png(path, img2)
    np.testing.assert_array_equal(_decode_png(path.read_bytes()), img2)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]


def test_png_readable_by_matplotlib(tmp_path: Path) -> None:
    mpimg = pytest.importorskip("matplotlib.image")
    img = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    path = save_png(tmp_path / "b.png", img)
    read = mpimg.imread(path)
    np.testing.assert_array_equal(np.rint(np.asarray(read) * 255).astype(np.uint8), img)


def test_png_rejects_bad_arrays(tmp_path: Path) -> None:
    for bad in (np.zeros((3, 3)), np.zeros((3, 3, 3), dtype=np.uint8), np.zeros((0, 4), dtype=np.uint8)):
        with pytest.raises(ValueError, match="2-D uint8"):
            save_png(tmp_path / "x.png", bad)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="2-D uint8"):
        encode_png([[0, 1]])  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", DTYPES)
def test_grid_layout_by_hand(dtype: torch.dtype) -> None:
    # Three 2x3 images with values 0.2, 0.6, 1.0 (→ 51, 153, 255), two per row, pad 1 of grey 0 (→ 0).
    images = torch.stack([torch.full((1, 2, 3), v, dtype=dtype) for v in (0.2, 0.6, 1.0)])
    a, b, c = 51, 153, 255
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, a, a, a, 0, b, b, b, 0],
            [0, a, a, a, 0, b, b, b, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, c, c, c, 0, 0, 0, 0, 0],
            [0, c, c, c, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(image_grid(images, nrow=2, pad=1, pad_value=0.0), expected)
    # (N, H, W) input is the same thing; a numpy input too.
    np.testing.assert_array_equal(image_grid(images[:, 0].numpy(), nrow=2, pad=1, pad_value=0.0), expected)


def test_grid_scale_pad_and_clamp() -> None:
    images = torch.tensor([[[[0.0, 1.5], [-0.2, 0.5]]]]).repeat(5, 1, 1, 1)  # 5 images of 2x2
    grid = image_grid(images, nrow=3, pad=2, scale=3, pad_value=1.0)
    # rows = ceil(5/3) = 2, cols = 3; cell 6x6 after scaling.
    assert grid.shape == (2 * (6 + 2) + 2, 3 * (6 + 2) + 2)
    assert grid.dtype == np.uint8
    cell = grid[2:8, 2:8]
    expected_cell = np.kron(np.array([[0, 255], [0, 128]], dtype=np.uint8), np.ones((3, 3), dtype=np.uint8))
    np.testing.assert_array_equal(cell, expected_cell)
    assert (grid[:2] == 255).all()
    assert (grid[10:16, 18:24] == 255).all()  # the empty sixth cell
    assert np.array_equal(grid[10:16, 10:16], expected_cell)  # the fifth image, second row, second column
    # nrow larger than N: one row of N images.
    assert image_grid(images[:2], nrow=10, pad=0).shape == (2, 4)


def test_save_grid_writes_the_grid(tmp_path: Path) -> None:
    images = torch.rand(7, 1, 4, 3, generator=_gen(60))
    path = save_grid(tmp_path / "grid.png", images, nrow=4, scale=2)
    np.testing.assert_array_equal(_decode_png(path.read_bytes()), image_grid(images, 4, scale=2))


def test_grid_errors() -> None:
    with pytest.raises(ValueError, match=r"N >= 1"):
        image_grid(torch.zeros(0, 1, 4, 4), nrow=2)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        image_grid(torch.zeros(2, 3, 4, 4), nrow=2)
    with pytest.raises(ValueError, match="nrow"):
        image_grid(torch.zeros(2, 4, 4), nrow=0)
    with pytest.raises(ValueError, match="scale"):
        image_grid(torch.zeros(2, 4, 4), nrow=1, scale=0)
    with pytest.raises(ValueError, match="pad_value"):
        image_grid(torch.zeros(2, 4, 4), nrow=1, pad_value=2.0)
    with pytest.raises(ValueError, match="NaN"):
        image_grid(torch.full((2, 4, 4), float("nan")), nrow=1)

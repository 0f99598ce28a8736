"""ConvDecoder, fit_decoder, mix_embeddings and GenerationScorer (synthetic data; the study uses real)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgeom.generation import (
    ConvDecoder,
    GenerationScorer,
    fid_from_features,
    fit_decoder,
    mix_embeddings,
    train_feature_classifier,
)


def _squares(n: int, shape: tuple[int, int] = (16, 15)) -> torch.Tensor:
    """``n`` distinct images: a bright 4x4 square at a different place in each."""
    h, w = shape
    out = torch.zeros(n, 1, h, w)
    for i in range(n):
        r, c = (3 * i) % (h - 4), (5 * i) % (w - 4)
        out[i, 0, r : r + 4, c : c + 4] = 1.0
    return out


@pytest.mark.parametrize("shape", [(16, 15), (28, 28), (7, 9)])
def test_output_shape_and_range(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    dec = ConvDecoder(12, shape)
    out = dec.sample(torch.randn(5, 12))
    assert out.shape == (5, 1, *shape)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    images = _squares(8)
    cond = torch.randn(8, 16)
    dec = ConvDecoder(16, (16, 15), channels=(32, 16), hidden=64)
    losses = fit_decoder(dec, cond, images, steps=300, batch_size=8, lr=3e-3)
    out = dec.sample(cond)
    own = ((out - images) ** 2).flatten(1).mean(1)
    # the error to its own target must be far below the error to any other target
    cross = torch.cdist(out.flatten(1), images.flatten(1)) ** 2 / images[0].numel()
    cross.fill_diagonal_(float("inf"))
    assert losses[-1] < 0.1 * losses[0]
    assert bool((own < 0.2 * cross.min(1).values).all())


def test_sampling_is_deterministic_and_chunking_invariant() -> None:
    torch.manual_seed(0)
    dec = ConvDecoder(8, (16, 15))
    cond = torch.randn(7, 8)
    a, b = dec.sample(cond), dec.sample(cond, batch_size=3)
    torch.testing.assert_close(a, b)
    assert dec.training  # sample restores the mode


def test_condition_is_scale_invariant() -> None:
    torch.manual_seed(0)
    dec = ConvDecoder(8, (16, 15))
    cond = torch.randn(4, 8)
    torch.testing.assert_close(dec.sample(cond), dec.sample(3.0 * cond))


def test_wrong_embedding_dimension_is_a_clear_error() -> None:
    dec = ConvDecoder(64, (16, 15))
    with pytest.raises(ValueError, match=r"\(B, 64\).*got \(3, 32\)"):
        dec.sample(torch.randn(3, 32))
    with pytest.raises(ValueError, match="NaN"):
        dec.sample(torch.full((2, 64), float("nan")))
    with pytest.raises(ValueError, match=r"images: expected shape \(B, 1, 16, 15\)"):
        fit_decoder(dec, torch.randn(4, 64), torch.rand(4, 1, 15, 16), steps=1)
    with pytest.raises(ValueError, match="expected 4 rows"):
        fit_decoder(dec, torch.randn(4, 64), torch.rand(5, 1, 16, 15), steps=1)
    with pytest.raises(ValueError, match="image_shape"):
        ConvDecoder(8, (16, 0))
    with pytest.raises(ValueError, match="embed_dim"):
        ConvDecoder(0, (16, 15))


def test_mix_embeddings_is_the_mean_of_normalised_rows() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    ref = np.zeros((3, 5))
    for i in range(3):  # plain loop: (a_i/|a_i| * 1 + b_i/|b_i| * 3) / 4
        ai, bi = a[i].numpy(), b[i].numpy()
        ref[i] = (ai / np.linalg.norm(ai) + 3 * bi / np.linalg.norm(bi)) / 4
    torch.testing.assert_close(mix_embeddings(a, b, weights=[1.0, 3.0]).double(), torch.from_numpy(ref))
    with pytest.raises(ValueError, match="at least 2"):
        mix_embeddings(a)
    with pytest.raises(ValueError, match="shape"):
        mix_embeddings(a, b[:2])
    with pytest.raises(ValueError, match="weights"):
        mix_embeddings(a, b, weights=[1.0, -1.0])


def test_scorer_matches_an_independent_computation() -> None:
    torch.manual_seed(0)
    labels = torch.arange(40) % 4
    real = torch.zeros(40, 1, 8, 8)
    for i, c in enumerate(labels.tolist()):
        real[i, 0, 2 * c : 2 * c + 2, :] = 1.0
    real = (real + 0.05 * torch.rand_like(real)).clamp(0, 1)
    clf = train_feature_classifier(real, labels, steps=150, seed=0, feature_dim=8, channels=(4, 8))
    scorer = GenerationScorer(clf, real)
    fake = (real.flip(0) + 0.2 * torch.rand_like(real)).clamp(0, 1)
    got = scorer.score(fake, labels=labels.flip(0), targets=real)
    assert got["fid"] == pytest.approx(fid_from_features(clf.features(real), clf.features(fake)), rel=1e-9)
    acc = sum(int(clf.predict(fake[i : i + 1])[0] == labels.flip(0)[i]) for i in range(40)) / 40
    assert got["accuracy"] == pytest.approx(acc)
    mse = sum(float(((fake[i] - real[i]) ** 2).mean()) for i in range(40)) / 40
    assert got["pixel_mse"] == pytest.approx(mse, rel=1e-6)
    assert 0.0 <= got["precision"] <= 1.0 and 0.0 <= got["recall"] <= 1.0
    own = scorer.score(real, labels=labels)
    assert own["fid"] == pytest.approx(0.0, abs=1e-6)
    assert own["precision"] == own["recall"] == 1.0
    with pytest.raises(ValueError, match="labels"):
        scorer.score(fake, labels=labels[:3])
    with pytest.raises(ValueError, match="targets"):
        scorer.score(fake, targets=real[:3])

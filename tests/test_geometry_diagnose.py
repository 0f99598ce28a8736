"""`diagnose`: the documented keys, values equal to the individual diagnostics, masks, subsampling, errors."""

from __future__ import annotations

import math
import re
from itertools import combinations
from pathlib import Path

import pytest
import torch

from mmgeom import functional as F
from mmgeom import geometry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "diagnostics.md"

PAIR_STATS = ("gap", "pos_cos", "neg_cos", "cos_diff", "ks", "align", "drift", "norm_corr")
MODALITY_STATS = ("uniform", "erank", "norm_mean", "norm_std", "norm_cv")
BATCH_STATS = ("uniform/centroid", "holder", "zeta", "chi")


def make_batch(b: int = 24, d: int = 6, names: tuple[str, ...] = ("image", "text", "audio"), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=g)
    out = {}
    for k, name in enumerate(names):
        scale = 0.5 + torch.rand(b, 1, generator=g) * (k + 1)  # varying raw norms
        out[name] = (base + 0.8 * torch.randn(b, d, generator=g) + 0.3 * k) * scale
    return out


def expected_keys(names: list[str], labels: bool) -> set[str]:
    keys = {f"{s}/{m}-{n}" for m, n in combinations(names, 2) for s in PAIR_STATS}
    keys |= {f"{s}/{m}" for m in names for s in MODALITY_STATS}
    if labels:
        keys |= {f"margin/{m}" for m in names}
    return keys | set(BATCH_STATS)


def test_keys_are_stable_and_values_are_floats() -> None:
    batch = make_batch()
    labels = torch.arange(24) % 4
    out = geometry.diagnose(batch, labels)
    assert set(out) == expected_keys(list(batch), labels=True)
    assert len(out) == 8 * 3 + 5 * 3 + 3 + 4
    assert all(type(v) is float for v in out.values())
    assert all(math.isfinite(v) for v in out.values())
    assert set(geometry.diagnose(batch)) == expected_keys(list(batch), labels=False)


def test_every_key_is_documented() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+(?:/[a-z_-]+)?)` \|", text, flags=re.M))
    out = geometry.diagnose(make_batch(names=("m", "n")), torch.tensor([0, 1] * 12))
    for key in out:
        assert generic_key(key) in documented, f"{key} is missing from docs/diagnostics.md"


def generic_key(key: str) -> str:
    """``gap/m-n`` for a pair key, ``erank/m`` for a modality key, the key itself otherwise."""
    if "/" not in key or key == "uniform/centroid":
        return key
    stat, rest = key.split("/")
    return f"{stat}/m-n" if "-" in rest else f"{stat}/m"


def test_values_equal_the_individual_diagnostics() -> None:
    batch = make_batch(seed=1)
    labels = torch.arange(24) % 3
    out = geometry.diagnose(batch, labels, temperature=0.2, conflict_anchor="text", holder_bandwidth=0.7)
    a, t = batch["image"], batch["text"]
    assert out["gap/image-text"] == geometry.modality_gap(a, t)
    stats = geometry.cosine_stats(a, t)
    for key in ("pos_cos", "neg_cos", "cos_diff", "ks"):
        assert out[f"{key}/image-text"] == stats[key]
    assert out["align/image-text"] == pytest.approx(float(F.alignment(a, t)))
    assert out["drift/image-text"] == pytest.approx(out["align/image-text"])  # alpha = 2
    assert out["norm_corr/image-text"] == geometry.norm_correlation(a, t)
    assert out["uniform/audio"] == pytest.approx(float(F.uniformity(batch["audio"])))
    assert out["erank/audio"] == geometry.effective_rank(batch["audio"])
    assert out["norm_cv/audio"] == geometry.norm_stats(batch["audio"])["cv"]
    assert out["margin/text"] == geometry.semantic_margin(t, labels)
    assert out["uniform/centroid"] == pytest.approx(geometry.centroid_uniformity(batch))
    assert out["holder"] == geometry.holder_divergence(batch, 0.7)  # 24^3 tuples: exact under "auto"
    conflict = geometry.conflict_metrics(batch, "text", 0.2)
    assert out["zeta"] == conflict["zeta"]
    assert out["chi"] == conflict["chi"]


def test_options_reach_their_diagnostics() -> None:
    batch = make_batch(seed=2)
    out = geometry.diagnose(batch, t=1.0, align_alpha=1.0, max_negatives=30, holder_method="mc", seed=3)
    assert out["uniform/image"] == pytest.approx(float(F.uniformity(batch["image"], t=1.0)))
    assert out["align/image-text"] == pytest.approx(
        float(F.alignment(batch["image"], batch["text"], alpha=1.0))
    )
    assert (
        out["ks/image-text"] == geometry.cosine_stats(batch["image"], batch["text"], max_negatives=30)["ks"]
    )
    ref = geometry.holder_divergence(batch, 0.5, method="mc", n_samples=512, seed=3)
    assert out["holder"] == pytest.approx(ref)


def test_labels_from_the_batch() -> None:
    batch = make_batch(seed=3)
    labels = torch.arange(24) % 2
    assert geometry.diagnose({**batch, "labels": labels}) == geometry.diagnose(batch, labels)


def test_mask_selects_rows_per_key() -> None:
    batch = make_batch(seed=4)
    present = torch.ones(24, dtype=torch.bool)
    present[[1, 5, 6, 20]] = False
    audio = batch["audio"].clone()
    audio[~present] = 0.0  # absent rows may be zeros
    out = geometry.diagnose({**batch, "audio": audio, "mask": {"audio": present}})
    full = geometry.diagnose(batch)
    # Keys that do not involve audio use every row.
    assert out["gap/image-text"] == full["gap/image-text"]
    assert out["erank/text"] == full["erank/text"]
    # Keys that involve audio use its present rows only.
    sub = {k: v[present] for k, v in batch.items()}
    assert out["gap/image-audio"] == geometry.modality_gap(sub["image"], sub["audio"])
    assert out["norm_mean/audio"] == geometry.norm_stats(sub["audio"])["mean"]
    assert out["zeta"] == geometry.conflict_metrics(sub)["zeta"]
    assert out["holder"] == pytest.approx(geometry.holder_divergence(sub, 0.5))


def test_max_rows_subsamples_quadratic_diagnostics() -> None:
    batch = make_batch(b=40, seed=5)
    out = geometry.diagnose(batch, max_rows=10)
    idx = torch.linspace(0, 39, 10).round().long()
    assert out["uniform/text"] == pytest.approx(float(F.uniformity(batch["text"][idx])))
    assert out["zeta"] == pytest.approx(
        geometry.conflict_metrics({k: v[idx] for k, v in batch.items()})["zeta"]
    )
    # Linear-cost keys still use every row.
    assert out["gap/image-text"] == geometry.modality_gap(batch["image"], batch["text"])


def test_low_precision_inputs_accumulate_in_float32() -> None:
    batch = make_batch(seed=6)
    out16 = geometry.diagnose({k: v.bfloat16() for k, v in batch.items()})
    out32 = geometry.diagnose({k: v.bfloat16().float() for k, v in batch.items()})
    assert out16.keys() == out32.keys()
    for key in out16:
        assert out16[key] == pytest.approx(out32[key], abs=1e-5), key


def test_two_modalities() -> None:
    out = geometry.diagnose(make_batch(names=("a", "b")))
    assert out["chi"] == pytest.approx(0.0, abs=1e-6)
    assert out["holder"] > 0


def test_bad_inputs_raise() -> None:
    batch = make_batch()
    with pytest.raises(ValueError, match="at least 2 modalities"):
        geometry.diagnose({"a": batch["image"]})
    with pytest.raises(ValueError, match="anchor"):
        geometry.diagnose(batch, conflict_anchor="video")
    with pytest.raises(ValueError, match="holder_bandwidth"):
        geometry.diagnose(batch, holder_bandwidth=0.0)
    with pytest.raises(ValueError, match="temperature"):
        geometry.diagnose(batch, temperature=-1.0)
    with pytest.raises(ValueError, match="labels"):
        geometry.diagnose(batch, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_rows"):
        geometry.diagnose(batch, max_rows=1)
    bad = batch["text"].clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="text"):
        geometry.diagnose({**batch, "text": bad})
    zero = batch["text"].clone()
    zero[3] = 0.0
    with pytest.raises(ValueError, match="all zeros"):
        geometry.diagnose({**batch, "text": zero})
    with pytest.raises(ValueError, match="mask"):
        geometry.diagnose({**batch, "mask": {"video": torch.ones(24, dtype=torch.bool)}})
    with pytest.raises(ValueError, match="mask"):
        geometry.diagnose({**batch, "mask": {"text": torch.ones(24)}})
    few = torch.zeros(24, dtype=torch.bool)
    few[0] = True
    with pytest.raises(ValueError, match="at least 2 rows"):
        geometry.diagnose({**batch, "mask": {"text": few}})

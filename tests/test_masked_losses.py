"""Masked UniAlign and DAGR (weights, ``-inf`` logits, tensor counts) equal the row-selection reference.

The reference below is the computation the losses used before they stopped selecting rows: each term on
``z[mask]`` (``z[mask[a] & mask[n]]`` for a pair), through the *unmasked* public functions, with the same
"too few rows -> 0" rules, and plain per-row loops for the centroids. Values and gradients must match it
over many random masks and the edge cases (a modality with 0 or 1 present rows, a pair with no common row,
every row missing one modality, all rows present), in float32 and float64. The absent rows hold junk, which
neither path may see.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

from mmgeom import functional as F
from mmgeom.losses import create_loss

from reference import uniformity_loop

NAMES = ("text", "image", "audio")
B, D = 9, 5
#: (rtol, atol) per dtype: float32 sums the same terms in another order (and over exact zeros).
TOL = {torch.float32: (2e-6, 2e-7), torch.float64: (1e-12, 1e-14)}


def _unit(v: Tensor) -> Tensor:
    return v / v.norm()


def _zero(mods: dict[str, Tensor]) -> Tensor:
    return next(iter(mods.values())).new_zeros(())


def unialign_reference(loss: Any, mods: dict[str, Tensor], mask: dict[str, Tensor]) -> dict[str, Tensor]:
    """The masked UniAlign loss by row selection (the code the module ran before; ``total`` included)."""
    names = list(mods)
    anchor = loss.anchor or names[0]
    zero = _zero(mods)
    terms: dict[str, Tensor] = {}
    uniform = zero
    for m, z in mods.items():
        rows = z[mask[m]]
        terms[f"uniform/{m}"] = u = F.uniformity(rows, loss.t) if rows.shape[0] >= 2 else zero
        uniform = uniform + u
    if loss.alignment == "anchor":
        weighted, count = zero, 0
        for n in names:
            if n == anchor:
                continue
            both = mask[anchor] & mask[n]
            k = int(both.sum())
            value = F.alignment(mods[anchor][both], mods[n][both], 2.0) if k else zero
            terms[f"align/{anchor}-{n}"] = value
            weighted, count = weighted + value * k, count + k
        align = weighted / count if count else zero
    else:  # plain loop: per row, squared deviations of the present unit rows from their mean
        total, entries = zero, 0
        for i in range(mods[names[0]].shape[0]):
            vs = [_unit(mods[m][i]) for m in names if bool(mask[m][i])]
            mean = sum(vs) / len(vs)
            total = total + sum(((v - mean) ** 2).sum() for v in vs)
            entries += len(vs)
        align = total / entries
    terms["align"] = align
    if loss.uniformity_reduction == "mean":
        uniform = uniform / len(names)
    terms["uniform"] = uniform
    total = loss.lambda_uni * uniform + loss.alignment_weight(len(names)) * align
    if loss.lambda_centroid > 0 or loss.lambda_det > 0:
        cents = []
        for i in range(mods[names[0]].shape[0]):
            vs = [_unit(mods[m][i]) for m in names if bool(mask[m][i])]
            cents.append(_unit(sum(vs) / len(vs)))
        u_c = F.uniformity(torch.stack(cents), loss.t_c)
        full = torch.stack([mask[m] for m in names], dim=1).all(dim=1)
        vol = F.gram_det(*[z[full] for z in mods.values()]).mean() if bool(full.any()) else zero
        terms["uniform/centroid"], terms["volume"] = u_c, vol
        total = total + loss.lambda_centroid * u_c + loss.lambda_det * vol
    terms["total"] = total
    return terms


def dagr_reference(loss: Any, mods: dict[str, Tensor], mask: dict[str, Tensor]) -> dict[str, Tensor]:
    """The masked DAGR regulariser by row selection (calibrated or fixed band only)."""
    zero = _zero(mods)
    terms: dict[str, Tensor] = {}
    total = zero
    if loss.mode != "anchor_only" and loss.lambda_d > 0:
        disp = zero
        for m, z in mods.items():
            rows = z[mask[m]]
            if rows.shape[0] < 2:
                d = zero
            elif loss.dispersion == "gaussian":
                d = F.dispersion(rows, loss.tau)
            else:
                d = -F.spectral_entropy(rows, power=2.0)
            terms[f"dispersion/{m}"] = d
            disp = disp + d
        total = total + loss.lambda_d * disp
    if loss.mode != "dispersion_only" and loss.lambda_a > 0:
        anchor = zero
        pairs = [(m, n) for i, m in enumerate(mods) for n in list(mods)[i + 1 :]]
        for m, n in pairs:
            both = mask[m] & mask[n]
            delta = float(loss.delta)
            value = F.band_hinge(mods[m][both], mods[n][both], delta) if bool(both.any()) else zero
            terms[f"anchor/{m}-{n}"] = value
            anchor = anchor + value
        terms["anchor"] = anchor / len(pairs)
        total = total + loss.lambda_a * terms["anchor"]
    terms["total"] = total
    return terms


def masks(seed: int = 0, count: int = 24) -> Iterator[tuple[str, dict[str, Tensor]]]:
    """Named edge-case masks, then random ones; every row keeps a modality and one row has two."""
    idx = torch.arange(B)

    def named(**cols: Tensor) -> dict[str, Tensor]:
        return {m: cols.get(m, torch.ones(B, dtype=torch.bool)) for m in NAMES}

    yield "all present", named()
    yield "audio has no row", named(audio=torch.zeros(B, dtype=torch.bool))
    yield "audio has one row", named(audio=idx == 4)
    yield "anchor has one row", named(text=idx == 2)
    yield "text-audio share no row", named(text=idx < 4, audio=idx >= 4)
    yield "every row misses one", named(text=idx % 3 != 0, image=idx % 3 != 1, audio=idx % 3 != 2)
    yield "one complete row", named(text=idx != 1, image=idx != 2, audio=idx <= 1)
    g = torch.Generator().manual_seed(seed)
    for k in range(count):
        p = (0.35, 0.6, 0.85)[k % 3]
        cols = torch.rand(B, len(NAMES), generator=g) < p
        empty = ~cols.any(dim=1)
        cols[empty, torch.randint(len(NAMES), (B,), generator=g)[empty]] = True
        cols[0, :2] = True  # one row with two present modalities (else the batch is rejected)
        yield f"random {k}", {m: cols[:, j].clone() for j, m in enumerate(NAMES)}


def batch(mask: dict[str, Tensor], dtype: torch.dtype, seed: int = 0) -> dict[str, Tensor]:
    """Leaf embeddings whose absent rows hold junk (large, random, not zeros)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in NAMES:
        z = torch.randn(B, D, generator=g, dtype=torch.float64)
        junk = 50 * torch.randn(B, D, generator=g, dtype=torch.float64)
        out[m] = torch.where(mask[m].unsqueeze(1), z, junk).to(dtype).requires_grad_()
    return out


UNIALIGN = [
    {"anchor": "text"},
    {"anchor": "image", "preset": "retrieval"},
    {"alignment": "centroid", "lambda_vol": 0.5, "lambda_det": 0.1},
    {"align_weight": "holder", "uniformity_reduction": "sum", "lambda_centroid": 0.3},
]
DAGR = [
    {"delta": 0.5},
    {"dispersion": "spectral", "delta": 0.2},
    {"mode": "always_on"},
    {"mode": "anchor_only", "delta": 0.1},
]
CASES = [("unialign", kw) for kw in UNIALIGN] + [("dagr", kw) for kw in DAGR]


def _values_and_grads(terms: dict[str, Tensor], mods: dict[str, Tensor]) -> tuple[dict[str, Tensor], list]:
    grads = torch.autograd.grad(terms["total"], list(mods.values()), allow_unused=True)
    out = [torch.zeros_like(z) if g is None else g for g, z in zip(grads, mods.values(), strict=True)]
    return {k: v.detach() for k, v in terms.items()}, out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda v: str(v)[:40])
def test_masked_loss_equals_row_selection_reference(
    name: str, kwargs: dict[str, Any], dtype: torch.dtype
) -> None:
    loss = create_loss(name, **kwargs)
    rtol, atol = TOL[dtype]
    if kwargs.get("dispersion") == "spectral" and dtype == torch.float32:
        # The spectrum's zero eigenvalues come out as rounding noise (~1e-7 of the largest) whose
        # p log p differs between the n x n and B x B Gram matrices: a float32 entropy is good to ~1e-5.
        rtol, atol = 1e-5, 1e-5
    reference = unialign_reference if name == "unialign" else dagr_reference
    for label, mask in masks():
        mods = batch(mask, dtype)
        out = loss(mods, mask=mask)
        got, got_grads = _values_and_grads({**out.terms, "total": out.total}, mods)
        # The module's terms are detached: recompute the graph for the gradient of the total only.
        got_grads = _values_and_grads({"total": loss(mods, mask=mask).total}, mods)[1]
        want, want_grads = _values_and_grads(reference(loss, mods, mask), mods)
        for key, value in want.items():
            assert torch.allclose(got[key].to(dtype), value, rtol=rtol, atol=atol), (
                label,
                key,
                got[key],
                value,
            )
        for m, g, w in zip(mods, got_grads, want_grads, strict=True):
            assert torch.isfinite(g).all(), (label, m)
            assert torch.allclose(g, w, rtol=rtol * 10, atol=atol * 10), (label, m, (g - w).abs().max())
            assert (g[~mask[m]] == 0).all(), (label, m)  # absent rows get exactly zero gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda v: str(v)[:40])
def test_all_present_mask_equals_the_unmasked_loss(
    name: str, kwargs: dict[str, Any], dtype: torch.dtype
) -> None:
    loss = create_loss(name, **kwargs)
    rtol, atol = TOL[dtype]
    full = {m: torch.ones(B, dtype=torch.bool) for m in NAMES}
    mods = batch(full, dtype, seed=3)
    masked = loss(mods, mask=full)
    plain = loss(mods)
    assert set(masked.terms) == set(plain.terms)
    for key, value in plain.terms.items():
        assert torch.allclose(masked.terms[key].to(value.dtype), value, rtol=rtol, atol=atol), key
    g_masked = torch.autograd.grad(masked.total, list(mods.values()), allow_unused=True)
    g_plain = torch.autograd.grad(plain.total, list(mods.values()), allow_unused=True)
    for a, b in zip(g_masked, g_plain, strict=True):
        if a is None or b is None:
            assert (a is None and b is None) or name == "dagr"
            continue
        assert torch.allclose(a, b, rtol=rtol * 10, atol=atol * 10)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda v: str(v)[:40])
def test_nan_in_absent_rows_reaches_neither_value_nor_gradient(name: str, kwargs: dict[str, Any]) -> None:
    # With value checks off the loss does not scan the batch: absent rows may hold NaN or Inf.
    loss = create_loss(name, check_values=False, **kwargs)
    checked = create_loss(name, **kwargs)
    mask = dict(list(masks(seed=5, count=1))[-1][1])
    clean = batch(mask, torch.float64, seed=1)
    dirty = {
        m: torch.where(mask[m].unsqueeze(1), z.detach(), float("nan")).requires_grad_()
        for m, z in clean.items()
    }
    dirty["audio"].data[~mask["audio"], 0] = float("inf")
    want = checked(clean, mask=mask).total
    got = loss(dirty, mask=mask).total
    assert torch.isfinite(got) and torch.allclose(got, want, rtol=1e-12, atol=1e-14)
    got.backward()
    for m, z in dirty.items():
        assert z.grad is not None and torch.isfinite(z.grad).all(), m
        assert (z.grad[~mask[m]] == 0).all(), m


def test_empty_terms_are_zero_with_zero_gradient_and_checks_off() -> None:
    # No row with two present modalities: every term is empty. With checks off the loss is 0, not NaN.
    mask = {
        "text": torch.zeros(B, dtype=torch.bool),
        "image": torch.arange(B) == 0,
        "audio": torch.arange(B) == 1,
    }
    for name, kwargs in CASES:
        mods = batch(mask, torch.float32)
        out = create_loss(name, check_values=False, **kwargs)(mods, mask=mask)
        terms = {k: v for k, v in out.terms.items() if k != "delta" and not k.startswith("uniform/centroid")}
        assert all(float(v) == 0.0 for v in terms.values()), (name, kwargs, terms)
        out.total.backward()
        for z in mods.values():
            assert z.grad is None or torch.isfinite(z.grad).all()


def test_a_row_without_any_modality_drops_out_of_the_centroid_terms() -> None:
    # Only with value checks off (on, it is an error): such a row has no centroid, so it leaves the
    # centroid uniformity and the centroid alignment, instead of a 0/0 centroid.
    mask = {
        "text": torch.arange(B) != 3,
        "image": torch.arange(B) != 3,
        "audio": (torch.arange(B) < 5) & (torch.arange(B) != 3),
    }
    keep = torch.arange(B) != 3
    loss = create_loss("unialign", check_values=False, alignment="centroid", lambda_vol=1.0)
    checked = create_loss("unialign", alignment="centroid", lambda_vol=1.0)
    with pytest.raises(ValueError, match="mask: every row needs at least one present modality"):
        checked(batch(mask, torch.float64), mask=mask)
    mods = batch(mask, torch.float64)
    got = loss(mods, mask=mask).terms
    want = checked({m: z[keep] for m, z in mods.items()}, mask={m: v[keep] for m, v in mask.items()}).terms
    for key in ("uniform/centroid", "align", "volume", "uniform/audio"):
        assert torch.allclose(got[key], want[key], rtol=1e-12, atol=1e-14), key


# --- functional layer -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 2, 4])
def test_masked_potential_equals_the_loop_on_present_rows(chunk_size: int | None) -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(11, 6, generator=g, dtype=torch.float64)
    for present in ([1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1], [0] * 10 + [1], [0] * 11, [1] + [0] * 9 + [1]):
        mask = torch.tensor(present, dtype=torch.bool)
        n = int(mask.sum())
        zz = z.clone().requires_grad_()
        got = F.uniformity(zz, 2.0, chunk_size, mask=mask)
        want = uniformity_loop(z[mask], 2.0) if n >= 2 else 0.0
        assert float(got.detach()) == pytest.approx(want, rel=1e-12, abs=1e-14)
        got.backward()
        assert zz.grad is not None and torch.isfinite(zz.grad).all() and (zz.grad[~mask] == 0).all()
        if n >= 2:  # gradient of the present rows: the one of the selected rows
            sel = z[mask].clone().requires_grad_()
            F.uniformity(sel, 2.0).backward()
            assert torch.allclose(zz.grad[mask], sel.grad, rtol=1e-12, atol=1e-14)
        else:
            assert (zz.grad == 0).all()


def test_masked_dispersion_and_spectral_entropy_equal_the_selected_rows() -> None:
    g = torch.Generator().manual_seed(2)
    for rows, dim in ((12, 4), (6, 9)):  # B >= D (D x D Gram) and B < D (B x B Gram)
        z = torch.randn(rows, dim, generator=g, dtype=torch.float64)
        mask = torch.rand(rows, generator=g) < 0.6
        mask[:2] = True
        assert float(F.dispersion(z, 0.5, mask=mask)) == pytest.approx(
            float(F.dispersion(z[mask], 0.5)), rel=1e-12
        )
        for power in (2.0, 1.0):
            got = F.spectral_entropy(z, power=power, mask=mask)
            want = F.spectral_entropy(z[mask], power=power)
            assert float(got) == pytest.approx(float(want), rel=1e-10, abs=1e-12)
    one = torch.zeros(5, dtype=torch.bool)
    one[3] = True
    assert float(F.spectral_entropy(torch.randn(5, 3, dtype=torch.float64), mask=one)) == 0.0


def test_masked_pair_terms_and_mean() -> None:
    g = torch.Generator().manual_seed(3)
    a, b = F.normalize(torch.randn(7, 3, generator=g)), F.normalize(torch.randn(7, 3, generator=g))
    mask = torch.tensor([1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    assert torch.allclose(F.alignment_unit(a, b, 2.0, mask=mask), F.alignment_unit(a[mask], b[mask], 2.0))
    assert torch.allclose(F.alignment_unit(a, b, 1.0, mask=mask), F.alignment_unit(a[mask], b[mask], 1.0))
    assert torch.allclose(F.band_hinge_unit(a, b, 0.5, mask=mask), F.band_hinge_unit(a[mask], b[mask], 0.5))
    none = torch.zeros(7, dtype=torch.bool)
    assert float(F.band_hinge_unit(a, b, 0.0, mask=none)) == 0.0
    assert float(F.masked_mean(torch.tensor([1.0, 2.0, 6.0]), torch.tensor([True, False, True]))) == 3.5
    assert float(F.masked_mean(torch.tensor([float("nan")]), torch.tensor([False]))) == 0.0


def test_masked_functional_bad_masks() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"mask: expected a bool tensor of shape \(4,\) for z"):
        F.uniformity(z, mask=torch.ones(4))
    z[1] = 0.0
    with pytest.raises(ValueError, match="z: row 1 is marked present but is all zeros"):
        F.dispersion(z, 1.0, mask=torch.ones(4, dtype=torch.bool))
    assert math.isfinite(float(F.dispersion(z, 1.0, mask=torch.tensor([True, False, True, True]))))


# --- DAGR calibration -------------------------------------------------------------------------------


def test_masked_calibration_equals_the_quantile_of_the_present_pairs() -> None:
    steps = 3
    reg = create_loss("dagr", delta="q0.3", calibration_steps=steps).train()
    recorded = []
    masked = list(masks(seed=7, count=steps))[-steps:]
    for k, (_, mask) in enumerate(masked):
        mods = batch(mask, torch.float32, seed=k)
        reg(mods, mask=mask)
        for i, m in enumerate(NAMES):
            for n in NAMES[i + 1 :]:
                both = mask[m] & mask[n]
                recorded.append(F.paired_sq_dists(mods[m], mods[n]).detach().double()[both])
    want = torch.quantile(torch.cat(recorded), 0.3)
    assert not reg.calibrating
    assert float(reg.delta) == pytest.approx(float(want), rel=1e-12)


def test_calibration_state_holds_only_present_drift() -> None:
    reg = create_loss("dagr", delta="auto", calibration_steps=5).train()
    mask = {"text": torch.arange(B) < 6, "image": torch.arange(B) >= 2}
    mods = {m: torch.randn(B, D) for m in ("text", "image")}
    reg(mods, mask=mask)
    (recorded,) = reg.state_dict()["_extra_state"]["recorded"]
    assert recorded.dtype == torch.float64 and recorded.device.type == "cpu" and recorded.shape == (4,)
    want = F.paired_sq_dists(mods["text"], mods["image"]).double()[2:6]
    assert torch.allclose(recorded, want)


def test_all_absent_calibration_gives_a_zero_band() -> None:
    # No pair present in any calibration row: the band is 0 (as an empty drift gave before).
    reg = create_loss("dagr", delta="auto", calibration_steps=1, check_values=False).train()
    mask = {"text": torch.arange(B) < 4, "image": torch.arange(B) >= 4}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg({m: torch.randn(B, D) for m in ("text", "image")}, mask=mask)
    assert float(reg.delta) == 0.0 and not reg.calibrating


def test_inactive_band_warning_is_a_value_check() -> None:
    # Antipodal pairs drift by 4: the band is 4 > 1.5. Checks on: a warning; off: none (no host read).
    z = torch.randn(6, 4)
    batch = {"text": z, "image": -z}
    with pytest.warns(UserWarning, match="delta: calibrated band 4 > 1.5"):
        create_loss("dagr", delta="auto", calibration_steps=1).train()(batch)
    quiet = create_loss("dagr", delta="auto", calibration_steps=1, check_values=False).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet(batch)
    assert float(quiet.delta) == pytest.approx(4.0)

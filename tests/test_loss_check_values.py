"""The per-loss ``check_values`` switch: same results on and off, value checks skipped only when off."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import mmgeom
from mmgeom._validation import validation_enabled
from mmgeom.losses import create_loss, list_losses

CONFIGS: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in list_losses()] + [
    ("infonce", {"learnable_temperature": True, "anchor": "image"}),
    ("unialign", {"preset": "retrieval"}),
    ("unialign", {"alignment": "centroid", "lambda_vol": 0.3}),
    ("dagr", {"dispersion": "spectral"}),
    ("l2dir", {"norm_term": "logcos", "objective": "infotn"}),
    ("l2dir", {"variant": "release"}),
]


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(12, 7, generator=g, dtype=torch.float64) for m in ("text", "image", "audio")}


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=lambda v: str(v))
def test_values_and_gradients_identical_with_checks_on_and_off(name: str, kwargs: dict[str, Any]) -> None:
    results = []
    for check in (True, False):
        torch.manual_seed(0)
        loss = create_loss(name, check_values=check, **kwargs)
        batch = {m: z.clone().requires_grad_() for m, z in _batch().items()}
        out = loss(batch)
        out.total.backward()
        results.append((out.total.detach(), {m: z.grad for m, z in batch.items()}, out.terms))
    (t_on, g_on, terms_on), (t_off, g_off, terms_off) = results
    assert torch.equal(t_on, t_off)
    assert terms_on.keys() == terms_off.keys()
    for m in g_on:
        if g_on[m] is None:
            assert g_off[m] is None
        else:
            torch.testing.assert_close(g_on[m], g_off[m], rtol=0, atol=0)


def test_check_values_is_a_constructor_keyword_and_an_attribute() -> None:
    loss = create_loss("infonce", check_values=False, temperature=0.1)
    assert loss.check_values is False
    assert create_loss("infonce").check_values is True
    loss.check_values = True
    bad = _batch()
    bad["text"][3, 2] = float("nan")
    with pytest.raises(ValueError, match="text: 1 row"):
        loss(bad)
    loss.check_values = False
    assert torch.isnan(loss(bad).total)  # not checked: NaN flows through, for the trainer to catch
    with pytest.raises(ValueError, match="check_values: expected True or False"):
        create_loss("infonce", check_values=1)


def test_check_values_off_still_checks_shapes_and_names() -> None:
    loss = create_loss("unialign", check_values=False, anchor="depth")
    batch = _batch()
    with pytest.raises(ValueError, match="anchor: unknown modality 'depth'"):
        loss(batch)
    batch["image"] = batch["image"][:, :5]
    with pytest.raises(ValueError, match="image: expected dimension D = 7"):
        create_loss("infonce", check_values=False)(batch)
    with pytest.raises(ValueError, match="unexpected arguments"):
        create_loss("infonce", check_values=False)(_batch(), bogus=1)


def test_zero_row_and_mask_value_checks_follow_the_switch() -> None:
    batch = _batch()
    batch["image"][5] = 0.0
    with pytest.raises(ValueError, match="image: row 5 is all zeros"):
        create_loss("align_uniform")(batch)
    create_loss("align_uniform", check_values=False)(batch)  # no error: value checks are off
    mask = {"image": torch.zeros(12, dtype=torch.bool), "audio": torch.zeros(12, dtype=torch.bool)}
    with pytest.raises(ValueError, match="no row has two present modalities"):
        create_loss("unialign")(_batch(), mask=mask)
    create_loss("unialign", check_values=False)(_batch(), mask=mask)


def test_the_global_switch_is_restored_after_a_call_even_on_error() -> None:
    loss = create_loss("infonce", check_values=False)
    loss(_batch())
    assert validation_enabled()
    with pytest.raises(ValueError):
        loss({"text": torch.randn(4, 3)})
    assert validation_enabled()
    with mmgeom.validation(False):  # globally off: a check_values=True loss does not turn it back on
        bad = _batch()
        bad["text"][0, 0] = float("inf")
        create_loss("infonce")(bad)
        assert not validation_enabled()


def test_checks_off_on_one_thread_leave_other_threads_checked() -> None:
    """check_values=False is per call and per thread: a loss running elsewhere keeps its value checks."""
    import threading

    from mmgeom import _validation

    inside, release, seen = threading.Event(), threading.Event(), []

    def unchecked() -> None:
        with _validation.values_unchecked():
            seen.append(("A", _validation.validation_enabled()))
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=unchecked)
    worker.start()
    assert inside.wait(10)
    seen.append(("B", _validation.validation_enabled()))
    release.set()
    worker.join()
    assert seen == [("A", False), ("B", True)]
    assert _validation.validation_enabled()

"""No host-device synchronisation inside a loss forward/backward when its value checks are off.

On a GPU every read of a tensor's value on the host (``.item()``, ``bool(t)``, ``.cpu()``, ``.tolist()``,
``float(t)``, ``t.nonzero()``, boolean-mask indexing, ...) waits for the device. The test counts those calls
on CPU tensors, so it holds on a GPU too without one. The counter patches the methods on ``torch.Tensor``
and the functions in ``torch`` for the duration of a call: unlike a ``TorchFunctionMode``, which is popped
while ``backward()`` runs, patched methods also see what custom autograd ``Function.backward`` methods and
gradient hooks do. ``test_counter_catches_*`` check that the counter fails when it should.

Batches with a missing-modality ``mask`` are covered too (every loss that ``supports_mask``, and DAGR's
``delta="auto"`` calibration calls): the masked paths weight rows instead of selecting them.

What the counter cannot see: a synchronisation inside a torch operator's C++ code. Of the operators the
losses use, PyTorch documents one: ``torch.linalg.eigvalsh`` (DAGR's ``dispersion="spectral"``) synchronises
a CUDA device with the CPU (its solver's error check), masked or not.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

from mmgeom.losses import LossOutput, MultimodalLoss, create_loss, list_losses

#: Tensor methods that read a value on the host (a device synchronisation on a GPU).
SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero")
#: ``torch`` functions whose result shape or value needs the host to wait.
SYNC_FUNCTIONS = ("equal", "nonzero", "masked_select", "unique", "is_nonzero")


@contextlib.contextmanager
def count_syncs() -> Iterator[Counter[str]]:
    """Count calls that synchronise with the device, in forward and backward alike."""
    seen: Counter[str] = Counter()
    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return original(*args, **kwargs)

        # Restore exactly: an inherited method (Tensor.item lives on TensorBase) is deleted again.
        saved.append((owner, name, original if name in vars(owner) else None))
        setattr(owner, name, counted)

    for name in (*SYNC_METHODS, "masked_select"):
        wrap(Tensor, name)
    for name in SYNC_FUNCTIONS:
        wrap(torch, name)
    getitem = Tensor.__getitem__

    def counted_getitem(self: Tensor, index: Any) -> Any:
        # A boolean mask as index: the result's size depends on the mask's values.
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, Tensor) and p.dtype == torch.bool for p in parts):
            seen["__getitem__[bool]"] += 1
        return getitem(self, index)

    saved.append((Tensor, "__getitem__", getitem if "__getitem__" in vars(Tensor) else None))
    Tensor.__getitem__ = counted_getitem  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        for owner, name, original in reversed(saved):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def _batch(m: int = 3, b: int = 8, d: int = 6) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    names = ["text", "image", "audio", "depth"][:m]
    return {n: torch.randn(b, d, generator=g).requires_grad_() for n in names}


#: Configurations with their own code paths, beyond each registered loss's defaults.
VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("infonce", {"learnable_temperature": True, "anchor": "text"}, {}),
    ("infonce", {}, {"labels": torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])}),
    ("siglip", {"pairs": [("text", "image", 2.0), ("image", "audio")]}, {}),
    ("align_uniform", {"alpha": 1.0}, {}),
    ("gram", {"learnable_temperature": False}, {}),
    ("unialign", {"preset": "retrieval"}, {}),
    ("unialign", {"alignment": "centroid", "lambda_vol": 0.5, "lambda_det": 0.1}, {}),
    ("unialign", {"align_weight": "holder", "uniformity_reduction": "sum"}, {}),
    ("dagr", {"dispersion": "spectral"}, {}),
    ("dagr", {"mode": "always_on"}, {}),
    # Calibrated by the warm-up call; afterwards "is delta still NaN" is known on the host.
    ("dagr", {"delta": "auto", "calibration_steps": 1}, {}),
    ("l2dir", {"norm_term": "logcos", "objective": "infotn", "learnable_temperature": True}, {}),
    ("l2dir", {"variant": "release"}, {}),
    ("l2dir", {"reconstruction_weight": 0.5}, {"magnitude_targets": "norms"}),
]


def _call(name: str, kwargs: dict[str, Any], call_kwargs: dict[str, Any], check_values: bool) -> Counter[str]:
    loss = create_loss(name, check_values=check_values, **kwargs)
    batch = _batch()
    extra = dict(call_kwargs)
    if extra.get("magnitude_targets") == "norms":
        extra["magnitude_targets"] = {m: z.detach().norm(dim=1) + 1.0 for m, z in batch.items()}
    loss(batch, **extra)  # first call outside the counter (lazy initialisation is not per-step work)
    with count_syncs() as seen:
        out = loss(batch, **extra)
        out.total.backward()
    assert all(z.grad is not None for z in batch.values()) or name == "dagr"
    return seen


#: Every loss that understands a mask, with the configurations that have their own masked code.
MASKED_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("unialign", {}),
    ("unialign", {"preset": "retrieval"}),
    ("unialign", {"alignment": "centroid", "lambda_vol": 0.5, "lambda_det": 0.1}),
    ("unialign", {"align_weight": "holder", "uniformity_reduction": "sum"}),
    ("dagr", {}),
    ("dagr", {"dispersion": "spectral"}),
    ("dagr", {"mode": "always_on"}),
    ("dagr", {"delta": "auto", "calibration_steps": 1}),
]


def _mask() -> dict[str, Tensor]:
    """8 rows: image misses two, audio misses three (one row has the text alone), absent rows zero."""
    present = {"image": [1, 0, 1, 1, 0, 1, 1, 1], "audio": [0, 1, 1, 1, 0, 1, 0, 1]}
    return {m: torch.tensor(v, dtype=torch.bool) for m, v in present.items()}


def _masked_batch() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    mask = _mask()
    batch = _batch()
    with torch.no_grad():
        for m, present in mask.items():
            batch[m][~present] = 0.0
    return batch, mask


@pytest.mark.parametrize(("name", "kwargs"), MASKED_VARIANTS, ids=lambda v: str(v)[:40])
def test_masked_batches_run_without_a_sync(name: str, kwargs: dict[str, Any]) -> None:
    loss = create_loss(name, check_values=False, **kwargs)
    batch, mask = _masked_batch()
    loss(batch, mask=mask)  # warm-up outside the counter (DAGR "auto": the calibrating call)
    with count_syncs() as seen:
        out = loss(batch, mask=mask)
        out.total.backward()
    assert seen == Counter()
    assert all(
        z.grad is not None and (z.grad[~mask.get(m, torch.ones(8, dtype=torch.bool))] == 0).all()
        for m, z in batch.items()
    )


def test_every_loss_that_supports_a_mask_is_covered() -> None:
    masked = {n for n in list_losses() if getattr(create_loss(n), "supports_mask", False)}
    assert masked and masked <= {name for name, _ in MASKED_VARIANTS}


@pytest.mark.filterwarnings("ignore:delta")
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_dagr_calibration_runs_without_a_sync(masked: bool) -> None:
    # Every call counted, the first included: two calibrating calls (the second fixes the band from the
    # drift kept on the device), then one with the calibrated anchor.
    loss = create_loss("dagr", delta="auto", calibration_steps=2, check_values=False).train()
    batch, mask = _masked_batch() if masked else (_batch(), None)
    with count_syncs() as seen:
        for _ in range(3):
            loss(batch, mask=mask).total.backward()
    assert seen == Counter()
    assert not loss.calibrating and int(loss.calls) == 2 and torch.isfinite(loss.delta)


@pytest.mark.parametrize("name", list_losses())
def test_every_registered_loss_runs_without_a_sync(name: str) -> None:
    assert _call(name, {}, {}, check_values=False) == Counter()


@pytest.mark.parametrize(("name", "kwargs", "call_kwargs"), VARIANTS, ids=lambda v: str(v)[:40])
def test_loss_variants_run_without_a_sync(
    name: str, kwargs: dict[str, Any], call_kwargs: dict[str, Any]
) -> None:
    assert _call(name, kwargs, call_kwargs, check_values=False) == Counter()


def test_value_checks_on_do_synchronise_once_per_batch() -> None:
    # With checks on, the batch's value checks read the host once (one tolist for every modality).
    seen = _call("infonce", {}, {}, check_values=True)
    assert seen == Counter({"tolist": 1})


class _ItemLoss(MultimodalLoss):
    """A toy loss with a deliberate sync, in forward or in a custom backward."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def compute(self, mods: dict[str, Tensor], labels: Tensor | None = None, **kwargs: Any) -> LossOutput:
        z = next(iter(mods.values()))
        if self.where == "forward":
            z.sum().item()
        if self.where == "backward":
            return LossOutput(_SyncInBackward.apply(z).sum())
        if self.where == "hook":
            z.register_hook(lambda g: g.clamp(-1.0, 1.0) if bool((g > 0).any()) else g)
        if self.where == "mask":
            return LossOutput(z[z > 0].sum())
        return LossOutput(z.pow(2).sum())


class _SyncInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x * 2

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        float(grad.sum())
        return grad * 2


@pytest.mark.parametrize(
    ("where", "expected"),
    [("forward", "item"), ("backward", "__float__"), ("hook", "__bool__"), ("mask", "__getitem__[bool]")],
)
def test_counter_catches_a_deliberate_sync(where: str, expected: str) -> None:
    loss = _ItemLoss(where)
    loss.check_values = False
    batch = _batch()
    with count_syncs() as seen:
        loss(batch).total.backward()
    assert seen[expected] >= 1


def test_counter_restores_torch() -> None:
    with count_syncs():
        pass
    assert "item" not in vars(Tensor) and Tensor.item is torch._C.TensorBase.item
    assert "__getitem__" not in vars(Tensor) and "__bool__" not in vars(Tensor)
    assert torch.equal(torch.ones(2), torch.ones(2))


@pytest.mark.filterwarnings("ignore:delta")
def test_dagr_rereads_calibration_after_load_state_dict() -> None:
    calibrated = create_loss("dagr", delta="auto", calibration_steps=1)
    calibrated(_batch())
    fresh = create_loss("dagr", delta="auto", calibration_steps=1)
    assert fresh.calibrating
    fresh.load_state_dict(calibrated.state_dict())
    assert not fresh.calibrating
    calibrated.load_state_dict(create_loss("dagr", delta="auto").state_dict())
    assert calibrated.calibrating

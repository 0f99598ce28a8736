"""DAGR: dispersive and anchoring geometric regulariser for multimodal classifiers."""

from __future__ import annotations

import re
import warnings
from itertools import combinations
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as F
from .._validation import check_choice, check_positive, validation_enabled
from .base import LossOutput, MultimodalLoss, detach_terms
from .registry import register_loss

MODES = ("full", "dispersion_only", "anchor_only", "always_on")
#: A calibrated band above this leaves the anchor nearly inactive: paired normalised embeddings of
#: unrelated rows drift by ``E ||z^m - z^n||^2 = 2``, so a band near 2 lets almost every pair through.
INACTIVE_BAND = 1.5
_QUANTILE = re.compile(r"q(\d*\.?\d+)")


def parse_delta(delta: float | str, auto_quantile: float = 0.5) -> tuple[float | None, float]:
    """``(fixed band or None, calibration quantile)`` of a DAGR ``delta`` argument.

    ``delta`` is a number ``>= 0`` (a fixed band), ``"auto"`` (calibrate at ``auto_quantile``) or ``"qP"``
    with ``0 <= P <= 1`` (calibrate at the ``P`` quantile of the first-epoch drift, e.g. ``"q0.25"``).

    Raises:
        ValueError: naming ``delta`` or ``auto_quantile``.
    """
    if not 0.0 <= float(auto_quantile) <= 1.0:
        raise ValueError(f"auto_quantile: expected a value in [0, 1], got {auto_quantile!r}")
    if not isinstance(delta, str):
        return check_positive(delta, "delta", allow_zero=True), float(auto_quantile)
    if delta == "auto":
        return None, float(auto_quantile)
    match = _QUANTILE.fullmatch(delta)
    q = float(match.group(1)) if match else -1.0
    if not 0.0 <= q <= 1.0:
        raise ValueError(
            "delta: expected a number >= 0, 'auto' or a drift quantile 'qP' with 0 <= P <= 1 "
            f"(e.g. 'q0.25'), got {delta!r}"
        )
    if float(auto_quantile) != 0.5:
        raise ValueError(
            f"auto_quantile: delta={delta!r} already names the quantile; "
            f"got auto_quantile={auto_quantile!r} too"
        )
    return None, q


def _forget_calibration(module: nn.Module, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: ``delta`` and ``calls`` may have changed, so re-read them once."""
    setattr(module, "_calibrating", None)  # noqa: B010 (nn.Module attribute typing)
    setattr(module, "_steps", None)  # noqa: B010


@register_loss("dagr")
class DAGRRegularizer(MultimodalLoss):
    """``R = lambda_d * sum_m D(Z^m) + lambda_a * mean_i mean_{m<n} [||z_i^m - z_i^n||^2 - delta]_+``.

    Returns the regulariser only: add ``out.total`` to the task loss. Apply it to the normalised
    *pre-fusion* embeddings during training; it has no inference cost.

    * dispersion ``"gaussian"``: ``D_tau(Z) = log mean_{i != j} exp(-||z_i - z_j||^2 / tau)``;
      ``"spectral"``: ``D(Z) = -H(p)``, the negative entropy of the normalised squared singular values of
      the centred batch (minimising it raises the effective rank).
    * anchoring: paired cross-modal rows are pulled together only when their squared distance leaves the
      agreement band ``delta``; inside the band the term and its gradient are exactly zero.
    * ``delta="auto"`` or ``"qP"``: for the first ``calibration_steps`` training calls the anchoring term
      is off and the per-row squared distances of every pair are recorded; then ``delta`` is frozen at the
      ``auto_quantile`` quantile (``"auto"``; the median by default: half of the pairs that training
      started from lie inside the band) or the ``P`` quantile (``"q0.25"`` etc.) of what was recorded
      (linear interpolation between order statistics, as ``torch.quantile``). Set ``calibration_steps`` to
      the number of steps of one epoch to calibrate on the first epoch. The calibrated value is a buffer,
      so it is checkpointed and a resumed run keeps it. A calibrated band above ``1.5`` warns (a value
      check: only while value checks are on) — unrelated unit vectors drift by 2 on average, so such a
      band leaves the anchor nearly inactive. Calibration reads nothing on the host. This
      calibration is our reconstruction: the paper names a band but not how it is chosen.
    * ablations (``mode``): ``"dispersion_only"``, ``"anchor_only"``, ``"always_on"`` (delta = 0: plain
      always-on alignment).
    * missing modalities (``mask``): each modality's dispersion runs over its present rows (0 with fewer
      than two) and each pair's hinge over the rows where both are present (0 without one), by weights
      and ``-inf`` logits rather than row selection (no host read; absent rows get zero gradient).

    The paper does not publish its equations in full; this is the documented, testable reading of
    DESIGN.md. Reference: Xia et al., "Dispersive and Anchoring Geometric Regularizer", arXiv 2601.21670.

    Args:
        lambda_d: dispersion weight.
        lambda_a: anchoring weight.
        tau: Gaussian dispersion temperature.
        delta: agreement band (``>= 0``), ``"auto"`` or a drift quantile ``"qP"`` (``0 <= P <= 1``).
        dispersion: ``"gaussian"`` or ``"spectral"``.
        mode: ``"full"`` or an ablation.
        calibration_steps: training calls used to calibrate ``delta="auto"``.
        auto_quantile: quantile of the recorded drift that becomes ``delta`` under ``"auto"``.

    Example:
        >>> reg = DAGRRegularizer(lambda_d=0.1, lambda_a=1.0, delta=0.5)
        >>> out = reg({"audio": torch.randn(8, 16), "video": torch.randn(8, 16)})
        >>> sorted(out.terms)
        ['anchor', 'anchor/audio-video', 'delta', 'dispersion/audio', 'dispersion/video']
    """

    supports_mask = True
    delta: Tensor
    calls: Tensor

    def __init__(
        self,
        lambda_d: float = 0.1,
        lambda_a: float = 1.0,
        tau: float = 1.0,
        delta: float | str = 0.5,
        dispersion: str = "gaussian",
        mode: str = "full",
        calibration_steps: int = 50,
        auto_quantile: float = 0.5,
    ) -> None:
        super().__init__()
        self.lambda_d = check_positive(lambda_d, "lambda_d", allow_zero=True)
        self.lambda_a = check_positive(lambda_a, "lambda_a", allow_zero=True)
        self.tau = check_positive(tau, "tau")
        self.dispersion = check_choice(dispersion, "dispersion", ["gaussian", "spectral"])
        self.mode = check_choice(mode, "mode", list(MODES))
        fixed, self.auto_quantile = parse_delta(delta, auto_quantile)
        if fixed is None:
            if int(calibration_steps) < 1:
                raise ValueError(f"calibration_steps: expected >= 1, got {calibration_steps!r}")
            self.auto = True
            initial = float("nan")
        else:
            self.auto = False
            initial = fixed
        if self.mode == "always_on":
            self.auto, initial = False, 0.0
        self.calibration_steps = int(calibration_steps)
        self.register_buffer("delta", torch.tensor(initial, dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self._recorded: list[Tensor] = []
        # Host-side copies of "delta is still NaN" and of ``calls`` (None: read the buffer once), so that
        # no call reads a buffer (a device sync); known at construction, re-read after load_state_dict.
        self._calibrating: bool | None = self.auto
        self._steps: int | None = 0
        # a calibrated band not yet compared with INACTIVE_BAND (value checks were off): see deferred_checks
        self._band_pending = False
        self.register_load_state_dict_post_hook(_forget_calibration)

    @property
    def calibrating(self) -> bool:
        """True while ``delta="auto"`` is still collecting drift (anchoring is off meanwhile)."""
        if not self.auto:
            return False
        if self._calibrating is None:
            self._calibrating = bool(torch.isnan(self.delta))
        return self._calibrating

    def _dispersion_unit(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """Dispersion of one modality's rows, already normalised (absent rows zeroed under ``mask``)."""
        if self.dispersion == "gaussian":
            return F.gaussian_potential_unit(z, 1.0 / self.tau, mask=mask)
        return -F.spectral_entropy_unit(z, power=2.0, mask=mask)

    def compute(
        self,
        mods: dict[str, Tensor],
        labels: Tensor | None = None,
        mask: dict[str, Tensor] | None = None,
        **kwargs: Any,
    ) -> LossOutput:
        zero = next(iter(mods.values())).new_zeros(()).float()
        terms: dict[str, Tensor] = {}
        total = zero
        # Every modality is normalised once (the batch is validated). A mask zeroes the absent rows and
        # every term weights rows and pairs instead of selecting them: shapes never depend on the mask's
        # values, so nothing is read on the host, and absent rows get zero gradient.
        if mask is None:
            unit = {m: F.normalize(z) for m, z in mods.items()}
        else:
            unit = {m: F.normalize_present(z, mask[m]) for m, z in mods.items()}

        if self.mode != "anchor_only" and self.lambda_d > 0:
            disp_sum = zero
            for m, z in unit.items():
                # 0 with fewer than two present rows
                terms[f"dispersion/{m}"] = d = self._dispersion_unit(z, None if mask is None else mask[m])
                disp_sum = disp_sum + d
            total = total + self.lambda_d * disp_sum

        if self.mode != "dispersion_only" and self.lambda_a > 0:
            # Decided before recording: the call that completes calibration still has anchoring off.
            calibrating = self.calibrating
            if self.training and calibrating:
                self._record(mods, mask)
            anchor = zero
            pairs = list(combinations(mods, 2))
            for m, n in pairs:
                if calibrating:
                    value = zero
                elif mask is None:
                    value = F.band_hinge_unit(unit[m], unit[n], self.delta)
                else:  # the mean over the rows where both are present, 0 without one
                    value = F.band_hinge_unit(unit[m], unit[n], self.delta, mask=mask[m] & mask[n])
                terms[f"anchor/{m}-{n}"] = value
                anchor = anchor + value
            anchor = anchor / len(pairs)
            terms["anchor"] = anchor
            total = total + self.lambda_a * anchor
        terms["delta"] = self.delta.detach().clone()
        return LossOutput(total, detach_terms(terms))

    @torch.no_grad()
    def _record(self, mods: dict[str, Tensor], mask: dict[str, Tensor] | None) -> None:
        """Record one calibration step's drift; at the last step, fix ``delta`` at its quantile.

        Nothing here reads a tensor on the host: the drift stays on the embeddings' device, with NaN for
        the rows where a pair is not both present (``torch.nanquantile`` skips them, which is the quantile
        of the present rows, as selecting them would give); the step count is a host-side copy of the
        ``calls`` buffer. The inactive-band warning needs the band's value on the host: it is a value
        check, run here while value checks are on and otherwise left to :meth:`deferred_checks`.
        """
        for m, n in combinations(mods, 2):
            d2 = F.paired_sq_dists(mods[m], mods[n]).double()
            if mask is not None:
                d2 = torch.where(mask[m] & mask[n], d2, float("nan"))
            self._recorded.append(d2)
        self.calls += 1
        if self._steps is None:
            self._steps = int(self.calls) - 1  # first step after load_state_dict: one read of the buffer
        self._steps += 1
        if self._steps < self.calibration_steps:
            return
        device = self._recorded[-1].device
        drift = torch.cat([d.to(device) for d in self._recorded])
        # No present pair at all (every drift NaN): the band is 0, as before for an empty drift.
        band = torch.nanquantile(drift, self.auto_quantile).nan_to_num(0.0)
        self.delta.copy_(band)
        self._recorded.clear()
        self._calibrating = False  # known on the host: the next calls read no buffer
        self._band_pending = True
        if validation_enabled():
            self.deferred_checks()

    def deferred_checks(self) -> None:
        """Warn once if the calibrated band leaves the anchor nearly inactive (``delta > 1.5``).

        Reads ``delta`` on the host: inside a call with value checks on it runs at the end of the
        calibration; with them off (as :func:`mmgeom.train` runs losses) the trainer calls it at its next
        ``train`` event.
        """
        if not self._band_pending or not validation_enabled():
            return
        self._band_pending = False
        if float(self.delta) > INACTIVE_BAND:
            warnings.warn(
                f"delta: calibrated band {float(self.delta):.3g} > {INACTIVE_BAND} (quantile "
                f"{self.auto_quantile:g} of the first-epoch drift): the anchor is nearly inactive, since "
                "unrelated unit vectors drift by 2 on average; use a lower quantile or a fixed delta",
                UserWarning,
                stacklevel=2,
            )

    def get_extra_state(self) -> dict[str, Any]:
        """What ``state_dict()`` holds besides the buffers: the drift recorded so far while ``delta="auto"``
        calibrates, so that a run resumed mid-calibration fixes the same ``delta``.

        Stored as before: float64 CPU tensors of the present pairs' drift (the NaN of absent rows dropped;
        a checkpoint reads values on the host anyway).
        """
        return {"recorded": [d[~d.isnan()].cpu() for d in self._recorded]}

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state` (also the ``{"_recorded": [...]}`` of older checkpoints)."""
        recorded = state["recorded"] if "recorded" in state else state["_recorded"]
        self._recorded = [torch.as_tensor(d).detach().double().cpu().clone() for d in recorded]

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode}, dispersion={self.dispersion}, delta={float(self.delta):.4g}, auto={self.auto}"
        )

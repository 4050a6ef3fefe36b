"""Feature reliance measured against ground truth, on data whose robust and non-robust features are known.

Four test views share the training images' statistics (``nrflab.data.planted`` builds them):

| view | construction | metric |
|---|---|---|
| agree | RF = NRF = label | ``agree_acc`` |
| RF-sufficiency | RF = label, NRF random | ``rf_suff_acc`` |
| NRF-sufficiency | NRF = label, RF random | ``nrf_suff_acc`` |
| swap | RF = a, NRF = b != a | ``f_r`` = P(pred = a), ``f_n`` = P(pred = b), ``rho = f_n - f_r`` |

``rho`` runs from -1 (the model follows the robust feature only) to +1 (the non-robust feature only).
Where an adversarial example's energy lies (the RF band, the NRF band, the rest of the DCT spectrum) is
measured by :func:`nrflab.measure.spectrum.band_energy`, the one home of perturbation spectra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nrflab.core.columns import RELIANCE
from nrflab.core.errors import NrflabError
from nrflab.data.views import RelianceViews
from nrflab.measure.predict import BATCH_STATS_IN_ORDER, PAPER, Protocol, predict

Statistics = Literal["running", "batch"]


@dataclass(frozen=True)
class RelianceResult:
    """Accuracies on the agree and sufficiency views and the swap fractions of one model."""

    agree_acc: float
    rf_suff_acc: float
    nrf_suff_acc: float
    f_r: float
    f_n: float
    n: int

    @property
    def rho(self) -> float:
        """``f_n - f_r``: +1 follows the non-robust feature only, -1 the robust feature only."""
        return self.f_n - self.f_r

    def as_row(self) -> dict[str, float]:
        return {column: getattr(self, column) for column in RELIANCE}


#: The prediction protocol behind each choice of BN statistics (batches in the views' own order).
STATISTICS: dict[Statistics, Protocol] = {"running": PAPER, "batch": BATCH_STATS_IN_ORDER}


def reliance(
    model: nn.Module, views: RelianceViews, *, batch_size: int = 250, statistics: Statistics = "running"
) -> RelianceResult:
    """Measure a model's reliance on the planted features (see the module docstring). ``statistics="batch"``
    normalizes each batch of ``batch_size`` images by its own statistics (the model is left as it was)."""
    if statistics not in STATISTICS:
        raise NrflabError(f"statistics must be 'running' or 'batch', got {statistics!r}")
    protocol = STATISTICS[statistics]

    def acc(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((predict(model, x, batch_size=batch_size, protocol=protocol) == y).float().mean())

    pred_swap = predict(model, views.swap_x, batch_size=batch_size, protocol=protocol)
    return RelianceResult(
        agree_acc=acc(views.agree_x, views.agree_y),
        rf_suff_acc=acc(views.rf_x, views.rf_y),
        nrf_suff_acc=acc(views.nrf_x, views.nrf_y),
        f_r=float((pred_swap == views.swap_rf).float().mean()),
        f_n=float((pred_swap == views.swap_nrf).float().mean()),
        n=views.size,
    )


class RelianceProbe:
    """The ``nrflab.data.Probe`` of planted datasets: reliance metrics after every epoch (or step).

    Calling it never changes the model (mode, parameters and buffers are restored).
    """

    name = "reliance"

    def __init__(self, views: RelianceViews, *, batch_size: int = 250):
        self.views = views
        self.batch_size = batch_size

    def columns(self) -> list[str]:
        return list(RELIANCE)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return reliance(model, self.views, batch_size=self.batch_size).as_row()

    def __repr__(self) -> str:
        return f"RelianceProbe(views of {self.views.size} images)"


# ---------------------------------------------------------------------------------------------
# Where a perturbation's energy lies


__all__ = ["RelianceProbe", "RelianceViews", "STATISTICS", "reliance"]

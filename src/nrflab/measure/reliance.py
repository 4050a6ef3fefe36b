"""Feature reliance measured against ground truth, on data whose robust and non-robust features are known.

Four test views share the training images' statistics (``nrflab.data.planted`` builds them):

| view | construction | metric |
|---|---|---|
| agree | RF = NRF = label | ``agree_acc`` |
| RF-sufficiency | RF = label, NRF random | ``rf_suff_acc`` |
| NRF-sufficiency | NRF = label, RF random | ``nrf_suff_acc`` |
| swap | RF = a, NRF = b != a | ``f_r`` = P(pred = a), ``f_n`` = P(pred = b), ``rho = f_n - f_r`` |

``rho`` runs from -1 (the model follows the robust feature only) to +1 (the non-robust feature only).
``band_energy`` splits a perturbation's squared L2 norm into the RF band, the NRF band and the rest of the
DCT spectrum, so one can say which features an adversarial example moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.fft import dctn
from torch import nn

from nrflab.core.columns import RELIANCE
from nrflab.core.errors import NrflabError
from nrflab.data.views import RelianceViews
from nrflab.measure.predict import BATCH_STATS_IN_ORDER, PAPER, Protocol, predict

Statistics = Literal["running", "batch"]
RELIANCE_COLUMNS = RELIANCE


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
        return list(RELIANCE_COLUMNS)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return reliance(model, self.views, batch_size=self.batch_size).as_row()

    def __repr__(self) -> str:
        return f"RelianceProbe(views of {self.views.size} images)"


# ---------------------------------------------------------------------------------------------
# Where a perturbation's energy lies


@dataclass(frozen=True)
class BandEnergy:
    """Mean (over samples) fractions of a perturbation's squared L2 norm in the RF band, the NRF band and
    the rest of the DCT spectrum (they sum to 1), the fraction along the NRF templates themselves, and the
    mean L2 norm. Samples with a zero perturbation are left out (``n`` counts the rest)."""

    rf_band: float
    nrf_band: float
    rest: float
    nrf_templates: float
    norm: float
    n: int


def band_energy_per_sample(
    delta: torch.Tensor | np.ndarray,
    *,
    rf_mask: np.ndarray,
    nrf_mask: np.ndarray,
    nrf_templates: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample squared energies of ``delta`` (N x C x S x S): ``total``, ``rf_band``, ``nrf_band``,
    ``rest`` and ``nrf_templates`` (projection onto the span of the orthonormal NRF templates)."""
    d = delta.detach().cpu().double().numpy() if torch.is_tensor(delta) else np.asarray(delta, dtype=np.float64)
    if d.ndim != 4:
        raise NrflabError(f"perturbations must have shape (N, C, H, W), got {d.shape}")
    if rf_mask.shape != d.shape[-2:] or nrf_mask.shape != d.shape[-2:]:
        raise NrflabError(f"band masks of shape {rf_mask.shape} do not fit {d.shape[-2:]} images")
    if bool((rf_mask & nrf_mask).any()):
        raise NrflabError("the RF and NRF bands overlap")
    coef2 = dctn(d, axes=(-2, -1), norm="ortho") ** 2
    total = coef2.sum(axis=(1, 2, 3))
    rf = coef2[:, :, rf_mask].sum(axis=(1, 2))
    nrf = coef2[:, :, nrf_mask].sum(axis=(1, 2))
    out = {"total": total, "rf_band": rf, "nrf_band": nrf, "rest": total - rf - nrf}
    if nrf_templates is not None:
        proj = d.reshape(d.shape[0], -1) @ nrf_templates.reshape(nrf_templates.shape[0], -1).T
        out["nrf_templates"] = (proj**2).sum(axis=1)
    return out


def band_energy(
    delta: torch.Tensor | np.ndarray,
    *,
    rf_mask: np.ndarray,
    nrf_mask: np.ndarray,
    nrf_templates: np.ndarray | None = None,
) -> BandEnergy:
    """Where the energy of perturbations ``delta`` lies (see ``BandEnergy``)."""
    e = band_energy_per_sample(delta, rf_mask=rf_mask, nrf_mask=nrf_mask, nrf_templates=nrf_templates)
    keep = e["total"] > 1e-18
    if not keep.any():
        return BandEnergy(math.nan, math.nan, math.nan, math.nan, 0.0, 0)
    frac = lambda k: float((e[k][keep] / e["total"][keep]).mean()) if k in e else math.nan  # noqa: E731
    return BandEnergy(
        frac("rf_band"),
        frac("nrf_band"),
        frac("rest"),
        frac("nrf_templates"),
        float(np.sqrt(e["total"]).mean()),
        int(keep.sum()),
    )


__all__ = [
    "BandEnergy",
    "RELIANCE_COLUMNS",
    "RelianceProbe",
    "RelianceViews",
    "band_energy",
    "STATISTICS",
    "reliance",
]

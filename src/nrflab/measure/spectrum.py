"""The 2-D frequency grid of an image and the power spectrum of a perturbation.

Frequencies are integers in cycles per image, laid out as the centred spectrum (``torch.fft.fftshift``):
an axis of size n runs from ``-(n // 2)`` to ``(n - 1) // 2``, so an even axis holds the Nyquist frequency
once (as ``-n/2``) and an odd axis is symmetric. A frequency's radius is ``sqrt(ky^2 + kx^2)`` in cycles per
image. The Fourier heat maps (:mod:`nrflab.measure.fourier`) and the spectra of adversarial perturbations
(``x_adv - x``) use this one grid, so a band split means the same radius in both.

Where a perturbation's energy lies has this one home: :func:`perturbation_spectrum` (radial Fourier bands,
for any model and attack) and :func:`band_energy` (declared DCT bands, e.g. the planted features' RF and NRF
bands, which are DCT patterns), both splitting the squared L2 norm (Parseval) over the bands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.fft import dctn
from torch import Tensor

from nrflab.core.errors import NrflabError
from nrflab.core.records import record

__all__ = ["BandEnergy", "band_energy"]


def centred_frequencies(size: int) -> Tensor:
    """Frequencies of one axis of ``size`` pixels in centred order, in cycles per image (int64)."""
    if size < 1:
        raise NrflabError(f"an image axis needs at least 1 pixel, got {size}")
    return torch.arange(size, dtype=torch.int64) - size // 2


def frequency_radius(height: int, width: int) -> Tensor:
    """Radius (cycles per image) of every frequency of the centred ``height x width`` spectrum (float64)."""
    ky, kx = centred_frequencies(height).double(), centred_frequencies(width).double()
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


@record
class PerturbationSpectrum:
    """Radially averaged power spectrum of a batch of perturbations.

    ``power[r]`` is the mean over the images, channels and spectrum bins whose radius rounds to ``radii[r]``
    of ``|FFT(delta)|^2`` with the orthonormal FFT, so the powers of all bins add up to the perturbation's
    squared L2 norm (Parseval) and white noise of standard deviation s has a flat ``power == s^2``.
    ``energy[r]`` is the share of the total power (summed over bins) at that radius.
    """

    radii: tuple[float, ...]
    power: tuple[float, ...]
    energy: tuple[float, ...]
    height: int
    width: int
    n_images: int

    def band_shares(self, *, low: float, high: float) -> tuple[float, float, float]:
        """Energy shares below ``low``, in ``[low, high)`` and at or above ``high`` (radii in cycles per image).

        The edges are the caller's declaration (made before looking at the data); the three shares add up to 1
        (all 0 for a zero perturbation).
        """
        if not 0 <= low <= high:
            raise NrflabError(f"band edges must satisfy 0 <= low <= high, got low={low}, high={high}")
        shares = [0.0, 0.0, 0.0]
        for radius, energy in zip(self.radii, self.energy):
            shares[0 if radius < low else 1 if radius < high else 2] += energy
        return shares[0], shares[1], shares[2]

    def thirds(self) -> tuple[float, float, float]:
        """Energy shares below 1/3, between 1/3 and 2/3, and above 2/3 of Nyquist (the shorter axis's; the
        bands ``nrflab evaluate --spectrum`` declares)."""
        nyquist = min(self.height, self.width) / 2
        return self.band_shares(low=nyquist / 3, high=2 * nyquist / 3)


def perturbation_spectrum(delta: Tensor) -> PerturbationSpectrum:
    """The radially averaged power spectrum of perturbations ``delta`` (N x C x H x W, e.g. ``x_adv - x``).

    Bins are grouped by their radius rounded to the nearest integer cycle per image, from 0 up to the corner.
    """
    if not isinstance(delta, Tensor) or delta.ndim != 4 or not delta.is_floating_point() or not delta.numel():
        got = f"{delta.dtype} {tuple(delta.shape)}" if isinstance(delta, Tensor) else type(delta).__name__
        raise NrflabError(f"a perturbation spectrum needs a non-empty float tensor (N, C, H, W), got {got}")
    h, w = delta.shape[-2:]
    spectrum = torch.fft.fftshift(torch.fft.fft2(delta.double(), norm="ortho"), dim=(-2, -1))
    bins = spectrum.abs().square().mean(dim=(0, 1)).cpu().flatten()
    ring = frequency_radius(h, w).round().long().flatten()
    count = torch.bincount(ring).double()
    total = torch.bincount(ring, weights=bins)
    keep = count > 0
    radii = torch.arange(len(count), dtype=torch.float64)[keep]
    grand = float(total.sum())
    energy = total[keep] / grand if grand > 0 else torch.zeros_like(total[keep])
    return PerturbationSpectrum(
        radii=tuple(radii.tolist()),
        power=tuple((total[keep] / count[keep]).tolist()),
        energy=tuple(energy.tolist()),
        height=int(h),
        width=int(w),
        n_images=int(delta.shape[0]),
    )


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

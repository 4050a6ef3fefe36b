"""The 2-D frequency grid of an image and the power spectrum of a perturbation.

Frequencies are integers in cycles per image, laid out as the centred spectrum (``torch.fft.fftshift``):
an axis of size n runs from ``-(n // 2)`` to ``(n - 1) // 2``, so an even axis holds the Nyquist frequency
once (as ``-n/2``) and an odd axis is symmetric. A frequency's radius is ``sqrt(ky^2 + kx^2)`` in cycles per
image. The Fourier heat maps (:mod:`nrflab.measure.fourier`) and the spectra of adversarial perturbations
(``x_adv - x``) use this one grid, so a band split means the same radius in both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nrflab.core.errors import NrflabError
from nrflab.core.records import record

__all__ = ["centred_frequencies", "frequency_radius", "perturbation_spectrum"]


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

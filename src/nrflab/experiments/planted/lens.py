"""The Fourier lens checked against ground truth: on planted images the NRF's frequency band is known, so a
heat map (:func:`nrflab.measure.fourier.fourier_heat_map`) that locates a model's sensitivity should put
its excess error where the NRF lives when the model follows the NRF.

The planted bands are DCT bands (:func:`nrflab.data.planted.band_mask`, by ``u + v`` of the DCT indices);
a DCT index ``u`` oscillates at ``u / 2`` cycles per image, so a Fourier frequency ``(ky, kx)`` counts as in
the band when the DCT index ``(min(2|ky|, S-1), min(2|kx|, S-1))`` is. The check compares each operating-
point model's share of the excess error mass in that band with the band's share of the evaluated
frequencies (what a map with the same excess error everywhere would give). It is a check of the method,
not a claim of the paper: no verdict, its numbers in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from nrflab.core.fmt import markdown_table, num, spread
from nrflab.data.planted import PlantedSpec, band_mask
from nrflab.experiments.planted.measurement import Measured, cached_result, full_views
from nrflab.experiments.planted.settings import Settings
from nrflab.measure.fourier import FourierHeatMap, fourier_heat_map
from nrflab.models.checkpoint import load_model
from nrflab.report.document import Section

#: Agree-view images of each heat map (every scale).
IMAGES = 200


def lens_eps(spec: PlantedSpec, a_n: float) -> float:
    """The heat map's eps per channel: the basis perturbation's total L2 norm (``eps * sqrt(C)``, the same
    pattern on every channel) equals the cost of replacing the NRF, ``a_n * sqrt(2)``. A much larger eps
    saturates the map (the share then tends to the band's area share), a much smaller one leaves no error."""
    return a_n * math.sqrt(2) / math.sqrt(spec.channels)


def fourier_band(band: str, size: int) -> torch.Tensor:
    """Boolean centred ``size x size`` grid: the Fourier frequencies in the DCT band ``band``."""
    mask = torch.from_numpy(band_mask(band, size))
    k = (torch.arange(size) - size // 2).abs()
    u = torch.clamp(2 * k, max=size - 1)
    return mask[u[:, None], u[None, :]]


def band_share(heat: FourierHeatMap, in_band: torch.Tensor) -> tuple[float, float]:
    """The share of the excess error mass (above clean) in the band, and the band's share of the evaluated
    frequencies (each basis image once); NaN share when no frequency raises the error."""
    ya, xa = heat.freqs_y[0], heat.freqs_x[0]
    rows = heat.rows()
    flags = [bool(in_band[ky - ya, kx - xa]) for ky, kx, *_ in rows]
    excess = [max(err - heat.clean_error, 0.0) for *_, err, _ in rows]
    total = sum(excess)
    share = sum(e for e, f in zip(excess, flags) if f) / total if total > 0 else math.nan
    return share, sum(flags) / len(flags)


@dataclass(frozen=True)
class LensCheck:
    """Per normalization, the per-seed NRF-band shares of the operating point's models, and the band's area."""

    shares: dict[str, list[float]]
    area: float
    seeds: list[int]


def lens_check(m: Measured, s: Settings, op_key: str, spec: PlantedSpec) -> LensCheck:
    """The heat maps of the operating point's learned models on the agree view (cached next to each run)."""
    views = full_views(spec)
    x, y = views.agree_x[:IMAGES], views.agree_y[:IMAGES]
    in_band = fourier_band(spec.nrf_band, spec.size)
    seeds = m.learned_seeds(op_key, s.norms, s.learned_min)
    shares: dict[str, list[float]] = {n: [] for n in s.norms}
    area, eps = math.nan, lens_eps(spec, s.a_n)
    for n in s.norms:
        for sd in seeds:
            run_dir = Path(m.dirs[(op_key, n, sd)])
            key = {"eps": eps, "images": IMAGES, "band": spec.nrf_band, "format": 1}
            found = cached_result(run_dir / "fourier_lens.json", key, partial(_measure, run_dir, x, y, in_band, eps))
            shares[n].append(float(found["share"]))
            area = float(found["area"])
    return LensCheck(shares, area, seeds)


def _measure(run_dir: Path, x: torch.Tensor, y: torch.Tensor, in_band: torch.Tensor, eps: float) -> dict[str, Any]:
    heat = fourier_heat_map(load_model(run_dir).eval(), x, y, eps=eps, freeze=True)
    share, area = band_share(heat, in_band)
    return {"share": share, "area": area}


def with_lens(section: Section, m: Measured, s: Settings, op_key: str, spec: PlantedSpec) -> Section:
    """``section`` (the reliance section of the operating point) with the lens's check appended."""
    return replace(section, markdown=section.markdown + "\n\n" + lens_markdown(m, s, op_key, spec))


def lens_markdown(m: Measured, s: Settings, op_key: str, spec: PlantedSpec) -> str:
    """The check as report text: the shares per normalization against the area share."""
    found = lens_check(m, s, op_key, spec)
    rows = [[n, len(v), spread(v, num)] for n, v in found.shares.items()]
    means = {n: math.fsum(v) / len(v) if v else math.nan for n, v in found.shares.items()}
    finds = ", ".join(f"{n} {num(v)}" for n, v in means.items())
    text = [
        "**The Fourier lens against ground truth** (a check of the method, not a claim). Fourier heat maps "
        f"(eps {lens_eps(spec, s.a_n):.3g} per channel: the NRF's replacement cost a_n sqrt(2) in total L2; "
        f"{IMAGES} agree-view images) of the operating point's models "
        f"(a_n = {s.a_n:g}; seeds {', '.join(map(str, found.seeds)) or 'none learned'}): the share of each map's "
        f"excess error mass in the NRF's {spec.nrf_band} band (DCT index u read as u/2 cycles per image).",
        "",
        f"**The lens finds the planted NRF band:** share {finds} in the NRF band vs {num(found.area)} expected by "
        "area (a map with the same excess error at every frequency).",
        "",
        markdown_table(["normalization", "seeds", "share of excess error in the NRF band"], rows),
    ]
    return "\n".join(text)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

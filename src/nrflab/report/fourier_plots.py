"""Fourier heat maps as figures and files: one map per model, several side by side on one colour scale.

Each map shows the centred spectrum, frequencies in cycles per image on both axes (0 in the middle, the
highest frequencies at the edges), the error rate under the perturbation in percent as colour. Figures go
through :func:`nrflab.report.plots.save_figure` (PNG and SVG, matplotlib without pyplot).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.image import AxesImage

from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_write_json, write_csv
from nrflab.core.records import to_json
from nrflab.measure.fourier import FourierHeatMap
from nrflab.report.plots import new_figure, save_figure

__all__ = ["plot_heat_maps", "write_heat_maps"]

#: Columns of a heat map's CSV: one row per evaluated frequency (the symmetric half of the spectrum).
CSV_COLUMNS = ["ky", "kx", "radius", "error", "loss_increase"]


def _draw(ax: Axes, heat_map: FourierHeatMap, vmax: float) -> AxesImage:
    """Draw one map on ``ax`` (error in percent, 0..vmax) with axes in cycles per image."""
    error = np.array(heat_map.error)
    rows, cols = np.isfinite(error).any(axis=1), np.isfinite(error).any(axis=0)  # a coarse grid's evaluated lines
    fy, fx = np.array(heat_map.freqs_y)[rows], np.array(heat_map.freqs_x)[cols]
    dy, dx = (fy[1] - fy[0] if len(fy) > 1 else 1) / 2, (fx[1] - fx[0] if len(fx) > 1 else 1) / 2
    extent = (fx[0] - dx, fx[-1] + dx, fy[-1] + dy, fy[0] - dy)
    image = ax.imshow(100 * error[rows][:, cols], cmap="viridis", vmin=0, vmax=vmax, extent=extent)
    ax.set_xlabel("horizontal frequency (cycles / image)", fontsize=8)
    ax.set_ylabel("vertical frequency (cycles / image)", fontsize=8)
    ax.set_title(f"{heat_map.model}\neps {heat_map.eps:g}, {heat_map.n_images} images", fontsize=9)
    ax.tick_params(labelsize=7)
    return image


def _vmax(maps: Sequence[FourierHeatMap]) -> float:
    """One colour scale for all maps: 0 to the largest error in percent (at least 1 %; NaN cells of a coarse
    grid are skipped)."""
    return max(1.0, max(100 * float(np.nanmax(np.array(m.error))) for m in maps))


def plot_heat_map(heat_map: FourierHeatMap, stem: str | os.PathLike[str]) -> list[Path]:
    """One model's heat map with a colour bar, as ``stem.png`` and ``stem.svg``."""
    fig, axes = new_figure(figsize=(4.8, 4.0))
    image = _draw(axes[0][0], heat_map, _vmax([heat_map]))
    fig.colorbar(image, ax=axes[0][0], label="error rate (%)")
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_heat_maps(maps: Sequence[FourierHeatMap], stem: str | os.PathLike[str]) -> list[Path]:
    """Several models' heat maps side by side on one colour scale, with one shared colour bar."""
    if not maps:
        raise NrflabError("no Fourier heat maps to plot")
    fig, axes = new_figure(1, len(maps), figsize=(0.6 + 3.9 * len(maps), 3.9))
    vmax = _vmax(maps)
    images = [_draw(axes[0][i], m, vmax) for i, m in enumerate(maps)]
    fig.colorbar(images[-1], ax=list(axes[0]), label="error rate (%)", shrink=0.85)
    return save_figure(fig, stem)


def write_heat_maps(maps: Sequence[FourierHeatMap], out_dir: Path, *, slugs: Sequence[str]) -> list[Path]:
    """Write per model ``fourier_<slug>.{png,svg,csv,json}``, and ``fourier_models.{png,svg}`` for several."""
    if len(slugs) != len(maps) or len(set(slugs)) != len(slugs):
        raise NrflabError("each Fourier heat map needs its own file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for heat_map, slug in zip(maps, slugs):
        stem = out_dir / f"fourier_{slug}"
        written += plot_heat_map(heat_map, stem)
        csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
        write_csv(csv_path, [dict(zip(CSV_COLUMNS, row)) for row in heat_map.rows()], CSV_COLUMNS)
        atomic_write_json(json_path, to_json(heat_map))
        written += [csv_path, json_path]
    if len(maps) > 1:
        written += plot_heat_maps(maps, out_dir / "fourier_models")
    return written

"""Plots of training curves (paper Figures 3, 4, 6) and heat maps, written as PNG and SVG.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered straight to files: nothing here
touches pyplot's global state or the user's matplotlib backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from nrflab.core.columns import CLEAN, LIGS, LOGIT_SIM, RHO, attack_of, robust_keys
from nrflab.core.errors import NrflabError
from nrflab.runs.rundir import RunDir

#: matplotlib's default colour cycle (tab10), so figures look the same whatever the user's style.
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
#: Columns drawn on their own scale rather than in percent.
UNSCALED = (LIGS, LOGIT_SIM, RHO)

NORM_STYLE = {
    "bn": "-",
    "none": "--",
    "gn": "-.",
    "ln": ":",
    "in": (0, (3, 1, 1, 1)),
    "bn-eval": (0, (5, 2)),
    "fixup": (0, (1, 1)),
}


def run_label(run_dir: Path, config: dict[str, Any]) -> str:
    """A short legend label: arch/norm (+ adversarial training, dataset when not the default)."""
    label = f"{config.get('arch')}/{config.get('norm')}"
    if config.get("adv_train", "none") != "none":
        label += f" AT({config['adv_train']})"
    return label


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (5.6, 3.6)) -> tuple[Figure, Any]:
    """A figure and its axes (a 2-D array, ``squeeze=False``), independent of pyplot."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Figure, stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        final = stem.with_name(stem.name + f".{ext}")
        tmp = final.with_name(f".{final.name}.tmp")
        fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight")
        os.replace(tmp, final)
        paths.append(final)
    return paths


def robust_column(columns: Sequence[str], attack: str | None = None) -> str | None:
    cols = robust_keys(columns)
    if attack is None:
        return cols[0] if cols else None
    for c in cols:
        if attack in c:
            return c
    raise NrflabError(f"no robust-accuracy column matches {attack!r}; have {', '.join(cols) or 'none'}")


def plot_runs(
    runs: Sequence[str | os.PathLike[str]],
    stem: str | os.PathLike[str],
    attack: str | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    extra_panels: Sequence[tuple[str, str]] = (),
) -> list[Path]:
    """Clean accuracy, robust accuracy and LIGS vs epoch for several runs on one figure.

    ``extra_panels`` adds (column, title) panels, e.g. ``("shifted_acc", "accuracy vs y+1")``.
    """
    if not runs:
        raise NrflabError("no run directories given")
    loaded = []
    for i, r in enumerate(runs):
        r = Path(r)
        run = RunDir(r)
        rows = run.read_metrics()
        cfg = run.read_config()
        loaded.append((labels[i] if labels else run_label(r, cfg), cfg, rows))
    names = [label for label, _, _ in loaded]
    if not labels and len(set(names)) < len(names):  # several seeds of one model: tell them apart
        loaded = [(f"{label} s{cfg.get('seed')}", cfg, rows) for label, cfg, rows in loaded]
    rob = robust_column(list(loaded[0][2][0]), attack)
    panels = [(CLEAN, "clean accuracy (usefulness)")]
    if rob:
        panels.append((rob, f"robust accuracy, {attack_of(rob)} (robust usefulness)"))
    panels += list(extra_panels)
    if LIGS in loaded[0][2][0]:
        panels.append((LIGS, "LIGS (robustness)"))
    if RHO in loaded[0][2][0]:
        panels.append((RHO, "reliance rho = F_N - F_R (+1: NRF)"))
    fig, axes = new_figure(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    colors = COLORS
    for i, (label, cfg, rows) in enumerate(loaded):
        epochs = [r["epoch"] for r in rows]
        style = NORM_STYLE.get(str(cfg.get("norm")), "-")
        for ax, (col, _) in zip(axes[0], panels):
            ys = [r.get(col, math.nan) for r in rows]
            scale = 1.0 if col in UNSCALED else 100.0
            ax.plot(
                epochs,
                [y * scale for y in ys],
                linestyle=style,
                color=colors[i % len(colors)],
                marker="o",
                markersize=2.5,
                label=label,
            )
    for ax, (col, name) in zip(axes[0], panels):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel({LIGS: "LIGS", LOGIT_SIM: "cosine", RHO: "rho"}.get(col, "%"))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    stem: str | os.PathLike[str],
    title: str = "",
    value_format: str = "{:.0f}",
    scale: float = 100.0,
    cbar_label: str = "%",
) -> list[Path]:
    """A labelled heat map (rows = sources, columns = targets) with values printed in the cells."""
    import numpy as np

    data = np.array(matrix, dtype=float) * scale
    fig, axes = new_figure(figsize=(1.0 + 0.9 * len(col_labels), 0.8 + 0.6 * len(row_labels)))
    ax = axes[0][0]
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=scale if scale == 100.0 else None)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if math.isfinite(data[i, j]):
                ax.text(
                    j,
                    i,
                    value_format.format(data[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if data[i, j] < 0.6 * np.nanmax(data) else "black",
                )
    fig.colorbar(im, ax=ax, label=cbar_label)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


__all__ = [
    "NORM_STYLE",
    "new_figure",
    "plot_heatmap",
    "plot_runs",
    "save_figure",
]

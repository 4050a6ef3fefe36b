"""Plots of training curves (paper Figures 3, 4, 6) and heat maps, written as PNG and SVG.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered straight to files: nothing here
touches pyplot's global state or the user's matplotlib backend.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from nrflab.core.columns import CLEAN, LIGS, LOGIT_SIM, RHO, SHIFTED, attack_of, attack_title, robust_keys
from nrflab.core.errors import NrflabError
from nrflab.runs.rundir import RunDir

#: Columns drawn on their own scale rather than in percent.
UNSCALED = (LIGS, LOGIT_SIM, RHO)

#: Dash styles by normalization (kept for figures that tell normalizations apart by line style).
NORM_STYLE = {
    "bn": "-",
    "none": "--",
    "gn": "-.",
    "ln": ":",
    "in": (0, (3, 1, 1, 1)),
    "bn-eval": (0, (5, 2)),
    "fixup": (0, (1, 1)),
}
#: One fixed colour per normalization, so a reader can match curves across figures.
NORM_COLORS = {
    "bn": "#1f77b4",
    "none": "#ff7f0e",
    "gn": "#2ca02c",
    "ln": "#d62728",
    "in": "#9467bd",
    "bn-eval": "#8c564b",
    "fixup": "#e377c2",
}
#: Colours of normalizations missing from :data:`NORM_COLORS`, in order of appearance.
FALLBACK_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#000000")
#: Line styles that tell apart groups sharing a colour (same normalization, another recipe, e.g. AT vs standard).
GROUP_STYLES: tuple[str, ...] = ("-", "--", ":", "-.")
#: Config fields that do not make another recipe: the seed (what a group spans) and where a run lived or computed.
NOT_RECIPE = ("seed", "resolved", "device", "data_root", "eval_batch_size", "compile", "keep_checkpoints")
#: What the shaded band around a group's mean spans (said in the legend).
BAND = "min-max"
#: y-axis labels by column; robust-accuracy columns get "robust accuracy (%)".
Y_LABELS = {CLEAN: "clean accuracy (%)", SHIFTED: "accuracy (%)", LIGS: "LIGS", LOGIT_SIM: "cosine", RHO: "rho"}


def run_label(run_dir: Path, config: Mapping[str, object]) -> str:
    """A short legend label: arch/norm (+ adversarial training when there is some)."""
    label = f"{config.get('arch')}/{config.get('norm')}"
    if config.get("adv_train", "none") != "none":
        label += f" AT({config['adv_train']})"
    return label


def recipe_key(config: Mapping[str, Any]) -> str:
    """The recipe of a run apart from its seed and placement, as canonical JSON: runs with equal keys are
    seeds of one model and are drawn as one group."""
    return json.dumps({k: v for k, v in config.items() if k not in NOT_RECIPE}, sort_keys=True, default=str)


@dataclass(frozen=True)
class RunCurve:
    """One run's metric rows (one per epoch) and what groups it: its recipe key and its label."""

    label: str
    norm: str
    seed: str
    recipe: str
    rows: tuple[Mapping[str, float], ...]

    def points(self, column: str, scale: float) -> tuple[list[float], list[float]]:
        """Epochs and the column's values times ``scale`` (NaN where the row lacks the column)."""
        return [r["epoch"] for r in self.rows], [r.get(column, math.nan) * scale for r in self.rows]


@dataclass(frozen=True)
class SeedSeries:
    """A group's curve over seeds: per epoch, the mean and the band (min, max) over the seeds that have a
    finite value at that epoch (a run still training simply has fewer epochs)."""

    epochs: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class CurveGroup:
    """The runs of one recipe (its seeds), drawn in one colour under one legend entry."""

    label: str
    norm: str
    runs: tuple[RunCurve, ...]

    def legend(self) -> str:
        """The legend entry: the label, and for several seeds how many, what the line and the band are."""
        n = len(self.runs)
        return self.label if n == 1 else f"{self.label} ({n} seeds, mean; band: {BAND})"

    def series(self, column: str, scale: float = 1.0) -> SeedSeries:
        """Mean and min-max of ``column`` (times ``scale``) over the seeds present at each epoch."""
        by_epoch: dict[float, list[float]] = {}
        for run in self.runs:
            for epoch, y in zip(*run.points(column, scale)):
                values = by_epoch.setdefault(epoch, [])
                if math.isfinite(y):
                    values.append(y)
        epochs = sorted(by_epoch)
        have = [by_epoch[e] for e in epochs]
        return SeedSeries(
            epochs=tuple(epochs),
            mean=tuple(sum(v) / len(v) if v else math.nan for v in have),
            low=tuple(min(v) if v else math.nan for v in have),
            high=tuple(max(v) if v else math.nan for v in have),
        )


def load_curves(runs: Sequence[str | os.PathLike[str]], labels: Sequence[str] | None = None) -> list[RunCurve]:
    """Read each run's config and metrics; ``labels`` (one per run) replace the arch/norm labels."""
    if not runs:
        raise NrflabError("no run directories given")
    if labels is not None and len(labels) != len(runs):
        raise NrflabError(f"{len(labels)} labels for {len(runs)} run directories")
    curves = []
    for i, r in enumerate(runs):
        run = RunDir(r)
        rows, cfg = run.read_metrics(), run.read_config()
        curves.append(
            RunCurve(
                label=labels[i] if labels else run_label(Path(r), cfg),
                norm=str(cfg.get("norm")),
                seed=str(cfg.get("seed")),
                recipe=recipe_key(cfg),
                rows=tuple(rows),
            )
        )
    return curves


def group_curves(curves: Sequence[RunCurve]) -> list[CurveGroup]:
    """Runs of one recipe (and one label) that differ only in the seed, as groups in order of appearance.

    Groups whose labels coincide (another width, dataset, ...) get the differing recipe fields appended."""
    members: dict[tuple[str, str], list[RunCurve]] = {}
    for c in curves:
        members.setdefault((c.recipe, c.label), []).append(c)
    groups = [CurveGroup(label=label, norm=runs[0].norm, runs=tuple(runs)) for (_, label), runs in members.items()]
    for label in {g.label for g in groups}:
        same = [i for i, g in enumerate(groups) if g.label == label]
        if len(same) > 1:
            recipes = [json.loads(groups[i].runs[0].recipe) for i in same]
            fields = [k for k in sorted(set().union(*recipes)) if len({json.dumps(r.get(k)) for r in recipes}) > 1]
            for i, recipe in zip(same, recipes):
                extra = ", ".join(f"{k}={recipe.get(k)}" for k in fields[:2])
                groups[i] = replace(groups[i], label=f"{label} ({extra})")
    return groups


def group_styles(groups: Sequence[CurveGroup]) -> list[tuple[str, str]]:
    """(colour, line style) per group: the colour of its normalization; groups sharing a colour get
    successive line styles."""
    extra: dict[str, str] = {}
    used: dict[str, int] = {}
    out = []
    for g in groups:
        color = NORM_COLORS.get(g.norm) or extra.setdefault(g.norm, FALLBACK_COLORS[len(extra) % len(FALLBACK_COLORS)])
        k = used.get(color, 0)
        used[color] = k + 1
        out.append((color, GROUP_STYLES[k % len(GROUP_STYLES)]))
    return out


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


@dataclass(frozen=True)
class Panel:
    """One panel of a curves figure: the metric column, its title and its y-axis label."""

    column: str
    title: str
    ylabel: str

    @property
    def scale(self) -> float:
        """100 for accuracies (drawn in percent), 1 for the columns on their own scale."""
        return 1.0 if self.column in UNSCALED else 100.0


def curve_panels(columns: Sequence[str], attack: str | None, extra_panels: Sequence[tuple[str, str]]) -> list[Panel]:
    """Clean accuracy, robust accuracy under ``attack`` (the first one recorded by default), the
    ``extra_panels`` (column, title), then LIGS and rho where recorded; titles name attacks for readers."""
    panels = [Panel(CLEAN, "clean accuracy (usefulness)", Y_LABELS[CLEAN])]
    rob = robust_column(columns, attack)
    if rob:
        name = attack_title(attack_of(rob) or rob)
        panels.append(Panel(rob, f"robust accuracy, {name} (robust usefulness)", "robust accuracy (%)"))
    for col, name in extra_panels:
        panels.append(Panel(col, name, Y_LABELS.get(col, col if col in UNSCALED else "%")))
    if LIGS in columns:
        panels.append(Panel(LIGS, "LIGS (robustness)", Y_LABELS[LIGS]))
    if RHO in columns:
        panels.append(Panel(RHO, "reliance rho = F_N - F_R (+1: NRF)", Y_LABELS[RHO]))
    return panels


def draw_group(ax: Any, group: CurveGroup, panel: Panel, *, color: str, style: str) -> None:
    """One group on one panel: a single run as a line with markers; several seeds as thin faint lines,
    a band (min-max over seeds) and the seed mean as a thick line, all in the group's colour.

    Only the main line carries a legend label; the others' labels start with "_" (matplotlib's "no legend")."""
    if len(group.runs) == 1:
        epochs, ys = group.runs[0].points(panel.column, panel.scale)
        ax.plot(epochs, ys, linestyle=style, color=color, marker="o", markersize=2.5, label=group.legend(), gid="mean")
        return
    for run in group.runs:
        epochs, ys = run.points(panel.column, panel.scale)
        ax.plot(epochs, ys, linestyle=style, color=color, linewidth=0.7, alpha=0.35, label=f"_seed {run.seed}")
    s = group.series(panel.column, panel.scale)
    ax.fill_between(s.epochs, s.low, s.high, color=color, alpha=0.15, linewidth=0, label="_band")
    ax.plot(
        s.epochs,
        s.mean,
        linestyle=style,
        color=color,
        linewidth=2.2,
        marker="o",
        markersize=3,
        label=group.legend(),
        gid="mean",
    )


def curves_figure(
    runs: Sequence[str | os.PathLike[str]],
    *,
    attack: str | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    extra_panels: Sequence[tuple[str, str]] = (),
) -> Figure:
    """The figure of :func:`plot_runs`, not yet written (so tests can inspect its lines and titles).

    Runs of one recipe that differ only in the seed form a group: one colour (its normalization's), the
    seed mean per epoch as a thick line with a min-max band, each seed as a thin faint line."""
    groups = group_curves(load_curves(runs, labels))
    panels = curve_panels(list(groups[0].runs[0].rows[0]), attack, extra_panels)
    fig, axes = new_figure(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for group, (color, style) in zip(groups, group_styles(groups)):
        for ax, panel in zip(axes[0], panels):
            draw_group(ax, group, panel, color=color, style=style)
    for ax, panel in zip(axes[0], panels):
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_runs(
    runs: Sequence[str | os.PathLike[str]],
    stem: str | os.PathLike[str],
    attack: str | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    extra_panels: Sequence[tuple[str, str]] = (),
) -> list[Path]:
    """Clean accuracy, robust accuracy and LIGS vs epoch for several runs on one figure, written as
    ``stem.png`` and ``stem.svg`` (see :func:`curves_figure`: seeds of one recipe are drawn as their mean
    with a min-max band).

    ``labels`` (one per run) name the runs; runs with the same label and recipe are one group.
    ``extra_panels`` adds (column, title) panels, e.g. ``("shifted_acc", "accuracy vs y+1")``.
    """
    fig = curves_figure(runs, attack=attack, title=title, labels=labels, extra_panels=extra_panels)
    return save_figure(fig, stem)


#: What an all-n/a heat map shows instead of values.
NO_VALUES = "no values: every pair is n/a"
_CHAR_IN = 8 * 0.62 / 72  # the width of one tick-label character at 8 pt, in inches (a generous estimate)
_CELL_IN = 0.62  # the side of one cell, in inches: room for its value and far more than an 8-pt label's height


def heatmap_size(row_labels: Sequence[str], col_labels: Sequence[str], *, title: str = "") -> tuple[float, float]:
    """A heat map's figure size (inches) that fits its labels: a cell per model plus the row labels' width
    on the left, the upright column labels' height below, the colour bar and the title."""
    row_w = max((len(t) for t in row_labels), default=0) * _CHAR_IN
    col_h = max((len(t) for t in col_labels), default=0) * _CHAR_IN
    width = 0.6 + row_w + _CELL_IN * max(len(col_labels), 1) + 1.3
    height = 0.6 + (0.3 if title else 0.0) + _CELL_IN * 0.8 * max(len(row_labels), 1) + col_h + 0.5
    return max(width, 3.0), max(height, 2.4)


def heatmap_figure(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str = "",
) -> Figure:
    """A labelled heat map (rows = sources, columns = targets) with values printed in the cells, sized by
    :func:`heatmap_size`; a matrix without a finite value shows :data:`NO_VALUES` instead of empty axes."""
    import numpy as np

    data = np.array(matrix, dtype=float).reshape(len(row_labels), len(col_labels)) * 100.0  # in percent
    fig, axes = new_figure(figsize=heatmap_size(row_labels, col_labels, title=title))
    ax = axes[0][0]
    finite = np.isfinite(data)
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=100.0, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    top = float(np.nanmax(data)) if finite.any() else 0.0
    for i, j in zip(*np.nonzero(finite)):
        color = "white" if data[i, j] < 0.6 * top else "black"
        ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=7, color=color)
    if finite.any():
        fig.colorbar(im, ax=ax, label="%")
    else:
        ax.text(0.5, 0.5, NO_VALUES, transform=ax.transAxes, ha="center", va="center", fontsize=9)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    stem: str | os.PathLike[str],
    title: str = "",
) -> list[Path]:
    """:func:`heatmap_figure` written as ``stem.png`` and ``stem.svg``."""
    return save_figure(heatmap_figure(matrix, row_labels, col_labels, title=title), stem)


__all__ = ["NORM_STYLE", "new_figure", "plot_heatmap", "plot_runs", "save_figure"]

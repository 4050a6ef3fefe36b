"""The planted experiment's figures: the NRF-norm sweep, the learning order, the conflicting set and the
energy of transfer perturbations."""

from __future__ import annotations

import math
from pathlib import Path

from nrflab.core.stats import finite_mean, mean_ci
from nrflab.experiments.analysis import finish_figure
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.order import Curve
from nrflab.experiments.planted.settings import Settings
from nrflab.experiments.planted.text import name
from nrflab.experiments.planted.transferability import TransferResult
from nrflab.report.plots import new_figure, save_figure
from nrflab.runs.rundir import RunDir


def plot_sweep(stem: Path, m: Measured, s: Settings) -> list[Path]:
    fig, axes = new_figure(1, 2, figsize=(10.5, 3.6))
    a_values = sorted({*s.sweep, s.a_n})
    for norm, marker in zip(s.norms, "os^v*D", strict=False):
        stats = [mean_ci(m.series(f"sweep-a{a:g}", norm, "rho"), proportion=False) for a in a_values]
        mean = [st[0] for st in stats]
        err = [
            [st[0] - st[1] if math.isfinite(st[1]) else 0 for st in stats],
            [st[2] - st[0] if math.isfinite(st[2]) else 0 for st in stats],
        ]
        axes[0][0].errorbar(a_values, mean, yerr=err, marker=marker, capsize=3, label=name(norm))
        acc = [finite_mean(m.series(f"sweep-a{a:g}", norm, "agree_acc")) for a in a_values]
        axes[0][1].plot(a_values, [100 * v for v in acc], marker=marker, label=name(norm))
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(a_values, [f"{a:g}" for a in a_values])
        ax.axvline(s.a_n, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("NRF norm a_n (L2)")
        ax.grid(alpha=0.3)
    axes[0][0].axhline(0, color="black", linewidth=0.8)
    axes[0][0].set_ylim(-1.05, 1.05)
    axes[0][0].set_ylabel("rho = F_N - F_R (mean, 95 % CI)")
    axes[0][0].set_title("reliance on swapped images (+1: NRF, -1: RF)", fontsize=9)
    axes[0][1].set_ylabel("agree-view accuracy (%)")
    axes[0][1].set_title("usefulness", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_learning_order(stem: Path, curves: dict[str, dict[int, Curve]], s: Settings) -> list[Path]:
    fig, axes = new_figure(1, len(s.norms), figsize=(4.6 * len(s.norms), 3.4))
    for ax, norm in zip(axes[0], s.norms, strict=True):
        runs = list(curves[norm].values())
        length = min(len(c) for c in runs)
        epochs = [runs[0][i]["epoch"] for i in range(length)]
        for metric, label, style in (
            ("f_r", "F_R (follows the RF)", "-"),
            ("f_n", "F_N (follows the NRF)", "--"),
            ("agree_acc", "agree accuracy", ":"),
        ):
            mean = [100 * finite_mean([c[i][metric] for c in runs]) for i in range(length)]
            ax.plot(epochs, mean, linestyle=style, marker="o", markersize=2, label=label)
        ax.set_title(f"{name(norm)} ({len(runs)} seeds, mean)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_conflicting(stem: Path, m: Measured, s: Settings) -> list[Path]:
    fig, axes = new_figure(1, 1, figsize=(5.6, 3.6))
    ax = axes[0][0]
    for norm, color in zip(s.norms, ("C0", "C1", "C2", "C3", "C4", "C5"), strict=False):
        rows = [RunDir(m.dirs[("conflicting", norm, sd)]).read_metrics() for sd in m.seeds("conflicting", norm)]
        length = min(len(r) for r in rows)
        epochs = [rows[0][i]["epoch"] for i in range(length)]
        for col, label, style in (("clean_acc", "vs y (NRF)", "-"), ("shifted_acc", "vs y+1 (RF)", "--")):
            ax.plot(
                epochs,
                [100 * finite_mean([r[i][col] for r in rows]) for i in range(length)],
                linestyle=style,
                color=color,
                marker="o",
                markersize=2,
                label=f"{name(norm)} {label}",
            )
    return finish_figure(
        fig,
        ax,
        stem,
        xlabel="epoch",
        ylabel="accuracy on the agree view (%)",
        title="planted conflicting set (mean over seeds)",
        legend_size=7,
    )


def plot_energy(stem: Path, t: TransferResult, s: Settings) -> list[Path]:
    fig, axes = new_figure(1, 1, figsize=(5.0, 3.2))
    ax = axes[0][0]
    bottom = [0.0] * len(s.norms)
    for part, label in (("rf_band", "RF band"), ("nrf_band", "NRF band"), ("rest", "rest")):
        vals = [100 * t.energy[n][part] for n in s.norms]
        ax.bar([name(n) for n in s.norms], vals, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("share of the perturbation's energy (%)")
    ax.set_title(f"PGD-L2 {s.transfer_eps:g} perturbations by source", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, stem)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

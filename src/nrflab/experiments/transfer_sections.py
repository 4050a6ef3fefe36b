"""What the transfer experiment reads from its matrix and shows: the claims' inputs (BN and no-BN twins,
early checkpoints against final models), the success-vs-source-epoch curve (table and figure) and the
Markdown of the matrix and early-stop sections. Plain functions of a
:class:`~nrflab.transfer.TransferResult` and the zoo's records, so tests build them without training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nrflab.core.fmt import ci, markdown_table, pct, points
from nrflab.core.stats import mean_ci
from nrflab.experiments.transfer_claims import EarlyVsFinal, SourceTwins
from nrflab.experiments.transfer_settings import EARLY_RULE
from nrflab.transfer import EarlyStop, ModelRef, TransferResult
from nrflab.transfer.results import Interval


@dataclass(frozen=True)
class ZooRun:
    """One trained model of the zoo."""

    path: Path
    arch: str
    norm: str
    seed: int


@dataclass(frozen=True)
class CurvePoint:
    """One source epoch of a group: mean transfer success over seeds (t-interval) and mean clean accuracy."""

    epoch: int
    mean_success: float
    ci: Interval
    clean_accuracy: float


def early_name(rule: EarlyStop) -> str:
    """How the early-stop claim names its early checkpoint: the preset's epoch, or the rule."""
    return f"epoch {int(rule.value)}" if rule.kind == "epoch" else f"the checkpoint of rule {rule}"


def twins(result: TransferResult, zoo: Sequence[ZooRun], finals: Sequence[ModelRef]) -> list[SourceTwins]:
    """The BN and no-BN sources of the same arch and seed, with their mean transfer success over targets."""
    per = {r.source: r.mean_success for r in result.per_source()}
    by_key = {(r.arch, r.norm, r.seed): ref.name for r, ref in zip(zoo, finals, strict=True)}
    return [
        SourceTwins(
            arch,
            seed,
            per[name],
            per[by_key[(arch, "none", seed)]],
            bn_on=_on_targets(result, name),
            none_on=_on_targets(result, by_key[(arch, "none", seed)]),
        )
        for (arch, norm, seed), name in by_key.items()
        if norm == "bn" and (arch, "none", seed) in by_key
    ]


def _on_targets(result: TransferResult, source: str) -> tuple[tuple[str, float], ...]:
    """``source``'s transfer success on each counted target (self pairs left out): the claims' crossed cells."""
    return tuple((p.target, p.transfer_success) for p in result.row(source) if result.counted(p))


def _base_group(group: str) -> str:
    return group.split("@", 1)[0]


def epoch_curve(
    result: TransferResult, finals: list[ModelRef], earlier: list[ModelRef], epochs: int
) -> list[tuple[str, list[CurvePoint]]]:
    """Per group: mean success over seeds (t-interval) and mean source clean accuracy for epochs 1..E."""
    per = {r.source: r.mean_success for r in result.per_source()}
    by_group: dict[str, list[tuple[int, float, float]]] = {}
    for ref in [*earlier, *finals]:
        epoch = ref.epoch if ref.epoch is not None else epochs
        by_group.setdefault(_base_group(ref.group), []).append(
            (epoch, per[ref.name], result.source(ref.name).clean_accuracy)
        )
    out = []
    for group, pts in by_group.items():
        rows = []
        for e in sorted({p[0] for p in pts}):
            at = [p for p in pts if p[0] == e]
            m, lo, hi = mean_ci([p[1] for p in at])
            rows.append(CurvePoint(e, m, (lo, hi), sum(p[2] for p in at) / len(at)))
        out.append((group, rows))
    return out


def plot_curve(curve: list[tuple[str, list[CurvePoint]]], stem: Path) -> Path:
    from nrflab.experiments.analysis import finish_figure
    from nrflab.report.plots import NORM_STYLE, new_figure

    fig, axes = new_figure(figsize=(5.6, 3.6))
    ax = axes[0][0]
    for group, rows in curve:
        e = [r.epoch for r in rows]
        (line,) = ax.plot(
            e,
            [100 * r.mean_success for r in rows],
            marker="o",
            linestyle=NORM_STYLE.get(group.split("/")[-1], "-"),
            label=group,
        )
        lo = [100 * (r.ci[0] if math.isfinite(r.ci[0]) else r.mean_success) for r in rows]
        hi = [100 * (r.ci[1] if math.isfinite(r.ci[1]) else r.mean_success) for r in rows]
        ax.fill_between(e, lo, hi, color=line.get_color(), alpha=0.15)
    return finish_figure(
        fig,
        ax,
        stem,
        xlabel="source epoch (checkpoint)",
        ylabel="transfer success % (mean over targets)",
        title="transfer success vs source epoch (mean over seeds, 95 % CI)",
        legend_size=8,
    )[0]


def early_vs_final(
    result: TransferResult, zoo: Sequence[ZooRun], finals: list[ModelRef], epochs: int, rule: EarlyStop = EARLY_RULE
) -> list[EarlyVsFinal]:
    """Per run: the early-stopped checkpoint (``rule``) vs the final model, same targets."""
    per = {r.source: r.mean_success for r in result.per_source()}
    rows = []
    for run_info, final in zip(zoo, finals, strict=True):
        epoch = rule.select(run_info.path)
        early_name = final.name if epoch == epochs else f"{final.name}@e{epoch}"
        rows.append(
            EarlyVsFinal(
                run=final.name,
                group=final.group,
                epoch=epoch,
                final_epoch=epochs,
                early=per[early_name],
                final=per[final.name],
                seed=run_info.seed,
                early_on=_on_targets(result, early_name),
                final_on=_on_targets(result, final.name),
            )
        )
    return rows


def matrix_markdown(result: TransferResult, dataset: str = "mnist5k") -> str:
    clean: dict[str, list[tuple[float, float]]] = {}
    for s in result.sources:
        clean.setdefault(s.group, []).append((s.clean_accuracy, s.whitebox_success))
    table = markdown_table(
        [
            "source group",
            "seeds",
            "clean acc %",
            "white-box success %",
            "transfer success % (mean over targets)",
            "95 % CI over seeds",
            "target acc % on its examples",
        ],
        [
            [
                g.group,
                g.sources,
                f"{100 * sum(c[0] for c in clean[g.group]) / len(clean[g.group]):.1f}",
                f"{100 * sum(c[1] for c in clean[g.group]) / len(clean[g.group]):.1f}",
                pct(g.mean_success, unit=False),
                ci(g.ci),
                pct(g.mean_target_accuracy, unit=False),
            ]
            for g in result.per_source_group()
        ],
    )
    gm = result.group_matrix()
    cells = markdown_table(
        ["source \\ target", *gm.columns],
        [
            [a, *[f"{pct(c.mean, unit=False)} {ci(c.ci)}" for c in row]]
            for a, row in zip(gm.rows, gm.cells, strict=True)
        ],
    )
    d = result.definitions
    settings = result.settings
    return (
        f"Attack `{settings.attack}`, untargeted, {settings.num_samples} {dataset} test images; every final model attacks every "
        f"other (a model is never its own target).\n\n*Transfer success*: {d['transfer_success']}; *eligible*: "
        f"{d['eligible']}. *Target accuracy*: {d['target_accuracy']}.\n\n{table}\n\n"
        f"Transfer success % by source group (rows) and target group (columns), mean over model pairs "
        f"with a 95 % t-interval:\n\n{cells}\n"
    )


def early_markdown(
    curve: list[tuple[str, list[CurvePoint]]], early: list[EarlyVsFinal], rule: EarlyStop = EARLY_RULE
) -> str:
    rows = [
        [group, p.epoch, f"{100 * p.clean_accuracy:.1f}", pct(p.mean_success, unit=False), ci(p.ci)]
        for group, curve_points in curve
        for p in curve_points
    ]
    t1 = markdown_table(
        ["source group", "source epoch", "source clean acc %", "transfer success %", "95 % CI over seeds"], rows
    )
    t2 = markdown_table(
        ["source run", "early epoch", "success % (early)", "success % (final)", "gain (points)"],
        [[r.run, r.epoch, pct(r.early, unit=False), pct(r.final, unit=False), points(r.gain)] for r in early],
    )
    return (
        f"Checkpoints of every epoch attack the final models of the other runs. Early stopping rule "
        f"`{rule}` (frac=F: the earliest kept epoch whose clean accuracy reaches F of the final).\n\n{t1}\n\n{t2}\n"
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

"""The core finding (paper Figure 3): a BN model and its no-normalization twin, trained with the same
recipe and seed, recorded every epoch; the framework table and one verdict per paper claim."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..plots import plot_runs, robust_column
from ..report import Section, claim_line, markdown_table, num, pct
from ..training import TrainConfig, make_config, read_metrics, train_or_reuse

#: Twins whose clean accuracy differs by more than this are flagged: robustness of a model that did
#: not learn proves nothing.
USEFULNESS_GAP = 0.10


@dataclass
class DemoSettings:
    """What the demo trains; defaults finish in a few minutes on a 2-core CPU."""

    dataset: str = "mnist5k"
    arch: str = "smallcnn"
    width: float = 0.5
    epochs: int = 8
    eval_size: int = 500
    norms: tuple[str, ...] = ("bn", "none")
    device: str = "auto"

    def config(self, norm: str, seed: int, **overrides: Any) -> TrainConfig:
        return make_config(dataset=self.dataset, arch=self.arch, norm=norm, width=self.width, epochs=self.epochs,
                           eval_size=self.eval_size, seed=seed, device=self.device, **overrides)


QUICK = DemoSettings(epochs=1, eval_size=64)


def run_dir_name(cfg: TrainConfig) -> str:
    return f"{Path(cfg.dataset).name}-{cfg.arch}-{cfg.norm}-s{cfg.seed}"


def final_row(run_dir: Path) -> dict[str, float]:
    return read_metrics(run_dir)[-1]


def mean_over(rows: Sequence[dict[str, float]], key: str) -> float:
    vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return statistics.fmean(vals) if vals else math.nan


def spread(rows: Sequence[dict[str, float]], key: str, fmt: Callable[[float], str]) -> str:
    """``mean (min-max)`` over seeds, or the single value."""
    vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.fmean(vals))} ({fmt(min(vals))} to {fmt(max(vals))})"


def framework_table(groups: dict[str, list[Path]]) -> tuple[str, dict[str, dict[str, float]]]:
    """The paper's framework table (usefulness, robust usefulness, robustness) per group of runs."""
    first = next(iter(groups.values()))[0]
    columns = [c for c in read_metrics(first)[0] if c.startswith("robust_acc[")]
    header = ["model", "seeds", "usefulness (clean acc)"] + [f"robust usefulness ({c[11:-1]})" for c in columns] + [
        "robustness (LIGS)", "logit similarity"]
    rows, means = [], {}
    for name, runs in groups.items():
        finals = [final_row(r) for r in runs]
        means[name] = {k: mean_over(finals, k) for k in ["clean_acc", "ligs", "logit_sim", *columns]}
        rows.append([name, len(runs), spread(finals, "clean_acc", pct)] + [spread(finals, c, pct) for c in columns]
                    + [spread(finals, "ligs", num), spread(finals, "logit_sim", num)])
    return markdown_table(header, rows), means


def usefulness_flags(means: dict[str, dict[str, float]], reference: str) -> list[str]:
    """Warnings for models whose clean accuracy is far below the reference twin's."""
    ref = means[reference]["clean_acc"]
    return [f"- **flag**: {name} reaches {pct(m['clean_acc'])} clean accuracy, more than "
            f"{100 * USEFULNESS_GAP:.0f} points below {reference} ({pct(ref)}); its robustness numbers say "
            "little until it learns comparably." for name, m in means.items()
            if name != reference and ref - m["clean_acc"] > USEFULNESS_GAP]


def ligs_drop(run_dir: Path) -> tuple[float, float]:
    """(highest LIGS after epoch 0, final LIGS): how far LIGS fell during training."""
    rows = read_metrics(run_dir)
    trained = [r["ligs"] for r in rows[1:] if not math.isnan(r.get("ligs", math.nan))]
    return (max(trained), trained[-1]) if trained else (math.nan, math.nan)


def higher(a: float, b: float, n: int) -> bool | None:
    """Is accuracy ``a`` above ``b``, each measured on ``n`` images? None when the gap is within
    1.96 standard errors of a difference of two proportions (too close to call)."""
    se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1e-12) / max(n, 1))
    return None if abs(a - b) < 1.96 * se else a > b


def claims(means: dict[str, dict[str, float]], groups: dict[str, list[Path]], bn: str, none: str,
           n_eval: int) -> list[str]:
    """One verdict per paper claim, from the BN and no-BN groups (accuracies measured on ``n_eval``
    images per seed; gaps within sampling error are inconclusive)."""
    b, n = means[bn], means[none]
    n_total = n_eval * len(groups[bn])
    rob = robust_column(list(b))
    lines = []
    lines.append(claim_line(
        "Claim 1, BN raises clean accuracy", higher(b["clean_acc"], n["clean_acc"], n_total),
        f"Clean accuracy {pct(b['clean_acc'])} with BN vs {pct(n['clean_acc'])} without."))
    if rob:
        lines.append(claim_line(
            "Claim 1, BN lowers adversarial robustness", higher(n[rob], b[rob], n_total),
            f"Robust accuracy ({rob[11:-1]}) {pct(b[rob])} with BN vs {pct(n[rob])} without."))
    lines.append(claim_line(
        "Claims 2-3, BN shifts the model toward non-robust features (lower LIGS)", b["ligs"] < n["ligs"],
        f"LIGS {num(b['ligs'])} with BN vs {num(n['ligs'])} without."))
    drops = {k: [ligs_drop(r) for r in groups[k]] for k in (bn, none)}
    fall = {k: statistics.fmean(hi - lo for hi, lo in v) for k, v in drops.items()}
    epochs = len(read_metrics(groups[bn][0])) - 1
    lines.append(claim_line(
        "Claim 4, LIGS falls during training (robust features first, then non-robust), further with BN",
        (fall[bn] > 0 and fall[bn] > fall[none]) if epochs >= 3 else None,
        f"LIGS fell from its peak by {fall[bn]:.3f} with BN and by {fall[none]:.3f} without."))
    return lines


def run(
    out_dir: Path,
    *,
    quick: bool = False,
    seeds: Sequence[int] = (0,),
    progress: bool = True,
    settings: DemoSettings | None = None,
) -> list[Section]:
    """Train the BN / no-BN twins for every seed and report the framework table and claims."""
    settings = settings or (QUICK if quick else DemoSettings())
    out_dir = Path(out_dir)
    groups: dict[str, list[Path]] = {}
    for norm in settings.norms:
        for seed in seeds:
            cfg = settings.config(norm, seed)
            run_dir = out_dir / "runs" / run_dir_name(cfg)
            groups.setdefault(f"{settings.arch}/{norm}", []).append(train_or_reuse(cfg, run_dir, progress=progress))
    table, means = framework_table(groups)
    names = list(groups)
    plots = plot_runs([r for runs in groups.values() for r in runs], out_dir / "figure3_curves",
                      title=f"{settings.dataset}: {settings.arch} with and without BN (Figure 3)")
    bn, none = names[0], names[1] if len(names) > 1 else names[0]
    text = [
        f"Dataset `{settings.dataset}`, {settings.arch} width {settings.width}, {settings.epochs} epochs, "
        f"seeds {', '.join(map(str, seeds))}; the same recipe and seed for every model "
        f"(recipe: `config.json` in each run directory). Evaluation on a fixed set of {settings.eval_size} test "
        "images every epoch; values are at the last epoch (mean, and min to max over seeds).",
        "",
        table,
        "",
        *usefulness_flags(means, bn),
        "",
        "**Paper claims**",
        "",
        *claims(means, groups, bn, none, settings.eval_size),
    ]
    return [Section("Batch normalization and non-robust features (Figure 3)", "\n".join(text), [plots[0]])]

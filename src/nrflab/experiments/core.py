"""The core finding (paper Figure 3): a BN model and its no-normalization twin, trained with the same
recipe and seed, recorded every epoch; the framework table and one verdict per paper claim.

Verdicts come from the final models on fixed test images (the same images for every model and seed),
through the validity guard (:mod:`nrflab.experiments.guard`) and the one verdict rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from pydantic import Field

from nrflab.core.columns import LIGS, attack_title
from nrflab.core.fmt import num, pct, spread
from nrflab.core.stats import Verdict
from nrflab.data.defaults import PAPER_EVAL_ATTACKS, PRESETS, preset_for
from nrflab.experiments.analysis import load_bundle, norm_title, tensor_mean, test_images
from nrflab.experiments.engine import Task, TrainTask
from nrflab.experiments.evidence import Outcomes, compare, compare_scalars, measure, measure_task
from nrflab.experiments.guard import Health, health, named, verdict, void_reason
from nrflab.experiments.spec import AnalysisContext, ExperimentSettings, ExperimentSpec, Stage, paper_stage
from nrflab.measure.predict import PAPER
from nrflab.report.document import Section, markdown_table, verdict_line
from nrflab.report.plots import plot_runs
from nrflab.runs.rundir import RunDir


class CoreSettings(ExperimentSettings):
    """BN vs no-normalization twins (Figure 3)."""

    norms: list[str] = Field(
        default_factory=lambda: ["bn", "none"],
        min_length=2,
        max_length=2,
        description="the normalization under test, then its baseline",
    )
    twins: Stage = Field(default_factory=Stage, description="the twins' training recipe")
    test_size: Optional[int] = Field(
        default=None, ge=1, description="final models are evaluated on this many fixed test images (None: all)"
    )
    final_attacks: Optional[list[str]] = Field(
        default=None, description="attacks of the final evaluation (None: the dataset preset's)"
    )
    ligs_sigma: float = Field(default=0.01, ge=0)


CPU = CoreSettings(dataset="mnist5k", arch="smallcnn", width=0.5, seeds=[0], twins=Stage(epochs=8, eval_size=500))
QUICK = CoreSettings(
    dataset="mnist5k", arch="smallcnn", width=0.5, seeds=[0], twins=Stage(epochs=1, eval_size=64), test_size=200
)
PAPER_SCALE = CoreSettings(
    dataset="cifar10",
    arch="resnet18",
    width=1.0,
    seeds=[1337],
    twins=paper_stage(eval_attacks=list(PAPER_EVAL_ATTACKS), ligs=True, ligs_sigma=0.01),
    final_attacks=list(PAPER_EVAL_ATTACKS),
)


def run_name(settings: CoreSettings, norm: str, seed: int) -> str:
    return f"{Path(settings.dataset).name.replace(':', '_').replace('=', '-').replace(',', '_')}-{settings.arch}-{norm}-s{seed}"


def _tasks(s: CoreSettings, home: Path) -> dict[tuple[str, int], TrainTask]:
    return {
        (norm, seed): TrainTask(
            str(home / "runs" / run_name(s, norm, seed)), s.train_config(s.twins, norm=norm, seed=seed).model_dump()
        )
        for norm in s.norms
        for seed in s.seeds
    }


def plan(s: CoreSettings, home: Path) -> list[Task]:
    runs = list(_tasks(s, home).values())
    return [
        *runs,
        *(
            measure_task(
                t.key,
                dataset=s.dataset,
                data_root=s.data_root,
                test_size=s.test_size,
                attacks=final_attacks(s),
                ligs_sigma=s.ligs_sigma,
                device=s.device,
            )
            for t in runs
        ),
    ]


def final_attacks(s: CoreSettings) -> list[str]:
    return (
        list(s.final_attacks) if s.final_attacks is not None else list(PRESETS[preset_for(s.dataset)]["eval_attacks"])
    )


def ligs_fall(run_dir: str | Path) -> float:
    """How far LIGS fell from its highest value after epoch 0 to its final value."""
    rows = RunDir(run_dir).read_metrics()
    trained = [r[LIGS] for r in rows[1:] if not math.isnan(r.get(LIGS, math.nan))]
    return max(trained) - trained[-1] if trained else math.nan


def analyze(s: CoreSettings, ctx: AnalysisContext) -> list[Section]:
    tasks = _tasks(s, ctx.home)
    bundle = load_bundle(s)
    x, y = test_images(bundle, s.test_size)
    attacks = final_attacks(s)
    outcomes = {
        k: measure(t.key, x, y, attacks=attacks, ligs_sigma=s.ligs_sigma, device=s.device) for k, t in tasks.items()
    }
    with_norm, baseline = s.norms
    groups = {norm: [outcomes[(norm, sd)] for sd in s.seeds] for norm in s.norms}
    runs = {norm: [tasks[(norm, sd)].key for sd in s.seeds] for norm in s.norms}
    rob_labels = list(next(iter(outcomes.values())).robust)
    header = (
        ["model", "seeds", "usefulness (clean acc)"]
        + [f"robust usefulness ({attack_title(lab)})" for lab in rob_labels]
        + ["robustness (LIGS)"]
    )
    rows = []
    for norm in s.norms:
        o = groups[norm]
        rows.append(
            [f"{s.arch}/{norm}", len(o), spread([v.accuracy() for v in o], pct)]
            + [spread([float(v.robust_correct(lab).mean()) for v in o], pct) for lab in rob_labels]
            + [spread([tensor_mean(v.ligs) for v in o], num)]
        )
    hb = named(
        f"{norm_title(with_norm)} twin",
        [
            health(f"{with_norm}", r, o, num_classes=bundle.num_classes)
            for r, o in zip(runs[with_norm], groups[with_norm], strict=True)
        ],
    )
    hn = named(
        f"{norm_title(baseline)} twin",
        [
            health(f"{baseline}", r, o, num_classes=bundle.num_classes)
            for r, o in zip(runs[baseline], groups[baseline], strict=True)
        ],
    )
    verdicts = claims(s, groups, runs, hb, hn, rob_labels)
    plots = plot_runs(
        [r for norm in s.norms for r in runs[norm]],
        ctx.home / "figure3_curves",
        title=f"{s.dataset}: {s.arch} with and without {norm_title(with_norm)} (Figure 3)",
    )
    n = y.shape[0]
    text = [
        f"Dataset `{s.dataset}`, {s.arch} width {s.width}, seeds {', '.join(map(str, s.seeds))}; the same recipe "
        f"and seed for both twins (recipe: `config.json` in each run directory; attacks of the per-epoch curves: "
        f"the recipe's). Table and verdicts: the final models on the same {n} fixed test images, attacks "
        f"{', '.join(f'`{a}`' for a in attacks)}, LIGS with sigma {s.ligs_sigma}; mean (min to max) over seeds.",
        "",
        markdown_table(header, rows),
        "",
        "**Paper claims**",
        "",
        *[verdict_line(v) for v in verdicts],
    ]
    return [Section("Batch normalization and non-robust features (Figure 3)", "\n".join(text), [plots[0]], verdicts)]


def claims(
    s: CoreSettings,
    groups: dict[str, list[Outcomes]],
    runs: dict[str, list[str]],
    hb: list[Health],
    hn: list[Health],
    rob_labels: Sequence[str],
) -> list[Verdict]:
    """Claims 1-4 from the twins' per-image outcomes (positive differences support the claim)."""
    with_norm, baseline = s.norms
    b, n = groups[with_norm], groups[baseline]
    name_b, name_n = norm_title(with_norm), norm_title(baseline)
    proto = PAPER.title
    out = []
    c = compare([o.correct() for o in b], [o.correct() for o in n], seeds=s.seeds)
    out.append(
        verdict(
            f"Claim 1, {name_b} raises clean accuracy",
            c,
            f"Clean accuracy {pct(c.a)} with {name_b} vs {pct(c.b)} with {name_n}.",
            protocol=proto,
            seeds=s.seeds,
            void=void_reason(learners=[*hb, *hn]),
        )
    )
    guard = void_reason(learners=[*hb, *hn], comparable=[(hb, hn)])
    if rob_labels:
        lab = rob_labels[0]
        c = compare([o.robust_correct(lab) for o in n], [o.robust_correct(lab) for o in b], seeds=s.seeds)
        out.append(
            verdict(
                f"Claim 1, {name_b} lowers adversarial robustness ({attack_title(lab)})",
                c,
                f"Robust accuracy {pct(c.b)} with {name_b} vs {pct(c.a)} with {name_n}.",
                protocol=proto,
                seeds=s.seeds,
                void=guard,
            )
        )
    c = compare([o.ligs_values() for o in n], [o.ligs_values() for o in b], seeds=s.seeds)
    out.append(
        verdict(
            f"Claims 2-3, {name_b} shifts the model toward non-robust features (lower LIGS)",
            c,
            f"LIGS {num(c.b)} with {name_b} vs {num(c.a)} with {name_n}.",
            protocol=proto,
            seeds=s.seeds,
            void=guard,
            unit="LIGS",
        )
    )
    fall_b = [ligs_fall(r) for r in runs[with_norm]]
    fall_n = [ligs_fall(r) for r in runs[baseline]]
    c = compare_scalars(fall_b, fall_n, seeds=s.seeds)
    out.append(
        verdict(
            f"Claim 4, LIGS falls further during training with {name_b} (robust features first, then non-robust)",
            c,
            f"LIGS fell from its peak after epoch 0 to its final value by "
            f"{', '.join(num(v) for v in fall_b)} with {name_b} and {', '.join(num(v) for v in fall_n)} "
            f"with {name_n} (per seed; per-epoch LIGS on each run's evaluation images).",
            protocol=proto,
            seeds=s.seeds,
            void=void_reason(learners=[*hb, *hn]),
            unit="LIGS",
        )
    )
    return out


def run(
    out_dir: Path, *, scale: str = "cpu", settings: CoreSettings | None = None, progress: bool = True, workers: int = 1
) -> list[Section]:
    """Train the twins (reusing finished runs) under ``out_dir`` and return the report section."""
    from nrflab.experiments.reproduce import run_experiment
    from nrflab.runs.jobs import Execution

    return run_experiment(
        "core", Path(out_dir), scale=scale, settings=settings, execution=Execution(workers=workers, progress=progress)
    )


SPEC = ExperimentSpec(
    name="core",
    summary="BN vs no-BN twins: framework table, LIGS curves and claims 1-4 (Figure 3)",
    settings_type=CoreSettings,
    presets={"cpu": CPU, "paper": PAPER_SCALE, "quick": QUICK},
    plan=plan,
    analyze=analyze,
    home="",
    claims=("1", "2", "3", "4"),
    epoch_keys=("twins.epochs",),
)

__all__ = [
    "QUICK",
    "SPEC",
]

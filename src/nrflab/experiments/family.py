"""The normalization family (claim 7 of the earlier version): GroupNorm, LayerNorm and InstanceNorm also
raise adversarial vulnerability relative to no normalization, as BN does.

The same architecture and recipe with each normalization (``bn-eval``: BN's affine only, never batch
statistics); one verdict per normalization against ``none``, each through the validity guard (a model far
less useful than ``none`` is not compared on robustness).
"""

from __future__ import annotations

from pathlib import Path

from nrflab.core.stats import Verdict
from nrflab.experiments.analysis import norm_title
from nrflab.experiments.claims import judge_claim, register_claim
from nrflab.experiments.engine import Task
from nrflab.experiments.evidence import claim_threat, compare, robust_under
from nrflab.experiments.frequency import FAMILY_CLAIM, FAMILY_TITLE, heat_map_tasks, section
from nrflab.experiments.guard import check
from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import AnalysisContext
from nrflab.experiments.zoo import NormsSettings, Zoo, ZooView, plan, tasks, zoo_experiment
from nrflab.measure.predict import PAPER
from nrflab.report.document import Section, verdict_line
from nrflab.report.plots import plot_runs

VULNERABILITY = register_claim(
    id="family.vulnerability",
    experiment="family",
    family="claim 7: other normalizations",
    text="{with} raises adversarial vulnerability relative to no normalization ({attack})",
    paper="Claim 7 (earlier version): GroupNorm, LayerNorm and InstanceNorm also raise adversarial vulnerability",
    quantity="robust acc(none) - robust acc(the normalization) under the strongest evaluation (per image, robust only "
    "if every final attack at the first attack's threat model failed: PGD and AutoAttack), per seed, same test images",
    unit="points",
    protocol=PAPER.title,
    models=("standard model with the normalization", "standard model without normalization"),
    guard="both learned (clean test images, paper protocol); comparable usefulness",
)


def analyze(s: NormsSettings, ctx: AnalysisContext) -> list[Section]:
    zoo = Zoo(s, ctx.home)
    verdicts = claims(s, zoo)
    images = plot_runs(
        [r for n in s.norms for r in zoo.run_dirs("std", n)],
        ctx.home / "normalization_family",
        title="normalization family, standard training (seeds: mean and range)",
        labels=[n for n in s.norms for _ in s.seeds],
    )
    note = "" if "none" in s.norms else "No `none` model in the settings: nothing to compare with."
    md = "\n\n".join(
        filter(
            None,
            [
                "The same architecture and recipe with each normalization (bn-eval: BN's affine only, never batch "
                "statistics). " + zoo.settings_line(),
                zoo.table({n: ("std", n) for n in s.norms}),
                note,
                "**Claims**",
                "\n".join(verdict_line(v) for v in verdicts),
            ],
        )
    )
    runs = {n: zoo.run_dirs("std", n) for n in s.norms}
    return [
        Section("The normalization family", md, [p for p in images if p.suffix == ".png"], verdicts),
        *section(FAMILY_CLAIM, s, runs, title=FAMILY_TITLE, baseline="none", stem=ctx.home / "fourier_family"),
    ]


def plan_family(s: NormsSettings, home: Path) -> list[Task]:
    """The zoo's plan and one heat-map measurement per standard run (the Fourier lens)."""
    std = [t.key for (kind, _, _), t in tasks(s, home).items() if kind == "std"]
    return [*plan(s, home), *heat_map_tasks(std, s)]


def claims(s: NormsSettings, zoo: ZooView) -> list[Verdict]:
    """One verdict per normalization (bn-eval excepted: a control) against ``none``, paired by seed."""
    attacks = zoo.final_attacks()
    threat = claim_threat(attacks)
    if "none" not in s.norms or threat is None:
        return []
    base = zoo.outcomes("std", "none")
    hn = zoo.health("std", "none", "none")
    out = []
    for n in [m for m in s.norms if m not in ("none", "bn-eval")]:
        o = zoo.outcomes("std", n)
        h = zoo.health("std", n, n)
        c = compare(
            [robust_under(v, attacks, threat) for v in base],
            [robust_under(v, attacks, threat) for v in o],
            seeds=s.seeds,
        )
        guard = check(learners=[*h, *hn], comparable=[(h, hn)])
        text = f"Robust accuracy {n} {100 * c.b:.1f} %, none {100 * c.a:.1f} %."
        names = {"with": norm_title(n), "attack": threat.title}
        out.append(judge_claim(VULNERABILITY, c, text, guard=guard, seeds=s.seeds, **names))
    return out


SPEC = register_experiment(
    zoo_experiment(
        name="family",
        summary="the normalization family: GN, LN, IN (and BN) vs no normalization (claim 7)",
        plan=plan_family,
        analyze=analyze,
        order=30,
        claims=("7",),
    )
)

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

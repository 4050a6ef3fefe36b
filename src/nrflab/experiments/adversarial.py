"""Adversarial training with and without BN (the adversarial curves of Figure 3): adversarially trained
models use more robust features than standard ones (higher LIGS), and BN costs them little robustness.

Adversarial training is the paper's variant: targeted PGD-L2 toward a uniformly random class, no random
start, crafted with the model in train mode as in the official code (recorded in each run's config).
"""

from __future__ import annotations

from nrflab.core.fmt import eps as fmt_eps
from nrflab.core.stats import Verdict
from nrflab.experiments.analysis import norm_title
from nrflab.experiments.claims import claims_of, judge_claim
from nrflab.experiments.evidence import claim_threat, compare, robust_under
from nrflab.experiments.guard import check
from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import AnalysisContext
from nrflab.experiments.zoo import NormsSettings, Zoo, ZooView, plan, zoo_experiment
from nrflab.measure.predict import PAPER
from nrflab.report.document import Section, verdict_line
from nrflab.report.plots import plot_runs

_claim = claims_of("adversarial", family="adversarial training", protocol=PAPER.title)
LIGS_GAIN = _claim(
    id="adversarial.ligs_gain",
    text="Adversarial training moves {with} models to robust features (higher LIGS than standard training)",
    paper="Adversarially trained models use robust features: LIGS ~0.98 with and without BN, against ~0.59 (BN) "
    "and ~0.79 (no BN) after standard training (Figure 3)",
    quantity="mean LIGS(AT) - mean LIGS(standard) of one normalization, per seed, on the same fixed test images",
    unit="LIGS",
    models=("adversarially trained model", "standard model of the same normalization"),
    guard="both models learned (clean test images, paper protocol); usefulness may differ (AT costs accuracy)",
)
BN_COST = _claim(
    id="adversarial.bn_cost",
    text="BN costs adversarially trained models little robustness ({attack})",
    paper="With adversarial training BN hardly changes robustness: PGD-L2 eps 0.25 ~79 % with BN vs ~77 % without",
    quantity="robust acc(AT BN) - robust acc(AT no BN) under the strongest evaluation (per image, robust only if "
    "every final attack at the first attack's threat model failed: PGD and AutoAttack), per seed; non-inferiority",
    unit="points",
    models=("AT BN", "AT no BN"),
    guard="both learned; comparable usefulness",
    margin=0.05,
    margin_source="5 points: the paper's AT models differ by ~2 points (AT BN ~79 % vs AT no BN ~77 %) while "
    "standard training separates them by ~30 (BN ~10 % vs no BN ~40 %); 5 points is a sixth of that gap",
)


def analyze(s: NormsSettings, ctx: AnalysisContext) -> list[Section]:
    zoo = Zoo(s, ctx.home)
    groups: dict[str, tuple[str, str]] = {}
    for n in s.at_norms:
        groups[f"AT {n}"] = ("at", n)
        if n in s.norms:
            groups[f"standard {n}"] = ("std", n)
    verdicts = claims(s, zoo)
    runs = [(name, r) for name, (kind, n) in groups.items() for r in zoo.run_dirs(kind, n)]
    images = plot_runs(
        [r for _, r in runs],
        ctx.home / "adversarial_curves",
        title="adversarial vs standard training (seeds: mean and range)",
        labels=[name for name, _ in runs],
    )
    adv = s.adversarial
    radius = "default" if adv.adv_eps is None else fmt_eps(adv.adv_eps)
    md = "\n\n".join(
        [
            f"Adversarial training as in the paper's code: `{adv.adv_train}`, eps {radius}, {adv.adv_steps} steps, "
            f"crafted with the model in {adv.attack_mode} mode (exact settings: `resolved.adversarial_training` in each "
            f"run's config.json). " + zoo.settings_line(),
            zoo.table(groups),
            "**Claims**",
            "\n".join(verdict_line(v) for v in verdicts),
        ]
    )
    return [
        Section("Adversarial training with and without BN", md, [p for p in images if p.suffix == ".png"], verdicts)
    ]


def claims(s: NormsSettings, zoo: ZooView) -> list[Verdict]:
    """AT vs standard LIGS per normalization trained both ways, and BN's robustness cost under AT."""
    out: list[Verdict] = []
    for n in [m for m in s.at_norms if m in s.norms]:
        at, std = zoo.outcomes("at", n), zoo.outcomes("std", n)
        c = compare([v.ligs_values() for v in at], [v.ligs_values() for v in std], seeds=s.seeds)
        guard = check(learners=[*zoo.health("at", n, f"AT {n}"), *zoo.health("std", n, f"standard {n}")])
        text = f"LIGS of the {norm_title(n)} model {c.a:.3f} adversarially trained vs {c.b:.3f} standard."
        out.append(judge_claim(LIGS_GAIN, c, text, guard=guard, seeds=s.seeds, **{"with": norm_title(n)}))
    attacks = zoo.final_attacks()
    threat = claim_threat(attacks)
    if "bn" in s.at_norms and "none" in s.at_norms and threat is not None:
        bn, none = zoo.outcomes("at", "bn"), zoo.outcomes("at", "none")
        c = compare(
            [robust_under(v, attacks, threat) for v in bn],
            [robust_under(v, attacks, threat) for v in none],
            seeds=s.seeds,
        )
        hb, hn = zoo.health("at", "bn", "AT BN"), zoo.health("at", "none", "AT no BN")
        guard = check(learners=[*hb, *hn], comparable=[(hb, hn)])
        text = f"Robust accuracy AT BN {100 * c.a:.1f} %, AT no BN {100 * c.b:.1f} %."
        out.append(judge_claim(BN_COST, c, text, guard=guard, seeds=s.seeds, attack=threat.title))
    return out


SPEC = register_experiment(
    zoo_experiment(
        name="adversarial",
        summary="adversarial training with and without BN: LIGS against standard training, BN's cost in robustness",
        plan=plan,
        analyze=analyze,
        order=20,
        claims=("3",),
    )
)

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

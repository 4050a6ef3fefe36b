"""Adversarial training with and without BN (the adversarial curves of Figure 3): adversarially trained
models use robust features (LIGS near 1), and BN costs them little robustness.

Adversarial training is the paper's variant: targeted PGD-L2 toward a uniformly random class, no random
start, crafted with the model in train mode as in the official code (recorded in each run's config).
"""

from __future__ import annotations

import torch

from nrflab.core.columns import attack_title
from nrflab.core.fmt import eps as fmt_eps
from nrflab.core.stats import Verdict
from nrflab.experiments.analysis import norm_title
from nrflab.experiments.evidence import compare
from nrflab.experiments.guard import verdict, void_reason
from nrflab.experiments.spec import AnalysisContext, ExperimentSpec
from nrflab.experiments.zoo import CPU, EPOCH_KEYS, HOME, PAPER_SCALE, QUICK, NormsSettings, Zoo, plan
from nrflab.measure.predict import PAPER
from nrflab.report.document import Section, verdict_line
from nrflab.report.plots import plot_runs

#: "Near 1" for LIGS: the paper's adversarially trained models sit at about 0.98.
LIGS_NEAR_ONE = 0.9
#: How much robust accuracy BN may cost an adversarially trained model and still count as "little".
LITTLE = 0.05


def analyze(s: NormsSettings, ctx: AnalysisContext) -> list[Section]:
    zoo = Zoo(s, ctx.home)
    groups: dict[str, tuple[str, str]] = {}
    for n in s.at_norms:
        groups[f"AT {n}"] = ("at", n)
        if n in s.norms:
            groups[f"standard {n}"] = ("std", n)
    verdicts = claims(s, zoo)
    runs = [zoo.run_dirs("at", n)[0] for n in s.at_norms] + [
        zoo.run_dirs("std", n)[0] for n in s.at_norms if n in s.norms
    ]
    images = plot_runs(runs, ctx.home / "adversarial_curves", title="adversarial vs standard training (first seed)")
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


def claims(s: NormsSettings, zoo: Zoo) -> list[Verdict]:
    out: list[Verdict] = []
    proto = PAPER.title
    for n in s.at_norms:
        o = zoo.outcomes("at", n)
        ligs = [v.ligs_values() for v in o]
        c = compare(ligs, [torch.full_like(v, LIGS_NEAR_ONE) for v in ligs], seeds=s.seeds)
        out.append(
            verdict(
                f"Adversarially trained models use robust features: LIGS near 1 (>= {LIGS_NEAR_ONE}), {norm_title(n)}",
                c,
                f"LIGS of the adversarially trained {norm_title(n)} model {c.a:.3f}.",
                protocol=proto,
                seeds=s.seeds,
                void=void_reason(learners=zoo.health("at", n, f"AT {n}")),
                unit="LIGS",
            )
        )
    if "bn" in s.at_norms and "none" in s.at_norms:
        bn, none = zoo.outcomes("at", "bn"), zoo.outcomes("at", "none")
        lab = zoo.robust_labels()[0]
        c = compare([v.robust_correct(lab) + LITTLE for v in bn], [v.robust_correct(lab) for v in none], seeds=s.seeds)
        hb, hn = zoo.health("at", "bn", "AT BN"), zoo.health("at", "none", "AT no BN")
        out.append(
            verdict(
                f"BN costs adversarially trained models little robustness (at most {100 * LITTLE:.0f} "
                f"points of robust accuracy, {attack_title(lab)})",
                c,
                f"Robust accuracy AT BN {100 * (c.a - LITTLE):.1f} %, AT no BN {100 * c.b:.1f} % (the "
                f"difference is BN's minus no BN's plus {100 * LITTLE:.0f} points).",
                protocol=proto,
                seeds=s.seeds,
                void=void_reason(learners=[*hb, *hn], comparable=[(hb, hn)]),
            )
        )
    return out


SPEC = ExperimentSpec(
    name="adversarial",
    summary="adversarial training with and without BN: LIGS near 1, BN's cost in robustness",
    settings_type=NormsSettings,
    presets={"cpu": CPU, "paper": PAPER_SCALE, "quick": QUICK},
    plan=plan,
    analyze=analyze,
    home=HOME,
    claims=("3",),
    epoch_keys=EPOCH_KEYS,
)

__all__: list[str] = []  # nothing to import from here: the room's public names come from its package

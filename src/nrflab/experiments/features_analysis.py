"""The analysis of the feature-dataset experiment (:mod:`nrflab.experiments.features`): the twins'
per-image outcomes under each evaluation protocol, the report's tables and text, and the claims judged
on them (the claims themselves: :mod:`nrflab.experiments.features_claims`).
"""

from __future__ import annotations

import math
from pathlib import Path

from nrflab.attacks import parse_attack
from nrflab.core.columns import attack_title
from nrflab.core.fmt import markdown_table, num, pct, spread
from nrflab.core.stats import Verdict
from nrflab.data.built import read_card
from nrflab.experiments.analysis import load_bundle, norm_title, tensor_mean, test_images
from nrflab.experiments.evidence import Outcomes, claim_threat, measure, robust_under
from nrflab.experiments.features_claims import (
    Arm,
    Names,
    conflicting_nrf_more,
    conflicting_rf,
    conflicting_turn,
    d_rand_hardly,
    d_rand_more,
)
from nrflab.experiments.features_plan import final_attack, needed_sets, twin_stage, twin_tasks
from nrflab.experiments.features_settings import SET_TITLES, FeaturesSettings
from nrflab.experiments.guard import Health, healths
from nrflab.experiments.spec import AnalysisContext
from nrflab.measure.predict import BATCH_STATS, PAPER, Protocol, get_protocol
from nrflab.report.document import Section, verdict_line
from nrflab.report.plots import plot_runs
from nrflab.runs.rundir import RunDir


class Twins:
    """The finished twins and their per-image outcomes under each protocol (lazily measured)."""

    def __init__(self, s: FeaturesSettings, home: Path):
        self.s = s
        self.tasks = twin_tasks(s, home)
        self.bundle = load_bundle(s)
        self.x, self.y = test_images(self.bundle, s.test_size)
        self.C = self.bundle.num_classes
        self._cache: dict[tuple[str, str, str, int], Outcomes] = {}

    def run(self, kind: str, norm: str, seed: int) -> str:
        return self.tasks[(kind, norm, seed)].key

    def outcomes(self, kind: str, norm: str, protocol: Protocol) -> list[Outcomes]:
        out = []
        for sd in self.s.seeds:
            key = (protocol.name, kind, norm, sd)
            if key not in self._cache:
                attacks = final_attack(self.s, self.tasks[(kind, norm, sd)])
                self._cache[key] = measure(
                    self.run(kind, norm, sd),
                    self.x,
                    self.y,
                    protocol=protocol,
                    attacks=attacks,
                    ligs_sigma=self.s.ligs_sigma,
                    seed=sd,
                    device=self.s.device,
                    autoattack_size=self.s.autoattack_size,
                )
            out.append(self._cache[key])
        return out

    def health(self, kind: str, norm: str, protocol: Protocol) -> list[Health]:
        name = f"{norm_title(norm)} twin on {SET_TITLES[kind]}"
        runs = [self.run(kind, norm, sd) for sd in self.s.seeds]
        return healths(name, runs, self.outcomes(kind, norm, protocol), num_classes=self.C)


def robust_titles(attacks: list[str]) -> list[str]:
    """The robust columns: the recipe's attack, then (with AutoAttack) the worst case of both at its threat."""
    if not attacks:
        return ["robust acc (no attack)"]
    threat = claim_threat(attacks)
    ensemble = [f"robust acc ({threat.title})"] if threat is not None and len(attacks) > 1 else []
    return [f"robust acc ({attack_title(parse_attack(attacks[0]).label)})", *ensemble]


def robust_note(s: FeaturesSettings, twins: Twins) -> str:
    """What the robust columns measure: the attacks, and the images AutoAttack ran on."""
    attacks = final_attack(s, twins.tasks[(s.sets[0], s.norms[0], s.seeds[0])])
    listed = ", ".join(f"`{a}`" for a in attacks) or "none"
    if len(attacks) < 2:
        return f"Robust column: {listed}."
    subset = s.autoattack_size is not None and s.autoattack_size < twins.x.shape[0]
    where = f"; AutoAttack and the ensemble on a fixed seeded subset of {s.autoattack_size} images" if subset else ""
    return f"Robust columns: {listed} (the ensemble: per image, robust only if both failed{where})."


def robust_cells(o: list[Outcomes], attacks: list[str]) -> list[str]:
    """Per seed over ``o``: robust accuracy under the recipe's attack and the ensemble (see :func:`robust_titles`)."""
    if not attacks:
        return ["n/a"]
    threat = claim_threat(attacks)
    cells = [spread([tensor_mean(v.robust_correct(parse_attack(attacks[0]).label)) for v in o], pct)]
    if threat is not None and len(attacks) > 1:
        cells.append(spread([tensor_mean(robust_under(v, attacks, threat)) for v in o], pct))
    return cells


def analyze(s: FeaturesSettings, ctx: AnalysisContext) -> list[Section]:
    """The report section: the final twins' table and training curves, the built sets' sanity, the twins
    under both evaluation protocols and the claims judged under each protocol."""
    home = ctx.home
    twins = Twins(s, home)
    rows, images = _results(s, twins, home)
    rob_titles = robust_titles(final_attack(s, twins.tasks[(s.sets[0], s.norms[0], s.seeds[0])]))
    table = markdown_table(["set", "model", "clean acc (= acc vs y)", *rob_titles, "LIGS", "acc vs y+1"], rows)
    sanity = _sanity_table(s, home)
    diag = _protocol_table(s, twins)
    verdicts: list[Verdict] = []
    for name in s.protocols:
        verdicts += claims(s, twins, get_protocol(name))
    by_protocol = "\n\n".join(
        f"*Under {get_protocol(p).title}:*\n\n"
        + "\n".join(verdict_line(v) for v in verdicts if v.protocol.startswith(get_protocol(p).title))
        for p in s.protocols
    )
    md = "\n\n".join(
        [
            _preamble(s, twins),
            table,
            "Built sets (sanity, on the stored images):",
            sanity,
            f"The twins under both evaluation protocols ({BATCH_STATS.title}: {BATCH_STATS.description}). The "
            "top-class share is the fraction of test images given the most frequent prediction.",
            diag,
            _statistics_finding(s, twins),
            "**Paper claims**",
            by_protocol,
        ]
    )
    return [Section("Feature datasets: D_R, D_rand, D_det, conflicting (Figures 4 and 6)", md, images, verdicts)]


def _results(s: FeaturesSettings, twins: Twins, home: Path) -> tuple[list[list[str]], list[Path]]:
    """The final twins' table rows (paper protocol; mean, min to max over seeds) and each set's curves (PNG)."""
    rows: list[list[str]] = []
    images: list[Path] = []
    for kind in s.sets:
        for norm in s.norms:
            o = twins.outcomes(kind, norm, PAPER)
            rows.append(
                [
                    SET_TITLES[kind],
                    norm_title(norm),
                    spread([v.accuracy() for v in o], pct),
                    *robust_cells(o, final_attack(s, twins.tasks[(kind, norm, s.seeds[0])])),
                    spread([tensor_mean(v.ligs) for v in o], num),
                    spread([v.accuracy(1, twins.C) for v in o], pct) if kind == "conflicting" else "",
                ]
            )
        extra = [("shifted_acc", "accuracy vs y+1 (follows RFs)")] if kind == "conflicting" else []
        ordered = [(n, sd) for n in s.norms for sd in s.seeds]
        images += [
            p
            for p in plot_runs(
                [twins.run(kind, n, sd) for n, sd in ordered],
                home / f"curves_{kind}",
                title=f"trained on {SET_TITLES[kind]}, tested on clean {s.dataset}",
                labels=[f"{norm_title(n)} seed {sd}" for n, sd in ordered],
                extra_panels=extra,
            )
            if p.suffix == ".png"
        ]
    return rows, images


def _sanity_table(s: FeaturesSettings, home: Path) -> str:
    """The built sets' own checks, read from their cards: size, source accuracy and attack success."""
    cards = {k: read_card(home / "sets" / k) for k in needed_sets(s)}
    return markdown_table(
        ["set", "images", "source acc vs stored labels", "attack success / rep. distance after/before"],
        [
            [
                SET_TITLES[k],
                c.num_images,
                pct(c.sanity["source_acc_vs_stored_labels"]),
                pct(c.sanity["attack_success_rate"])
                if "attack_success_rate" in c.sanity
                else num(c.sanity["relative_rep_distance_after"]),
            ]
            for k, c in cards.items()
        ],
    )


def _preamble(s: FeaturesSettings, twins: Twins) -> str:
    """What was trained and measured: the sources, the build settings, the twins' seeds and recipe changes,
    the test images and what the robust columns mean."""
    return (
        f"Sources: {s.arch} width {s.width} with norm `{s.source_norm}`, seed {s.source_seed}; D_R from the "
        f"adversarially trained source, the others from the standard one; build settings: "
        f"{', '.join(f'{k}={v}' for k, v in s.build.model_dump().items())}. Twins: seeds "
        f"{', '.join(map(str, s.seeds))}, recipe in each run's config.json (per-set changes: "
        f"{', '.join(f'{k}: {v.fields()}' for k, v in s.per_set.items()) or 'none'}). Table and verdicts: the "
        f"final twins on the same {twins.x.shape[0]} fixed clean test images of `{s.dataset}`, "
        f"{PAPER.title}; mean (min to max) over seeds. " + robust_note(s, twins)
    )


def _protocol_table(s: FeaturesSettings, twins: Twins) -> str:
    rows = []
    for kind in s.sets:
        for norm in s.norms:
            cells = []
            for p in (PAPER, BATCH_STATS):
                o = twins.outcomes(kind, norm, p)
                cells.append(
                    f"{spread([v.accuracy() for v in o], pct)} / {spread([v.accuracy(1, twins.C) for v in o], pct)}"
                    f" / {spread([v.top_class()[1] for v in o], pct)}"
                )
            rows.append([SET_TITLES[kind], norm_title(norm), *cells])
    return markdown_table(
        [
            "set",
            "model",
            f"{PAPER.title}: acc vs y / vs y+1 / top-class share",
            f"{BATCH_STATS.title}: acc vs y / vs y+1 / top-class share",
        ],
        rows,
    )


def _statistics_finding(s: FeaturesSettings, twins: Twins) -> str:
    """One measured sentence: do the BN twins on the NRF sets collapse, and do batch statistics undo it?"""
    with_norm = s.norms[0]
    kinds = [k for k in s.sets if k != "d_r"]
    if not kinds:
        return ""
    running = [o.top_class()[1] for k in kinds for o in twins.outcomes(k, with_norm, PAPER)]
    batch = [o.top_class()[1] for k in kinds for o in twins.outcomes(k, with_norm, BATCH_STATS)]
    spread = f"{pct(min(running))}-{pct(max(running))}", f"{pct(min(batch))}-{pct(max(batch))}"
    head = (
        f"Finding: on {', '.join(SET_TITLES[k] for k in kinds)} the most frequent prediction of the "
        f"{norm_title(with_norm)} twins takes {spread[0]} of the clean test images with running statistics and "
        f"{spread[1]} with batch statistics"
    )
    if min(running) <= 0.5:
        return head + f"; not every {norm_title(with_norm)} twin collapses to one class in this run."
    if max(batch) < 0.5:
        return head + (
            ": the collapse to one class is a train/test mismatch of BN's statistics (the running "
            "statistics, gathered on the perturbed training images, do not fit clean images), not a "
            "network that predicts one class."
        )
    return head + ": batch statistics do not undo the collapse in every run, so it is not only a statistics mismatch."


def claims(s: FeaturesSettings, twins: Twins, protocol: Protocol) -> list[Verdict]:
    """Claim 5 and the conflicting-set claims under ``protocol`` (see :mod:`nrflab.experiments.features_claims`).
    The no-BN-only claims are judged once, under the first protocol (a model without BN predicts alike under
    every protocol)."""
    with_norm, baseline = s.norms
    names = Names(norm_title(with_norm), norm_title(baseline), protocol.title, _stats_name(protocol))
    first = protocol.name == s.protocols[0]
    out: list[Verdict] = []
    if "d_rand" in s.sets:
        bn, none = _arm(twins, "d_rand", with_norm, protocol), _arm(twins, "d_rand", baseline, protocol)
        controls = twins.health("d_r", baseline, protocol) if "d_r" in s.sets else []
        if first:
            out.append(d_rand_hardly(none, controls, seeds=s.seeds, names=names))
        out.append(d_rand_more(bn, none, controls, seeds=s.seeds, names=names))
    if "conflicting" in s.sets:
        bn, none = _arm(twins, "conflicting", with_norm, protocol), _arm(twins, "conflicting", baseline, protocol)
        if first:
            out.append(conflicting_rf(none, seeds=s.seeds, names=names))
        out.append(conflicting_nrf_more(bn, none, seeds=s.seeds, names=names))
        if protocol.name == PAPER.name:
            out.append(_turn_verdict(s, twins, bn, names))
    return out


def _stats_name(protocol: Protocol) -> str:
    return "BN with test-batch statistics" if protocol.batch_statistics else "BN with running statistics"


def _arm(twins: Twins, kind: str, norm: str, protocol: Protocol) -> Arm:
    return Arm(twins.outcomes(kind, norm, protocol), twins.health(kind, norm, protocol))


def turn_epochs(s: FeaturesSettings) -> tuple[int, int]:
    """The early epoch of the turn claim (fixed in the preset) and the last epoch of the conflicting twins."""
    last = int(twin_stage(s, "conflicting").epochs or 1)
    return min(s.turn_epoch, last), last


def _turn_verdict(s: FeaturesSettings, twins: Twins, bn: Arm, names: Names) -> Verdict:
    """BN's accuracy vs y+1 at the preset's epoch minus at the last epoch, per seed (per-epoch records)."""
    epoch, last = turn_epochs(s)
    early, final = [], []
    for sd in s.seeds:
        rows = {int(r.get("epoch", -1)): r for r in RunDir(twins.run("conflicting", s.norms[0], sd)).read_metrics()}
        # No epoch before the last (e.g. --epochs 1): nothing to compare, so the claim is not tested.
        early.append(float(rows.get(epoch, {}).get("shifted_acc", math.nan)) if epoch < last else math.nan)
        final.append(float(rows.get(last, {}).get("shifted_acc", math.nan)))
    return conflicting_turn(early, final, bn, epoch=epoch, last=last, seeds=s.seeds, names=names)

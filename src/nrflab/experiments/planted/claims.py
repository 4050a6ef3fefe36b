"""The planted experiment's verdicts on the paper's claims: the capability gate, BN's preference (claim 2),
where rho crosses 0, D_rand and the conflicting set (claim 5), the MNIST question and transfer (claim 6).

The controls of claim 2 are in :mod:`.controls`, the learning order (claim 4) in :mod:`.order`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from nrflab.core.fmt import cell, difference, pct
from nrflab.core.stats import Verdict, finite_mean, judge, mean_ci, paired_ci, two_proportion_ci
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.settings import Settings
from nrflab.experiments.planted.text import name
from nrflab.experiments.planted.transferability import TransferResult
from nrflab.measure import health
from nrflab.measure.health import THRESHOLDS
from nrflab.measure.transfer_rate import IN_BRIEF
from nrflab.runs.rundir import RunDir

Capability = dict[str, dict[str, list[float]]]
#: Classes of the MNIST question's datasets.
MNIST_CLASSES = 10


def capability(m: Measured, s: Settings) -> dict[str, dict[str, list[float]]]:
    """Per normalization: per-seed accuracy learning the RF alone and the NRF alone (on their own views)."""
    return {
        norm: {"rf": m.series("cap-rf", norm, "rf_suff_acc"), "nrf": m.series("cap-nrf", norm, "nrf_suff_acc")}
        for norm in s.norms
    }


def capable(values: Sequence[float], s: Settings) -> bool:
    """A normalization can learn a feature alone when the median seed reaches ``capability_min``
    (:func:`nrflab.measure.health.capable`)."""
    return health.capable(values, minimum=s.capability_min)


def capability_void(cap: dict[str, dict[str, list[float]]], norms: Sequence[str], s: Settings) -> str | None:
    """The reason a preference verdict between ``norms`` is void, or None."""
    failed = [
        f"{name(n)} learns the {f.upper()} alone to a median {pct(statistics.median(cap[n][f]))}"
        for n in norms
        for f in ("rf", "nrf")
        if not capable(cap[n][f], s)
    ]
    return ("capability control failed: " + "; ".join(failed)) if failed else None


def learned_pairs(
    m: Measured, key: str, a: str, b: str, metric: str, s: Settings
) -> tuple[list[float], list[float], list[int]]:
    """``metric`` of norms ``a`` and ``b`` on the seeds where both models learned the set (agree accuracy >=
    ``learned_min``), and the seeds left out: reliance of a model that did not learn says nothing."""
    common = sorted(set(m.seeds(key, a)) & set(m.seeds(key, b)))
    ok = m.learned_seeds(key, (a, b), s.learned_min)
    return (m.series(key, a, metric, ok), m.series(key, b, metric, ok), [sd for sd in common if sd not in ok])


def dropped_text(dropped: Sequence[int]) -> str:
    return f" Seeds {', '.join(map(str, dropped))} left out (a model below the learned threshold)." if dropped else ""


def pairs_void(kept: Sequence[float], dropped: Sequence[int], what: str) -> str | None:
    if len(kept) < 2:
        return f"{what}: fewer than two seeds where both models learned (left out: {', '.join(map(str, dropped))})"
    return None


def preference_verdict(m: Measured, s: Settings, norm: str, cap: Capability, op_key: str) -> Verdict:
    """Claim 2 on ground truth: rho(norm) - rho(none) at the operating point, paired by seed."""
    a, b, dropped = learned_pairs(m, op_key, norm, "none", "rho", s)
    d, lo, hi = paired_ci(a, b)
    parts = [
        f"rho = F_N - F_R on swapped images: {name(norm)} {cell(a, percent=False, signed=True)}, no norm "
        f"{cell(b, percent=False, signed=True)}; paired difference {difference(d, lo, hi, percent=False)}"
    ]
    for metric, label, percent in [
        *((f"robust_{e:g}", f"robust accuracy PGD-L2 {e:g}", True) for e in s.eval_eps),
        ("ligs", "LIGS", False),
    ]:
        x, y, _ = learned_pairs(m, op_key, norm, "none", metric, s)
        dd, ll, hh = paired_ci(x, y)
        parts.append(
            f"{label} {name(norm)} {cell(x, percent=percent)} vs {cell(y, percent=percent)} "
            f"(difference {difference(dd, ll, hh, percent=percent)})"
        )
    void = capability_void(cap, (norm, "none"), s) or pairs_void(a, dropped, "operating point")
    return judge(
        f"Claim 2, {name(norm)} shifts reliance toward the non-robust feature (rho higher than without normalization)",
        d,
        lo,
        hi,
        "; ".join(parts) + "." + dropped_text(dropped),
        protocol=f"redundant planted set (both features fully predictive), a_n = {s.a_n:g}, a_r = "
        f"{s.a_r:g}, noise {s.noise:g}; {len(a)} seeds paired; 95 % t-interval of the paired "
        "difference",
        void_reason=void,
    )


def crossover(a_values: Sequence[float], rhos: Sequence[float]) -> float:
    """The NRF amplitude where mean rho crosses 0 (linear interpolation in log a_n); nan if it does not."""
    pts = [(a, r) for a, r in zip(a_values, rhos, strict=True) if math.isfinite(r)]
    for (a0, r0), (a1, r1) in zip(pts, pts[1:], strict=False):
        if r0 < 0 <= r1:
            t = -r0 / (r1 - r0)
            return float(math.exp(math.log(a0) + t * (math.log(a1) - math.log(a0))))
    if pts and pts[0][1] >= 0:
        return -math.inf
    return math.nan


def crossover_text(x: float, lo: float, hi: float) -> str:
    if x == -math.inf:
        return f"below {lo:g}"
    if math.isnan(x):
        return f"above {hi:g}"
    return f"{x:.2f}"


def drand_verdicts(m: Measured, s: Settings) -> list[Verdict]:
    out = []
    bn = s.norms[0]
    for a in s.drand_a_n:
        key = f"drand-a{a:g}"
        acc_bn, acc_none = m.paired(key, bn, "none", "agree_acc")
        near_chance = s.chance + THRESHOLDS.chance_margin
        margin = [near_chance - v for v in acc_none]
        d, lo, hi = mean_ci(margin, proportion=False)
        n_low = sum(v <= near_chance for v in acc_none)
        n_bn = sum(v >= THRESHOLDS.follows for v in acc_bn)
        bn_failed = (
            (
                f"the {name(bn)} twin did not learn either ({pct(finite_mean(acc_bn))} < "
                f"{pct(THRESHOLDS.follows, 0)}): too short a run to tell a normalization effect"
            )
            if not finite_mean(acc_bn) >= THRESHOLDS.follows
            else None
        )
        proto = (
            f"planted D_rand (RF class independent of the label, NRF = label), a_n = {a:g}; agree view "
            f"(RF = NRF = label, the training statistics); {len(acc_bn)} seeds"
        )
        out.append(
            judge(
                f"Claim 5, without normalization a network hardly learns from planted D_rand (a_n = {a:g}; accuracy "
                f"within chance + 10 points)",
                d,
                lo,
                hi,
                f"no norm {cell(acc_none)} (within chance + 10 points in {n_low}/{len(acc_none)} seeds).",
                protocol=proto + "; t-interval of (chance + 10 points - accuracy)",
                void_reason=bn_failed,
            )
        )
        d, lo, hi = paired_ci(acc_bn, acc_none)
        out.append(
            judge(
                f"Claim 5, with {name(bn)} it learns from planted D_rand (a_n = {a:g}; more than without)",
                d,
                lo,
                hi,
                f"{name(bn)} {cell(acc_bn)} (>= 50 % in {n_bn}/{len(acc_bn)} seeds) vs no norm {cell(acc_none)}; "
                f"paired difference {difference(d, lo, hi, percent=True)}.",
                protocol=proto + "; paired by seed",
            )
        )
    return out


def conflicting_verdict(m: Measured, s: Settings) -> Verdict:
    bn = s.norms[0]
    y_bn, y_none = m.paired("conflicting", bn, "none", "acc_y")
    y1_bn, y1_none = m.paired("conflicting", bn, "none", "acc_y1")
    share_bn = [a - b for a, b in zip(y_bn, y1_bn, strict=True)]
    share_none = [a - b for a, b in zip(y_none, y1_none, strict=True)]
    d, lo, hi = paired_ci(share_bn, share_none)
    peaks = [
        max(r.get("shifted_acc", math.nan) for r in RunDir(m.dirs[("conflicting", bn, sd)]).read_metrics())
        for sd in m.seeds("conflicting", bn)
    ]
    learned = [max(a, b) for a, b in zip(y_bn + y_none, y1_bn + y1_none, strict=True)]
    void = (
        None
        if finite_mean(learned) >= THRESHOLDS.follows
        else f"the models follow neither feature (accuracy vs y and y+1 below {pct(THRESHOLDS.follows, 0)})"
    )
    return judge(
        f"Conflicting set: {name(bn)} follows the NRF more than no normalization does",
        d,
        lo,
        hi,
        f"final accuracy vs y (follows the NRF) / vs y+1 (follows the RF): {name(bn)} {cell(y_bn)} / {cell(y1_bn)} "
        f"(peak vs y+1 during training {cell(peaks)}), no norm {cell(y_none)} / {cell(y1_none)}; paired difference "
        f"of (acc y - acc y+1), {name(bn)} minus no norm, {difference(d, lo, hi, percent=True)}.",
        protocol=f"planted conflicting set (RF of class y-1, NRF and label y), a_n = {s.conflicting_a_n:g}, "
        f"evaluated on the agree view; {len(y_bn)} seeds paired",
        void_reason=void,
    )


def mnist_verdict(q: dict[str, Any]) -> Verdict:
    """Does the running-statistics collapse appear on attack-built MNIST D_rand and not on the planted one?"""
    gaps = {}
    for kind in ("planted", "attack"):
        rows = q["rows"][kind]
        n = q["n"] * len(rows)
        run_acc, batch_acc = finite_mean([r["running_acc"] for r in rows]), finite_mean([r["batch_acc"] for r in rows])
        gaps[kind] = two_proportion_ci(batch_acc, n, run_acc, n)
    (ga, la, ha), (gp, lp, hp) = gaps["attack"], gaps["planted"]
    best = {
        kind: max(
            finite_mean([r["running_acc"] for r in q["rows"][kind]]),
            finite_mean([r["batch_acc"] for r in q["rows"][kind]]),
        )
        for kind in ("planted", "attack")
    }
    void = None
    if not best["planted"] >= THRESHOLDS.follows:
        void = f"the BN model did not learn the planted MNIST D_rand ({pct(best['planted'])} at best)"
    elif not health.learned(best["attack"], MNIST_CLASSES):
        void = f"the BN model did not learn the attack-built MNIST D_rand ({pct(best['attack'])} at best)"
    se = math.sqrt(((ha - la) / (2 * 1.959964)) ** 2 + ((hp - lp) / (2 * 1.959964)) ** 2)
    d = ga - gp
    return judge(
        "MNIST D_rand: the BN running-statistics collapse comes from the attack-built data, not from D_rand itself",
        d,
        d - 1.959964 * se,
        d + 1.959964 * se,
        f"accuracy gain from batch statistics: attack-built {difference(ga, la, ha, percent=True)}, planted "
        f"{difference(gp, lp, hp, percent=True)}; difference {difference(d, d - 1.96 * se, d + 1.96 * se, percent=True)}.",
        protocol=f"BN smallcnn, {len(q['seeds'])} seed(s), {q['n']} test images each; Wald intervals of "
        "the pooled proportions (pairing of images ignored: conservative)",
        void_reason=void,
    )


def transfer_verdict(t: TransferResult, s: Settings, void: str | None = None) -> Verdict:
    bn = s.norms[0]
    d, lo, hi = paired_ci(t.per_seed["none"], t.per_seed[bn])
    return judge(
        "Claim 6, adversarial examples from sources without normalization transfer better",
        d,
        lo,
        hi,
        f"mean success on the other seeds' models: from no-norm sources {cell(t.per_seed['none'])}, from "
        f"{name(bn)} sources {cell(t.per_seed[bn])}; paired difference {difference(d, lo, hi, percent=True)}.",
        protocol=f"PGD-L2 eps {s.transfer_eps:g}, {s.pgd_steps} steps, on {s.transfer_size} agree-view images of the "
        f"operating point; success = {IN_BRIEF}; "
        f"{len(t.seeds)} source seeds paired, targets = every model of the other seeds",
        void_reason=void,
    )


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package

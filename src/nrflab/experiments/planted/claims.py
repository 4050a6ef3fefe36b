"""The planted experiment's verdicts on the paper's claims: the capability gate, BN's preference (claim 2),
planted D_rand and the conflicting set (claim 5), the MNIST diagnostic and transfer (claim 6).

Each verdict is a claim declared once in :mod:`.declarations`, judged by
:func:`nrflab.experiments.claims.judge_claim` on a comparison paired over seeds, behind the one guard
(:func:`nrflab.experiments.guard.check`) run per model on the claim's own view. The crossover (where rho
crosses 0) is in :mod:`.crossing`, the controls of claim 2 in :mod:`.controls`, the learning order (claim 4)
in :mod:`.order`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from nrflab.core.fmt import cell, pct
from nrflab.core.stats import MIN_SEEDS, Verdict, finite_mean
from nrflab.experiments.claims import judge_claim
from nrflab.experiments.evidence import compare_scalars
from nrflab.experiments.guard import Guard, check
from nrflab.experiments.planted import declarations as claims
from nrflab.experiments.planted.declarations import AGREE_VIEW
from nrflab.experiments.planted.measurement import CLASSES, Measured
from nrflab.experiments.planted.mnist import MNIST_VIEW, MnistQuestion
from nrflab.experiments.planted.settings import Settings, swap_cost
from nrflab.experiments.planted.text import name
from nrflab.experiments.planted.transferability import TransferResult
from nrflab.experiments.transfer_claims import crossed_comparison, seed_target_table
from nrflab.measure import health
from nrflab.measure.health import THRESHOLDS, Health
from nrflab.measure.transfer_rate import IN_BRIEF

Capability = dict[str, dict[str, list[float]]]


def names(norm: str) -> dict[str, str]:
    """The ``{with}``/``{without}`` of a claim's label."""
    return {"with": name(norm), "without": "no normalization"}


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


def capability_void(cap: Capability, norms: Sequence[str], s: Settings) -> str | None:
    """The reason a preference verdict between ``norms`` is void, or None."""
    failed = [
        f"{name(n)} learns the {f.upper()} alone to a median {pct(statistics.median(cap[n][f]))}"
        for n in norms
        for f in ("rf", "nrf")
        if cap.get(n, {}).get(f) and not capable(cap[n][f], s)
    ]
    missing = [name(n) for n in norms if not cap.get(n, {}).get("rf") or not cap.get(n, {}).get("nrf")]
    if missing:
        failed.append(f"no capability control for {', '.join(missing)}")
    return ("capability control failed: " + "; ".join(failed)) if failed else None


def gated(guard: Guard, reason: str | None) -> Guard:
    """``guard`` with an extra void ``reason`` (a failed capability control, a claim out of scope)."""
    if not reason:
        return guard
    return Guard(guard.checks, "; ".join(r for r in (reason, guard.void) if r), guard.fails)


def kept_seeds(m: Measured, key: str, norms: Sequence[str], s: Settings) -> tuple[list[int], list[int]]:
    """The seeds every norm of ``key`` has where each model reached the preset's ``learned_min`` agree
    accuracy (compared), and the others (left out: reliance of a model that did not learn says nothing)."""
    common = m.common_seeds(key, norms)
    ok = m.learned_seeds(key, norms, s.learned_min, common)
    return ok, [sd for sd in common if sd not in ok]


def reliance_guard(
    m: Measured, key: str, norms: Sequence[str], seeds: Sequence[int], dropped: Sequence[int], **view: str
) -> Guard:
    """The guard over the compared models of ``key``; when the learned-seed filter left fewer than
    :data:`~nrflab.core.stats.MIN_SEEDS` seeds, over every model, so that models that did not train make
    the claim void (with their reason) rather than merely untested."""
    judged = list(seeds) if len(seeds) >= MIN_SEEDS else sorted({*seeds, *dropped})
    return check(learners=m.healths(key, norms, judged, **view))


def dropped_text(dropped: Sequence[int], s: Settings) -> str:
    if not dropped:
        return ""
    return (
        f" Seeds {', '.join(map(str, dropped))} left out (a model below the preset's learned threshold, "
        f"{pct(s.learned_min, 0)} agree accuracy)."
    )


def preference_verdict(m: Measured, s: Settings, norm: str, cap: Capability, op_key: str) -> Verdict:
    """Claim 2 on ground truth: rho(norm) - rho(none) at the operating point, paired by seed."""
    seeds, dropped = kept_seeds(m, op_key, (norm, "none"), s)
    a, b = m.series(op_key, norm, "rho", seeds), m.series(op_key, "none", "rho", seeds)
    comp = compare_scalars(a, b, seeds=seeds, note="both models of a seed on the same swapped test images")
    context = [
        f"{label} {name(norm)} {cell(m.series(op_key, norm, metric, seeds), percent=percent)} vs no norm "
        f"{cell(m.series(op_key, 'none', metric, seeds), percent=percent)}"
        for metric, label, percent in [
            *((f"robust_{e:g}", f"robust accuracy PGD-L2 {e:g}", True) for e in s.eval_eps),
            ("ligs", "LIGS", False),
        ]
    ]
    evidence = (
        f"rho = F_N - F_R on swapped images: {name(norm)} {cell(a, percent=False, signed=True)}, no norm "
        f"{cell(b, percent=False, signed=True)}. Context, not evidence for the claim (eps "
        f"{', '.join(f'{e:g}' for e in s.eval_eps)} vs swap costs NRF {swap_cost(s.a_n):.2f}, RF "
        f"{swap_cost(s.a_r):.2f}): " + "; ".join(context) + "." + dropped_text(dropped, s)
    )
    guard = reliance_guard(m, op_key, (norm, "none"), seeds, dropped, view=AGREE_VIEW)
    return judge_claim(
        claims.PREFERENCE,
        comp,
        evidence,
        guard=gated(guard, capability_void(cap, (norm, "none"), s)),
        seeds=seeds,
        protocol=f"redundant planted set (both features fully predictive), a_n = {s.a_n:g} (swap cost "
        f"{swap_cost(s.a_n):.2f}), a_r = {s.a_r:g}, noise {s.noise:g}; rho in [-1, 1], difference in [-2, 2]",
        **names(norm),
    )


def drand_scope(a: float, s: Settings) -> str | None:
    """Why planted D_rand at NRF norm ``a`` is out of the claim's scope, or None: at or above the operating
    point the capability gate requires the no-norm model to learn the NRF alone, so learning D_rand there
    is implied by the gate (planted D_rand is that task plus an uninformative RF)."""
    if a < s.a_n:
        return None
    return (
        f"out of scope: at this amplitude (a_n = {a:g} >= the operating point {s.a_n:g}) the NRF is learnable alone "
        "without normalization (capability control), so it is not an NRF in the claim's sense"
    )


def drand_verdicts(m: Measured, s: Settings) -> list[Verdict]:
    """Claim 5 on planted D_rand, per amplitude: no norm stays near chance; the normalized model learns more."""
    out = []
    bn = s.norms[0]
    near_chance = 1 / CLASSES + THRESHOLDS.chance_margin
    for a in s.drand_a_n:
        key = f"drand-a{a:g}"
        seeds = m.common_seeds(key, (bn, "none"))
        acc_bn, acc_none = m.series(key, bn, "agree_acc", seeds), m.series(key, "none", "agree_acc", seeds)
        bn_h, none_h = m.healths(key, (bn,), seeds, view=AGREE_VIEW), m.healths(key, ("none",), seeds, view=AGREE_VIEW)
        proto = f"planted D_rand (RF class independent of the label, NRF = label), a_n = {a:g}; agree test view"
        n_low = sum(v <= near_chance for v in acc_none)
        out.append(
            judge_claim(
                claims.DRAND_WITHOUT,
                compare_scalars([near_chance - v for v in acc_none], [0.0] * len(seeds), seeds=seeds),
                f"no norm {cell(acc_none)} (within chance + 10 points in {n_low}/{len(seeds)} seeds); positive "
                f"control {name(bn)} {cell(acc_bn)}.",
                guard=gated(check(learners=bn_h, others=none_h), drand_scope(a, s)),
                seeds=seeds,
                protocol=proto + "; one-sample t over seeds of (chance + 10 points - accuracy)",
                **names(bn),
            )
        )
        out.append(
            judge_claim(
                claims.DRAND_WITH,
                compare_scalars(acc_bn, acc_none, seeds=seeds),
                f"{name(bn)} {cell(acc_bn)} vs no norm {cell(acc_none)}.",
                guard=gated(check(subjects=bn_h, others=none_h), drand_scope(a, s)),
                seeds=seeds,
                protocol=proto,
                **names(bn),
            )
        )
    return out


CONFLICTING_VIEW = "agree view of the conflicting set, the better of acc vs y and vs y+1, running statistics"


def conflicting_verdict(m: Measured, s: Settings, peaks: Sequence[float] = ()) -> Verdict:
    """Claim 5 on the conflicting set: (acc y - acc y+1) with BN minus without, an index in [-2, 2]."""
    bn = s.norms[0]
    seeds = m.common_seeds("conflicting", (bn, "none"))
    y_bn, y_none = m.series("conflicting", bn, "acc_y", seeds), m.series("conflicting", "none", "acc_y", seeds)
    y1_bn, y1_none = m.series("conflicting", bn, "acc_y1", seeds), m.series("conflicting", "none", "acc_y1", seeds)
    share_bn = [a - b for a, b in zip(y_bn, y1_bn, strict=True)]
    share_none = [a - b for a, b in zip(y_none, y1_none, strict=True)]
    guard = check(learners=m.healths("conflicting", (bn, "none"), seeds, view=CONFLICTING_VIEW, accuracy="conflicting"))
    peak = f" (peak vs y+1 during training {cell(list(peaks))})" if peaks else ""
    return judge_claim(
        claims.CONFLICTING,
        compare_scalars(share_bn, share_none, seeds=seeds),
        f"final accuracy vs y (follows the NRF) / vs y+1 (follows the RF): {name(bn)} {cell(y_bn)} / {cell(y1_bn)}"
        f"{peak}, no norm {cell(y_none)} / {cell(y1_none)}; index acc y - acc y+1: {name(bn)} "
        f"{cell(share_bn, percent=False, signed=True)}, no norm {cell(share_none, percent=False, signed=True)}.",
        guard=guard,
        seeds=seeds,
        protocol=f"planted conflicting set (RF of class y-1, NRF and label y), a_n = {s.conflicting_a_n:g}, "
        "evaluated on the agree view",
        **names(bn),
    )


def mnist_health(kind: str, seed: int, row: Mapping[str, float]) -> Health:
    """The guard's record of one MNIST-diagnostic model under its better BN-statistics protocol."""
    stats = "batch" if row["batch_acc"] >= row["running_acc"] else "running"
    return Health(
        f"BN on {kind} MNIST D_rand seed {seed}",
        CLASSES,
        row.get("train_acc", math.nan),
        row[f"{stats}_acc"],
        -1,
        row[f"{stats}_top"],
        all(math.isfinite(row.get(k, math.nan)) for k in ("running_acc", "batch_acc", "train_acc")),
        "batch-stats" if stats == "batch" else "paper",
        f"the planted MNIST agree view (both arms), {stats} statistics (the better)",
    )


def mnist_verdict(q: MnistQuestion) -> Verdict:
    """Diagnostic: the batch-statistics gain of BN on attack-built MNIST D_rand minus that on the planted one,
    paired by seed (family "diagnostics": not a paper claim)."""
    seeds = list(q.seeds)
    gain = {k: [r["batch_acc"] - r["running_acc"] for r in q.rows[k]] for k in ("attack", "planted")}
    models = [mnist_health(k, sd, r) for k in ("planted", "attack") for sd, r in zip(seeds, q.rows[k], strict=True)]
    return judge_claim(
        claims.MNIST,
        compare_scalars(gain["attack"], gain["planted"], seeds=seeds),
        f"accuracy gain from batch statistics: attack-built {cell(gain['attack'], signed=True)}, planted "
        f"{cell(gain['planted'], signed=True)}.",
        guard=check(learners=models),
        seeds=seeds,
        protocol=f"BN smallcnn; {MNIST_VIEW}; {q.n} test images; one built set",
    )


def transfer_verdict(t: TransferResult, m: Measured, s: Settings, op_key: str) -> Verdict:
    """Claim 6 with ground truth: transfer success from no-norm sources minus from BN sources, crossed over
    source seeds and the shared targets (:func:`nrflab.experiments.transfer_claims.crossed_interval`: every
    source of a seed is attacked onto the same models of the other seeds)."""
    bn = s.norms[0]
    seeds = list(t.seeds)
    models = m.healths(op_key, (bn, "none"), seeds, view=AGREE_VIEW)
    rows = [
        (sd, tuple(t.cells.get("none", {}).get(sd, {}).items()), tuple(t.cells.get(bn, {}).get(sd, {}).items()), a, b)
        for sd, a, b in zip(seeds, t.per_seed.get("none", []), t.per_seed.get(bn, []), strict=False)
    ]
    table = seed_target_table(rows)
    comparison, _ = crossed_comparison(
        table, a=finite_mean(t.per_seed.get("none", [])), b=finite_mean(t.per_seed.get(bn, []))
    )
    return judge_claim(
        claims.TRANSFER,
        comparison,
        f"mean success on the other seeds' models: from no-norm sources {cell(t.per_seed.get('none', []))}, from "
        f"{name(bn)} sources {cell(t.per_seed.get(bn, []))}.",
        guard=check(learners=models),
        seeds=sorted(table),
        protocol=f"PGD-L2 eps {s.transfer_eps:g}, {s.pgd_steps} steps, on {s.transfer_size} agree-view images of "
        f"the operating point; success = {IN_BRIEF}; targets = every model of the other seeds, shared by the "
        f"sources (interval crossed over seeds and targets). The eps exceeds both swap costs (NRF "
        f"{swap_cost(s.a_n):.2f}, RF {swap_cost(s.a_r):.2f}), so a source may move either feature; the band "
        "energies say which one it moved",
        **names(bn),
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

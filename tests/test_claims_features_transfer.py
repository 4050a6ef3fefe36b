"""The claims of the features and transfer experiments on constructed outcomes (no training): each sign,
each guard failure, fewer than three seeds, a BN/no-BN swap, and the transfer interval's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t

from nrflab.core.stats import one_sample_test
from nrflab.experiments.evidence import Outcomes
from nrflab.experiments.features_claims import (
    Arm,
    Names,
    conflicting_nrf_more,
    conflicting_rf,
    conflicting_turn,
    d_rand_hardly,
    d_rand_more,
)
from nrflab.experiments.guard import check
from nrflab.experiments.transfer_claims import (
    NO_BN,
    EarlyVsFinal,
    SourceTwins,
    crossed_interval,
    early_stop_claim,
    no_bn_claim,
)
from nrflab.measure.health import Health

C, N = 10, 200
SEEDS = [0, 1, 2, 3, 4]
JITTER = (0.0, 0.01, -0.01, 0.02, -0.02)
NAMES = Names()


def outcomes(acc_y: float, acc_y1: float = 0.0, *, collapse: bool = False) -> Outcomes:
    """``N`` images: ``acc_y`` of them predicted as y, ``acc_y1`` as y+1, the rest spread over classes."""
    labels = torch.arange(N) % C
    pred = (labels + 5) % C
    k, k1 = round(acc_y * N), round(acc_y1 * N)
    pred[:k] = labels[:k]
    pred[k : k + k1] = (labels[k : k + k1] + 1) % C
    if collapse:
        pred = torch.zeros(N, dtype=torch.long)
    return Outcomes("paper", labels, pred)


def health(name: str, *, train_acc: float = 0.95, finite: bool = True) -> Health:
    return Health(name, C, train_acc, math.nan, 0, 0.1, finite)


def arm(
    name: str,
    acc_y: float,
    acc_y1: float = 0.0,
    *,
    seeds: int = 5,
    jitter: float = 1.0,
    train_acc: float = 0.95,
    finite: bool = True,
    collapse: bool = False,
) -> Arm:
    """One twin over ``seeds`` seeds, accuracies jittered per seed (``jitter`` scales the jitter)."""
    return Arm(
        [outcomes(acc_y + jitter * JITTER[i], acc_y1, collapse=collapse) for i in range(seeds)],
        [health(f"{name} (run {i + 1})", train_acc=train_acc, finite=finite) for i in range(seeds)],
    )


def controls(*, train_acc: float = 0.95, acc: float = 0.9, finite: bool = True) -> list[Health]:
    return [Health(f"no-BN on D_R (run {i + 1})", C, train_acc, acc, 0, 0.1, finite) for i in range(len(SEEDS))]


# ---------------------------------------------------------------------------------------------
# Claim 5: without BN hardly; with BN more


def test_d_rand_hardly_each_sign_and_guard():
    assert d_rand_hardly(arm("none", 0.12), controls(), seeds=SEEDS, names=NAMES).outcome == "agrees"
    assert d_rand_hardly(arm("none", 0.40), controls(), seeds=SEEDS, names=NAMES).outcome == "disagrees"
    v = d_rand_hardly(arm("none", 0.20, jitter=2.0), controls(), seeds=SEEDS, names=NAMES)
    assert v.outcome == "inconclusive" and v.low < 0 < v.high
    # The estimate: chance + 10 points minus the mean accuracy.
    assert d_rand_hardly(arm("none", 0.12), controls(), seeds=SEEDS, names=NAMES).difference == pytest.approx(0.08)
    # A control that did not train, or diverged: void. A no-BN twin at chance is the claim, not a guard failure.
    assert d_rand_hardly(arm("none", 0.12), controls(train_acc=0.1, acc=0.1), seeds=SEEDS, names=NAMES).outcome == (
        "void"
    )
    assert d_rand_hardly(arm("none", 0.12), controls(finite=False), seeds=SEEDS, names=NAMES).outcome == "void"
    assert d_rand_hardly(arm("none", 0.12, finite=False), controls(), seeds=SEEDS, names=NAMES).outcome == "void"
    assert d_rand_hardly(arm("none", 0.1, collapse=True), controls(), seeds=SEEDS, names=NAMES).outcome == "agrees"
    few = d_rand_hardly(arm("none", 0.12, seeds=2), controls()[:2], seeds=SEEDS[:2], names=NAMES)
    assert few.outcome == "not tested"
    assert few.claim_id == "features.d_rand_hardly" and few.family == "claim 5: feature datasets"
    assert few.unit == "points" and few.experiment == "features"


def test_d_rand_more_each_sign_and_guard():
    bn, none = arm("BN", 0.6), arm("none", 0.3)
    v = d_rand_more(bn, none, controls(), seeds=SEEDS, names=NAMES)
    assert v.outcome == "agrees" and v.difference == pytest.approx(0.3) and math.isfinite(v.p)
    assert "BN with running statistics" in v.claim
    assert d_rand_more(arm("BN", 0.3), arm("none", 0.6), controls(), seeds=SEEDS, names=NAMES).outcome == "disagrees"
    flat = d_rand_more(arm("BN", 0.4), arm("none", 0.4, jitter=-1.0), controls(), seeds=SEEDS, names=NAMES)
    assert flat.outcome == "inconclusive"
    # Chance-level BN that did not train: void; BN that trained but collapses under the protocol: fails under it.
    untrained = arm("BN", 0.1, train_acc=0.1)
    assert d_rand_more(untrained, none, controls(), seeds=SEEDS, names=NAMES).outcome == "void"
    collapsed = d_rand_more(arm("BN", 0.1, collapse=True), none, controls(), seeds=SEEDS, names=NAMES)
    assert collapsed.outcome == "fails under protocol" and "though it trained" in collapsed.reason
    # Chance-level no-BN is what the claim expects: judged (agrees).
    assert d_rand_more(bn, arm("none", 0.1, train_acc=0.1), controls(), seeds=SEEDS, names=NAMES).outcome == "agrees"
    assert d_rand_more(bn, arm("none", 0.3, finite=False), controls(), seeds=SEEDS, names=NAMES).outcome == "void"
    assert d_rand_more(arm("BN", 0.6, finite=False), none, controls(), seeds=SEEDS, names=NAMES).outcome == "void"
    assert d_rand_more(bn, none, controls(train_acc=0.1, acc=0.1), seeds=SEEDS, names=NAMES).outcome == "void"
    two = d_rand_more(arm("BN", 0.6, seeds=2), arm("none", 0.3, seeds=2), controls()[:2], seeds=[0, 1], names=NAMES)
    assert two.outcome == "not tested"
    # Mutation: BN and no-BN swapped, the directional verdict flips.
    assert d_rand_more(none, bn, controls(), seeds=SEEDS, names=NAMES).outcome == "disagrees"
    batch = Names(protocol="the batch-statistics protocol", stats="BN with test-batch statistics")
    assert "BN with test-batch statistics" in d_rand_more(bn, none, controls(), seeds=SEEDS, names=batch).claim


# ---------------------------------------------------------------------------------------------
# The conflicting set


def test_conflicting_rf_each_sign_and_guard():
    assert conflicting_rf(arm("none", 0.05, 0.6), seeds=SEEDS, names=NAMES).outcome == "agrees"
    assert conflicting_rf(arm("none", 0.6, 0.05), seeds=SEEDS, names=NAMES).outcome == "disagrees"
    assert conflicting_rf(arm("none", 0.3, 0.3, jitter=2.0), seeds=SEEDS, names=NAMES).outcome == "inconclusive"
    # Its view is the better of the two readings: following y+1 alone is not "at chance".
    v = conflicting_rf(arm("none", 0.02, 0.6), seeds=SEEDS, names=NAMES)
    assert v.outcome == "agrees" and all(c.passed for c in v.guard)
    assert conflicting_rf(arm("none", 0.05, 0.05, train_acc=0.1), seeds=SEEDS, names=NAMES).outcome == "void"
    assert conflicting_rf(arm("none", 0.05, 0.05), seeds=SEEDS, names=NAMES).outcome == "void"  # guesses
    assert conflicting_rf(arm("none", 0.1, collapse=True), seeds=SEEDS, names=NAMES).outcome == "void"
    assert conflicting_rf(arm("none", 0.05, 0.6, finite=False), seeds=SEEDS, names=NAMES).outcome == "void"
    assert conflicting_rf(arm("none", 0.05, 0.6, seeds=2), seeds=[0, 1], names=NAMES).outcome == "not tested"


def test_conflicting_nrf_more_each_sign_guard_and_swap():
    bn, none = arm("BN", 0.5, 0.2), arm("none", 0.05, 0.6)
    v = conflicting_nrf_more(bn, none, seeds=SEEDS, names=NAMES)
    # Difference of differences: (0.5 - 0.2) - (0.05 - 0.6) = 0.85.
    assert v.outcome == "agrees" and v.difference == pytest.approx(0.85)
    assert "BN" in v.evidence and "/ 20.0 %" in v.evidence  # BN's accuracy vs y+1 is reported
    assert conflicting_nrf_more(none, bn, seeds=SEEDS, names=NAMES).outcome == "disagrees"  # mutation: flips
    same = conflicting_nrf_more(arm("BN", 0.3, 0.3), arm("none", 0.3, 0.3, jitter=-1.0), seeds=SEEDS, names=NAMES)
    assert same.outcome == "inconclusive"
    # A BN twin that mostly follows y+1 still follows y *more than* no-BN (the claim is relative); its evidence
    # prints BN's accuracy vs y+1 (50 %) above vs y (15 %), so no reader takes it for "BN follows y".
    follows_rf = conflicting_nrf_more(arm("BN", 0.15, 0.5, jitter=0.0), none, seeds=SEEDS, names=NAMES)
    assert follows_rf.difference == pytest.approx(0.2) and "BN 15.0 % / 50.0 %" in follows_rf.evidence
    collapsed = conflicting_nrf_more(arm("BN", 0.1, collapse=True), none, seeds=SEEDS, names=NAMES)
    assert collapsed.outcome == "fails under protocol"
    assert conflicting_nrf_more(arm("BN", 0.05, 0.05, train_acc=0.1), none, seeds=SEEDS, names=NAMES).outcome == (
        "void"
    )
    assert conflicting_nrf_more(bn, arm("none", 0.05, 0.05, train_acc=0.1), seeds=SEEDS, names=NAMES).outcome == (
        "void"
    )
    assert conflicting_nrf_more(bn, arm("none", 0.05, 0.6, finite=False), seeds=SEEDS, names=NAMES).outcome == "void"
    two = conflicting_nrf_more(arm("BN", 0.5, 0.2, seeds=2), arm("none", 0.05, 0.6, seeds=2), seeds=[0, 1], names=NAMES)
    assert two.outcome == "not tested"


def test_conflicting_turn_each_sign_and_guard():
    bn = arm("BN", 0.5, 0.2)
    early, final = [0.5 + j for j in JITTER], [0.3] * 5

    def turn(e, f, a=bn, seeds=SEEDS):
        return conflicting_turn(e, f, a, epoch=2, last=8, seeds=seeds, names=NAMES)

    v = turn(early, final)
    assert v.outcome == "agrees" and "epoch 2" in v.claim and v.difference == pytest.approx(0.2)
    assert turn(final, early).outcome == "disagrees"
    assert turn([0.3 + 2 * j for j in JITTER], final).outcome == "inconclusive"
    assert turn(early, final, arm("BN", 0.1, collapse=True)).outcome == "fails under protocol"
    assert turn(early, final, arm("BN", 0.05, 0.05, train_acc=0.1)).outcome == "void"
    assert turn(early, final, arm("BN", 0.5, 0.2, finite=False)).outcome == "void"
    assert turn(early[:2], final[:2], arm("BN", 0.5, 0.2, seeds=2), [0, 1]).outcome == "not tested"


# ---------------------------------------------------------------------------------------------
# Transfer (claim 6)


def source_health(name: str, *, acc: float = 0.95, train_acc: float = 0.95, share: float = 0.1, finite: bool = True):
    return Health(name, C, train_acc, acc, 0, share, finite)


def zoo_guard(bn_acc: float = 0.95, none_acc: float = 0.95, **bad: object):
    bn = [source_health(f"bn seed {s}", acc=bn_acc) for s in SEEDS]
    none = [source_health(f"none seed {s}", acc=none_acc) for s in SEEDS]
    if bad:
        bn[0] = source_health("bn seed 0", **bad)  # type: ignore[arg-type]
    return check(learners=[*bn, *none], comparable=[(bn, none)])


def twins(none_gain: float, seeds=SEEDS, jitter: float = 1.0) -> list[SourceTwins]:
    return [
        SourceTwins(arch, sd, 0.4 + 0.05 * a, 0.4 + 0.05 * a + none_gain + jitter * JITTER[i])
        for a, arch in enumerate(("smallcnn", "vgg11"))
        for i, sd in enumerate(seeds)
    ]


def test_no_bn_claim_each_sign_guard_and_swap():
    v = no_bn_claim(twins(0.1), guard=zoo_guard())
    assert v.outcome == "agrees" and v.n_seeds == 5 and v.claim_id == "transfer.no_bn"
    assert v.family == "claim 6: transferability" and v.experiment == "transfer" and math.isfinite(v.p)
    assert no_bn_claim(twins(-0.1), guard=zoo_guard()).outcome == "disagrees"
    assert no_bn_claim(twins(0.0, jitter=3.0), guard=zoo_guard()).outcome == "inconclusive"
    swapped = [SourceTwins(t.arch, t.seed, t.none, t.bn) for t in twins(0.1)]
    assert no_bn_claim(swapped, guard=zoo_guard()).outcome == "disagrees"  # mutation: flips
    assert no_bn_claim(twins(0.1), guard=zoo_guard(acc=0.1, train_acc=0.1)).outcome == "void"  # BN at chance
    none_chance = check(
        learners=[source_health("none seed 0", acc=0.1, train_acc=0.1)] + [source_health(f"bn seed {s}") for s in SEEDS]
    )
    assert no_bn_claim(twins(0.1), guard=none_chance).outcome == "void"  # no-BN at chance
    assert no_bn_claim(twins(0.1), guard=zoo_guard(finite=False)).outcome == "void"  # diverged
    assert no_bn_claim(twins(0.1), guard=zoo_guard(share=0.95)).outcome == "void"  # collapsed
    unequal = no_bn_claim(twins(0.1), guard=zoo_guard(bn_acc=0.95, none_acc=0.6))
    assert unequal.outcome == "void" and "usefulness" in unequal.reason
    assert no_bn_claim(twins(0.1, seeds=[0, 1]), guard=zoo_guard()).outcome == "not tested"


def test_no_bn_interval_is_the_paired_t_over_seeds_of_arch_averaged_sources():
    pairs = twins(0.05, jitter=2.0)
    v = no_bn_claim(pairs, guard=zoo_guard())
    d = [sum(t.none - t.bn for t in pairs if t.seed == sd) / 2 for sd in SEEDS]
    n, m = len(d), sum(d) / len(d)
    half = student_t.ppf(0.975, n - 1) * math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1)) / math.sqrt(n)
    assert v.difference == pytest.approx(m) and v.low == pytest.approx(m - half) and v.high == pytest.approx(m + half)
    assert v.n_seeds == 5


def early_rows(gain: float, seeds=SEEDS, jitter: float = 1.0, epoch: int = 2) -> list[EarlyVsFinal]:
    return [
        EarlyVsFinal(f"{g}_s{sd}", g, epoch, 4, 0.5 + gain + jitter * JITTER[i] + 0.01 * k, 0.5 + 0.01 * k, sd)
        for k, g in enumerate(("smallcnn/bn", "smallcnn/none", "vgg11/bn"))
        for i, sd in enumerate(seeds)
    ]


def early_guard(**bad: object):
    finals = [source_health(f"final {s}") for s in SEEDS]
    early = [source_health(f"early {s}") for s in SEEDS]
    if bad:
        early[0] = source_health("early 0", **bad)  # type: ignore[arg-type]
    return check(learners=[*finals, *early])


def test_early_stop_claim_each_sign_guard_and_interval():
    v = early_stop_claim(early_rows(0.05), guard=early_guard(), early="epoch 2")
    assert v.outcome == "agrees" and v.claim_id == "transfer.early_stop" and "(epoch 2 vs epoch 4)" in v.claim
    assert early_stop_claim(early_rows(-0.05), guard=early_guard(), early="epoch 2").outcome == "disagrees"
    assert early_stop_claim(early_rows(0.0, jitter=3.0), guard=early_guard(), early="epoch 2").outcome == "inconclusive"
    # The early checkpoints' health: at chance (untrained), diverged, collapsed -> void.
    assert (
        early_stop_claim(early_rows(0.05), guard=early_guard(acc=0.1, train_acc=0.1), early="epoch 2").outcome == "void"
    )
    assert early_stop_claim(early_rows(0.05), guard=early_guard(finite=False), early="epoch 2").outcome == "void"
    assert early_stop_claim(early_rows(0.05), guard=early_guard(share=0.95), early="epoch 2").outcome == "void"
    assert (
        early_stop_claim(early_rows(0.05, seeds=[0, 1]), guard=early_guard(), early="epoch 2").outcome == "not tested"
    )
    # A run whose early epoch is its last is left out; the runs of a seed are averaged, then paired by seed.
    rows = early_rows(0.03, jitter=2.0)
    v = early_stop_claim([*rows, EarlyVsFinal("x", "g", 4, 4, 0.9, 0.1, 0)], guard=early_guard(), early="epoch 2")
    d = [sum(r.gain for r in rows if r.seed == sd) / 3 for sd in SEEDS]
    n, m = len(d), sum(d) / len(d)
    half = student_t.ppf(0.975, n - 1) * math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1)) / math.sqrt(n)
    assert v.difference == pytest.approx(m) and v.low == pytest.approx(m - half) and v.high == pytest.approx(m + half)
    swapped = [EarlyVsFinal(r.run, r.group, r.epoch, r.final_epoch, r.final, r.early, r.seed) for r in early_rows(0.05)]
    assert early_stop_claim(swapped, guard=early_guard(), early="epoch 2").outcome == "disagrees"


# --- the crossed seed x target interval of the transfer claims -------------------------------------------------

TARGETS = ("t0", "t1", "t2", "t3")


def test_crossed_interval_with_identical_targets_is_the_paired_t_over_seeds():
    d = [0.05 + 0.02 * j for j in JITTER]
    table = {sd: {k: d[i] for k in TARGETS} for i, sd in enumerate(SEEDS)}
    c = crossed_interval(table)
    m, lo, hi, p, n = one_sample_test(d)
    assert (c.n_seeds, c.n_targets, c.missing, c.dof) == (5, 4, 0, 4.0)
    assert c.difference == pytest.approx(m) and c.low == pytest.approx(lo) and c.high == pytest.approx(hi)
    assert c.p == pytest.approx(p)


def test_crossed_interval_widens_when_target_effects_vary_and_matches_the_anova_formula():
    d = [0.05 + 0.02 * j for j in JITTER]
    effects = (-0.06, 0.01, 0.02, 0.03)  # sum zero: same grand mean
    noise = [[0.003 * ((3 * i + 5 * k) % 4 - 1.5) for k in range(4)] for i in range(5)]
    table = {sd: {t: d[i] + effects[k] + noise[i][k] for k, t in enumerate(TARGETS)} for i, sd in enumerate(SEEDS)}
    c = crossed_interval(table)
    base = crossed_interval({sd: {k: d[i] for k in TARGETS} for i, sd in enumerate(SEEDS)})
    assert c.difference == pytest.approx(base.difference)
    assert c.high - c.low > 1.5 * (base.high - base.low) and c.p > base.p
    x = np.array([[table[sd][t] for t in TARGETS] for sd in SEEDS])
    s, t = x.shape
    g, r, k = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_a, ms_b = t * ((r - g) ** 2).sum() / (s - 1), s * ((k - g) ** 2).sum() / (t - 1)
    ms_e = ((x - r[:, None] - k[None, :] + g) ** 2).sum() / ((s - 1) * (t - 1))
    var = (ms_a + ms_b - ms_e) / (s * t)
    dof = (ms_a + ms_b - ms_e) ** 2 / (ms_a**2 / (s - 1) + ms_b**2 / (t - 1) + ms_e**2 / ((s - 1) * (t - 1)))
    half = student_t.ppf(0.975, dof) * math.sqrt(var)
    assert c.dof == pytest.approx(dof) and c.low == pytest.approx(g - half) and c.high == pytest.approx(g + half)
    assert c.p == pytest.approx(2 * student_t.sf(abs(g) / math.sqrt(var), dof))


def test_crossed_interval_fills_self_cells_of_an_additive_table_exactly():
    d = [0.05 + 0.02 * j for j in JITTER]
    effects = (-0.06, 0.01, 0.02, 0.03)
    full = {sd: {t: d[i] + effects[k] for k, t in enumerate(TARGETS)} for i, sd in enumerate(SEEDS)}
    holed = {sd: {t: v for t, v in row.items() if (sd, t) not in {(0, "t0"), (3, "t2")}} for sd, row in full.items()}
    a, b = crossed_interval(full), crossed_interval(holed)
    assert b.missing == 2 and a.missing == 0
    assert (
        b.difference == pytest.approx(a.difference)
        and b.low == pytest.approx(a.low)
        and b.high == pytest.approx(a.high)
    )


def target_twins(gain: float, spread: float) -> list[SourceTwins]:
    """Twins with per-target values: the no-BN gain is ``gain`` on average, ``gain ± spread`` across targets."""
    out = []
    for a, arch in enumerate(("smallcnn", "vgg11")):
        for i, sd in enumerate(SEEDS):
            base = 0.4 + 0.05 * a
            bn_on = tuple((t, base) for t in TARGETS)
            none_on = tuple((t, base + gain + 0.01 * JITTER[i] + spread * (1.5 - k)) for k, t in enumerate(TARGETS))
            mean = sum(v for _, v in none_on) / len(none_on)
            out.append(SourceTwins(arch, sd, base, mean, bn_on=bn_on, none_on=none_on))
    return out


def test_no_bn_claim_respects_the_shared_targets():
    """The same per-seed gains agree when the targets agree, and are inconclusive when the targets disagree."""
    agree = no_bn_claim(target_twins(0.05, 0.0), guard=zoo_guard())
    assert agree.outcome == "agrees" and agree.n_seeds == 5 and "crossed over 5 seeds" in agree.method
    assert "4 shared targets" in agree.method and "crossed" in NO_BN.protocol
    mean_only = no_bn_claim(
        [SourceTwins(t.arch, t.seed, t.bn, t.none) for t in target_twins(0.05, 0.0)], guard=zoo_guard()
    )
    assert agree.low == pytest.approx(mean_only.low) and agree.high == pytest.approx(mean_only.high)
    spread = no_bn_claim(target_twins(0.05, 0.06), guard=zoo_guard())
    assert spread.difference == pytest.approx(agree.difference) and spread.outcome == "inconclusive"


def test_early_stop_claim_uses_the_crossed_table():
    rows = [
        EarlyVsFinal(
            r.run,
            r.group,
            r.epoch,
            r.final_epoch,
            r.early,
            r.final,
            r.seed,
            early_on=tuple((t, r.early + 0.08 * (1.5 - k)) for k, t in enumerate(TARGETS)),
            final_on=tuple((t, r.final) for t in TARGETS),
        )
        for r in early_rows(0.05)
    ]
    flat = early_stop_claim(early_rows(0.05), guard=early_guard(), early="epoch 2")
    crossed = early_stop_claim(rows, guard=early_guard(), early="epoch 2")
    assert crossed.difference == pytest.approx(flat.difference) and crossed.outcome == "inconclusive"
    assert flat.outcome == "agrees" and crossed.high - crossed.low > flat.high - flat.low

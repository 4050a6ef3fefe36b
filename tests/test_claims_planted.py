"""Every planted verdict function on constructed per-seed numbers (no training): each sign, each guard
failure with its label, fewer than three seeds, and the mutation test (swap BN and no norm: every
directional verdict flips or becomes inconclusive)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from nrflab.experiments.planted.claims import (
    conflicting_verdict,
    drand_verdicts,
    mnist_verdict,
    preference_verdict,
    transfer_verdict,
)
from nrflab.experiments.planted.controls import control_reading, control_verdicts
from nrflab.experiments.planted.crossing import crossing, crossover_verdict
from nrflab.experiments.planted.measurement import Measured
from nrflab.experiments.planted.mnist import MnistQuestion, mnist_spec
from nrflab.experiments.planted.order import order_verdicts
from nrflab.experiments.planted.settings import FULL, QUICK
from nrflab.experiments.planted.transferability import TransferResult

S = FULL
SEEDS = [0, 1, 2, 3, 4]
JITTER = [0.0, 0.02, -0.01, 0.03, -0.02]
OP = f"sweep-a{S.a_n:g}"
FLIP = {"agrees": "disagrees", "disagrees": "agrees", "inconclusive": "inconclusive"}


def row(acc: float = 0.95, rho: float = 0.0, **kw: float) -> dict[str, float]:
    """One model's measured row: learned, finite, not collapsed unless told otherwise."""
    base = {
        "agree_acc": acc,
        "rho": rho,
        "f_r": (1 - rho) / 2,
        "f_n": (1 + rho) / 2,
        "rf_suff_acc": 0.97,
        "nrf_suff_acc": 0.97,
        "train_acc": max(acc, 0.1),
        "finite": 1.0,
        "agree_top": 0.12,
        "agree_top_class": 0.0,
        "ligs": 0.5,
        "robust_0.25": 0.5,
        "robust_0.5": 0.1,
    }
    return {**base, **kw}


class Book:
    """Builds a :class:`Measured` of constructed rows."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, int], dict[str, float]] = {}
        for key in ("cap-rf", "cap-nrf"):
            self.put(key, bn={}, none={}, seeds=SEEDS[:3])

    def put(self, key: str, *, bn: dict[str, float], none: dict[str, float], seeds: list[int] = SEEDS) -> Book:
        for i, sd in enumerate(seeds):
            for norm, spec in (("bn", bn), ("none", none)):
                kw = {k: v + JITTER[i] if k == "rho" else v for k, v in spec.items()}
                self.values[(key, norm, sd)] = row(**kw)
        return self

    def measured(self) -> Measured:
        return Measured(dict(self.values), {k: Path("/nonexistent") for k in self.values})


def swapped(book: Book) -> Book:
    """The mutation: BN's rows become no norm's and back."""
    out = Book()
    out.values = {(k, {"bn": "none", "none": "bn"}[n], sd): v for (k, n, sd), v in book.values.items()}
    return out


def cap(m: Measured) -> dict[str, dict[str, list[float]]]:
    from nrflab.experiments.planted.claims import capability

    return capability(m, S)


# ---------------------------------------------------------------------------------------------
# claim 2: preference at the operating point


def pref(book: Book) -> str:
    m = book.measured()
    return preference_verdict(m, S, "bn", cap(m), OP).outcome


def test_preference_signs_and_mutation() -> None:
    book = Book().put(OP, bn={"rho": 0.6}, none={"rho": -0.6})
    m = book.measured()
    v = preference_verdict(m, S, "bn", cap(m), OP)
    assert v.outcome == "agrees" and v.unit == "rho index" and v.family == "planted: reliance"
    assert v.claim_id == "planted.preference" and v.n_seeds == 5 and math.isfinite(v.p)
    assert v.difference == pytest.approx(1.2) and "smaller high-frequency feature" in v.claim
    assert len(v.guard) == 10 and all(c.passed for c in v.guard)
    assert pref(swapped(book)) == "disagrees"
    assert pref(Book().put(OP, bn={"rho": 0.0}, none={"rho": 0.0})) == "inconclusive"


@pytest.mark.parametrize(
    ("bn", "none", "label", "needle"),
    [
        ({"acc": 0.1, "train_acc": 0.1}, {}, "void", "did not train"),  # chance-level BN
        ({}, {"acc": 0.1, "train_acc": 0.1}, "void", "did not train"),  # chance-level no norm
        ({}, {"finite": 0.0}, "void", "diverged"),  # divergence
        ({"agree_top": 0.95}, {}, "void", "collapsed"),  # collapse
    ],
)
def test_preference_guard(bn: dict[str, float], none: dict[str, float], label: str, needle: str) -> None:
    m = Book().put(OP, bn={"rho": 0.6, **bn}, none={"rho": -0.6, **none}).measured()
    v = preference_verdict(m, S, "bn", cap(m), OP)
    assert v.outcome == label and needle in v.reason


def test_preference_capability_and_seeds() -> None:
    book = Book().put(OP, bn={"rho": 0.6}, none={"rho": -0.6})
    book.put("cap-nrf", bn={}, none={"nrf_suff_acc": 0.3}, seeds=SEEDS[:3])
    m = book.measured()
    v = preference_verdict(m, S, "bn", cap(m), OP)
    assert v.outcome == "void" and "capability control failed" in v.reason
    m = Book().put(OP, bn={"rho": 0.6}, none={"rho": -0.6}, seeds=[0, 1]).measured()
    assert preference_verdict(m, S, "bn", cap(m), OP).outcome == "not tested"


# ---------------------------------------------------------------------------------------------
# claim 2 as a crossover


def test_crossing_interpolates_and_censors() -> None:
    c = crossing([1.0, 2.0, 4.0], [-0.5, 0.5, 0.9])
    assert c.censored == "" and c.value == pytest.approx(math.sqrt(2))
    assert crossing([1.0, 2.0], [-0.5, -0.1]) == crossing([1.0, 2.0], [-0.5, -0.2]).__class__(2.0, "above", 2)
    assert crossing([1.0, 2.0], [0.1, 0.5]).censored == "below"
    assert math.isnan(crossing([1.0, 2.0], [math.nan, 0.5]).value)


def sweep_book(bn_shift: float, none_shift: float, **bn: float) -> Book:
    """Rho rising with log a_n, crossing 0 at exp(shift) for each normalization."""
    book = Book()
    for a in sorted({*S.sweep, S.a_n}):
        book.put(
            f"sweep-a{a:g}",
            bn={"rho": max(-1.0, min(1.0, math.log(a) - bn_shift)), **bn},
            none={"rho": max(-1.0, min(1.0, math.log(a) - none_shift))},
        )
    return book


def test_crossover_signs_mutation_and_guard() -> None:
    book = sweep_book(math.log(1.6), math.log(2.4))
    m = book.measured()
    v = crossover_verdict(m, S, "bn", cap(m))
    assert v.outcome == "agrees" and v.unit == "log ratio" and v.claim_id == "planted.crossover"
    assert "geometric mean 1.5" in v.evidence
    m = swapped(book).measured()
    assert crossover_verdict(m, S, "bn", cap(m)).outcome == "disagrees"
    m = sweep_book(math.log(1.6), math.log(1.6)).measured()
    assert crossover_verdict(m, S, "bn", cap(m)).outcome == "inconclusive"
    m = sweep_book(math.log(1.6), math.log(8.0)).measured()  # no norm never crosses: censored at 4
    v = crossover_verdict(m, S, "bn", cap(m))
    assert v.outcome == "agrees" and "censored at its end" in v.evidence
    m = sweep_book(math.log(1.6), math.log(2.4), finite=0.0).measured()
    assert crossover_verdict(m, S, "bn", cap(m)).outcome == "void"


# ---------------------------------------------------------------------------------------------
# controls of claim 2


def test_controls_shrink_grow_and_reading() -> None:
    book = Book().put(OP, bn={"rho": 0.6}, none={"rho": -0.6})
    for key in ("ctl-robust", "ctl-noise", "ctl-band"):
        book.put(key, bn={"rho": 0.1}, none={"rho": -0.1})
    m = book.measured()
    vs = control_verdicts(m, S, OP, cap(m))
    assert [v.outcome for v in vs] == ["agrees"] * 3 and {v.family for v in vs} == {"planted: controls"}
    assert "not specific to robustness" in control_reading(vs[1], "ctl-noise")
    assert "not specific" not in control_reading(vs[0], "ctl-robust")
    # mutation: the signed gap flips, so "shrinks" flips too
    assert [v.outcome for v in control_verdicts(swapped(book).measured(), S, OP, cap(m))] == ["disagrees"] * 3
    book = Book().put(OP, bn={"rho": 0.1}, none={"rho": -0.1})
    for key in ("ctl-robust", "ctl-noise", "ctl-band"):
        book.put(key, bn={"rho": 0.6}, none={"rho": -0.6})
    assert [v.outcome for v in control_verdicts(book.measured(), S, OP, cap(m))] == ["disagrees"] * 3
    book.put("ctl-noise", bn={"rho": 0.6, "finite": 0.0}, none={"rho": -0.6})
    assert control_verdicts(book.measured(), S, OP, cap(m))[1].outcome == "void"


# ---------------------------------------------------------------------------------------------
# claim 4: learning order


def curve(lead: float, rise: float) -> list[dict[str, float]]:
    """A reliance curve: chance first, then the early point with F_R - F_N = lead, then F_N risen by rise."""
    f_n = (1 - lead) / 2 - 0.05
    return [
        {"epoch": 0.0, "agree_acc": 0.1, "f_r": 0.1, "f_n": 0.1, "rho": 0.0},
        {"epoch": 0.5, "agree_acc": 0.6, "f_r": f_n + lead, "f_n": f_n, "rho": -lead},
        {"epoch": 6.0, "agree_acc": 0.95, "f_r": 0.5, "f_n": f_n + rise, "rho": 0.0},
    ]


def test_learning_order_signs_pairing_and_mutation() -> None:
    m = Book().put(OP, bn={}, none={}).measured()
    curves = {
        "bn": {sd: curve(0.3 + j, 0.6 + j) for sd, j in zip(SEEDS, JITTER, strict=True)},
        "none": {sd: curve(0.5 + j, 0.1 - j) for sd, j in zip(SEEDS, JITTER, strict=True)},
    }
    vs = order_verdicts(curves, m, S, OP)
    assert [v.outcome for v in vs] == ["agrees", "agrees", "agrees"]
    assert vs[2].claim_id == "planted.order.then" and vs[2].difference == pytest.approx(0.508)
    flipped = order_verdicts({"bn": curves["none"], "none": curves["bn"]}, m, S, OP)
    assert flipped[2].outcome == "disagrees"
    reordered = {"bn": dict(reversed(list(curves["bn"].items()))), "none": curves["none"]}
    assert order_verdicts(reordered, m, S, OP)[2].difference == pytest.approx(vs[2].difference)  # by seed id
    leads_nrf = {n: {sd: curve(-0.4 + j, 0.1) for sd, j in zip(SEEDS, JITTER, strict=True)} for n in curves}
    assert order_verdicts(leads_nrf, m, S, OP)[0].outcome == "disagrees"
    never = {n: {sd: curve(0.3, 0.1)[:1] for sd in SEEDS} for n in curves}
    assert order_verdicts(never, m, S, OP)[0].outcome == "void"


# ---------------------------------------------------------------------------------------------
# claim 5: planted D_rand and the conflicting set


def drand(bn: dict[str, float], none: dict[str, float], seeds: list[int] = SEEDS) -> list[str]:
    book = Book().put("drand-a1", bn=bn, none=none, seeds=seeds).put("drand-a2", bn=bn, none=none, seeds=seeds)
    return [v.outcome for v in drand_verdicts(book.measured(), S)]


def test_drand_signs_scope_and_guard() -> None:
    assert drand({"acc": 0.95}, {"acc": 0.11, "train_acc": 0.3}) == ["agrees", "agrees", "void", "void"]
    vs = drand_verdicts(Book().put("drand-a2", bn={}, none={}).put("drand-a1", bn={}, none={}).measured(), S)
    assert "out of scope" in vs[2].reason and "not an NRF in the claim's sense" in vs[3].reason
    assert drand({"acc": 0.93}, {"acc": 0.93})[:2] == ["disagrees", "inconclusive"]
    # mutation: swapping the arms makes "more with BN" disagree
    assert drand({"acc": 0.5}, {"acc": 0.95})[1] == "disagrees"
    assert drand({"acc": 0.95}, {"acc": 0.11, "finite": 0.0})[:2] == ["void", "void"]  # no-norm divergence
    chance_bn = drand({"acc": 0.11, "train_acc": 0.1}, {"acc": 0.11})
    assert chance_bn[:2] == ["void", "void"]  # the A5 case: BN did not train
    trained_bn = drand({"acc": 0.11, "train_acc": 0.9}, {"acc": 0.11})
    assert trained_bn[1] == "fails under protocol"
    assert drand({"acc": 0.95}, {"acc": 0.11}, seeds=[0, 1])[:2] == ["not tested", "not tested"]


def conflicting(bn: dict[str, float], none: dict[str, float]) -> str:
    return conflicting_verdict(Book().put("conflicting", bn=bn, none=none).measured(), S).outcome


def test_conflicting_signs_guard_and_unit() -> None:
    nrf, rf = {"acc_y": 0.8, "acc_y1": 0.1}, {"acc_y": 0.05, "acc_y1": 0.9}
    v = conflicting_verdict(Book().put("conflicting", bn=nrf, none=rf).measured(), S)
    assert v.outcome == "agrees" and v.unit == "rho index" and -2 <= v.difference <= 2
    assert conflicting(rf, nrf) == "disagrees"
    # the A1 case: BN at 10 % / 10 % vs y and y+1 cannot pass on a pooled test any more
    assert conflicting({"acc_y": 0.1, "acc_y1": 0.1, "train_acc": 0.1}, rf) == "void"


# ---------------------------------------------------------------------------------------------
# the MNIST diagnostic and claim 6


def mnist_rows(run: float, batch: float) -> dict[str, float]:
    return {"running_acc": run, "batch_acc": batch, "running_top": 0.2, "batch_top": 0.2, "train_acc": 0.99}


def test_mnist_diagnostic() -> None:
    planted = [mnist_rows(0.99, 0.99 + j) for j in (0.0, 0.005, -0.005)]
    attack = [mnist_rows(0.2, 0.5 + j) for j in (0.0, 0.03, -0.02)]
    q = MnistQuestion(rows={"planted": planted, "attack": attack}, seeds=[0, 1, 2], spec=mnist_spec(QUICK), n=1000)
    v = mnist_verdict(q)
    assert v.outcome == "agrees" and v.family == "diagnostics"
    assert mnist_verdict(replace(q, rows={"planted": attack, "attack": planted})).outcome == "disagrees"
    two = replace(q, seeds=[0, 1], rows={"planted": planted[:2], "attack": attack[:2]})
    assert mnist_verdict(two).outcome == "not tested"


def test_transfer_signs_and_mutation() -> None:
    m = Book().put(OP, bn={}, none={}).measured()
    t = TransferResult({}, {}, {"none": [0.5, 0.52, 0.49, 0.55, 0.51], "bn": [0.2, 0.21, 0.25, 0.19, 0.2]}, {}, SEEDS)
    assert transfer_verdict(t, m, S, OP).outcome == "agrees"
    t2 = TransferResult({}, {}, {"none": t.per_seed["bn"], "bn": t.per_seed["none"]}, {}, SEEDS)
    assert transfer_verdict(t2, m, S, OP).outcome == "disagrees"
    m = Book().put(OP, bn={"finite": 0.0}, none={}).measured()
    assert transfer_verdict(t, m, S, OP).outcome == "void"


def test_transfer_interval_is_crossed_over_seeds_and_shared_targets() -> None:
    """The targets (every model of the other seeds) are shared by the sources: with per-target cells that
    agree the interval is the paired t over seeds; with target effects that vary it widens."""
    from nrflab.core.stats import paired_test

    m = Book().put(OP, bn={}, none={}).measured()
    none_mean, bn_mean = [0.5, 0.52, 0.49, 0.55, 0.51], [0.2, 0.21, 0.25, 0.19, 0.2]

    def cells(spread: float) -> dict[str, dict[int, dict[str, float]]]:
        out: dict[str, dict[int, dict[str, float]]] = {"none": {}, "bn": {}}
        for i, sd in enumerate(SEEDS):
            targets = [f"{n} {t}" for n in ("bn", "none") for t in SEEDS if t != sd]
            out["none"][sd] = {k: none_mean[i] + spread * (1 if k.startswith("bn") else -1) for k in targets}
            out["bn"][sd] = {k: bn_mean[i] for k in targets}
        return out

    flat = transfer_verdict(TransferResult({}, {}, {"none": none_mean, "bn": bn_mean}, {}, SEEDS, cells(0.0)), m, S, OP)
    d, lo, hi, p, n = paired_test(none_mean, bn_mean)
    assert (
        flat.outcome == "agrees"
        and flat.n_seeds == 5
        and "10 shared targets" in flat.method
        and "10 cells without a pair" in flat.method
    )
    assert flat.difference == pytest.approx(d) and flat.low == pytest.approx(lo) and flat.high == pytest.approx(hi)
    wide = transfer_verdict(TransferResult({}, {}, {"none": none_mean, "bn": bn_mean}, {}, SEEDS, cells(0.3)), m, S, OP)
    assert wide.difference == pytest.approx(d) and wide.high - wide.low > hi - lo
    assert "crossed" in wide.protocol and "either feature" in wide.protocol


def test_transfer_eps_can_move_either_feature() -> None:
    """One swap-cost convention (a / sqrt 2); every preset's transfer eps exceeds both swap costs, and a
    setting whose eps moves only the NRF is refused."""
    from pydantic import ValidationError

    from nrflab.experiments.planted.settings import PAPER, QUICK, swap_cost

    assert swap_cost(2.0) == pytest.approx(math.sqrt(2)) and swap_cost(3.0) == pytest.approx(2.1213, rel=1e-4)
    for preset in (FULL, QUICK, PAPER):
        assert preset.transfer_eps > max(swap_cost(preset.a_r), swap_cost(preset.a_n))
    with pytest.raises(ValidationError, match="must exceed both swap costs"):
        FULL.model_validate({**FULL.model_dump(), "transfer_eps": 1.5})


def test_mnist_arms_are_evaluated_on_the_same_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both arms of the MNIST diagnostic see the same images and labels (the planted MNIST agree view)."""
    import torch

    from nrflab.experiments.planted import mnist
    from nrflab.experiments.planted.settings import QUICK

    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def fake_row(run_dir: Path, x: torch.Tensor, y: torch.Tensor, s: object) -> dict[str, float]:
        seen[run_dir.name] = (x, y)
        return mnist_rows(0.9, 0.9)

    monkeypatch.setattr(mnist, "statistics_row_of", fake_row)
    monkeypatch.setattr(mnist, "cached_result", lambda path, key, fn: fn())
    s = QUICK.model_copy(update={"seeds": [0, 1, 2], "mnist_seeds": 2})
    q = mnist.mnist_question(tmp_path, s)
    assert sorted(seen) == ["attack-bn-s0", "attack-bn-s1", "planted-bn-s0", "planted-bn-s1"]
    x, y = mnist.mnist_eval_view(mnist.mnist_spec(s))
    for got_x, got_y in seen.values():
        assert torch.equal(got_x, x) and torch.equal(got_y, y)
    assert q.n == int(y.shape[0]) == int(x.shape[0])
    q3 = replace(q, seeds=[0, 1, 2], rows={k: [mnist_rows(0.9, 0.9)] * 3 for k in ("planted", "attack")})
    assert "both arms on the same images" in mnist_verdict(q3).protocol

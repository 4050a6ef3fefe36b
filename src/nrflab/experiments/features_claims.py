"""The claims of the feature-dataset experiment (claim 5 and the conflicting set), declared once and
judged from plain inputs: each twin's per-image :class:`~nrflab.experiments.evidence.Outcomes` and its
:class:`~nrflab.measure.health.Health`, one of each per seed, so tests build them without training.

Every claim is a difference per seed, paired by seed (a t-test over seeds), behind the one guard on the
claim's own view:

* ``features.d_rand_hardly``: without BN a network hardly learns from D_rand, i.e. its clean accuracy is
  at most chance + 10 points (the estimate: chance + 10 points minus its accuracy, per seed);
* ``features.d_rand_more``: with BN it learns more than without (BN minus no-BN clean accuracy), judged
  under each evaluation protocol, which the claim's text names. A BN twin that trained but collapses on
  clean images under the protocol *fails under protocol* (the measured outcome), it is not void;
* ``features.conflicting_rf``: the no-BN twin on the conflicting set follows the robust features
  (accuracy vs y+1 minus accuracy vs y);
* ``features.conflicting_nrf_more``: BN follows the non-robust features more than no-BN: the difference
  of differences ``(acc_y - acc_y+1)(BN) - (acc_y - acc_y+1)(no BN)``, so a model that guesses cannot
  look like one that follows; the guard's view is the better of the two readings, per model;
* ``features.conflicting_turn``: BN's accuracy vs y+1 at an epoch fixed in the preset minus at the last
  epoch (from the per-epoch records), per seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from nrflab.core.fmt import pct
from nrflab.core.stats import Verdict
from nrflab.experiments.claims import claims_of, judge_claim
from nrflab.experiments.evidence import Outcomes, compare_scalars
from nrflab.experiments.guard import check
from nrflab.measure.health import THRESHOLDS, Health, chance, top_class

FAMILY = "claim 5: feature datasets"
TWINS = ("BN twin", "no-BN twin")

_claim = claims_of("features", family=FAMILY, unit="points")

D_RAND_HARDLY = _claim(
    id="features.d_rand_hardly",
    text="Claim 5, without {with} a network hardly learns from D_rand (clean accuracy at most chance + 10 points)",
    paper="Claim 5: without BN a network can hardly learn from D_rand (Figure 4)",
    quantity="chance + 10 points minus the no-BN twin's clean test accuracy, per seed",
    protocol="clean test images (a model without BN predicts alike under every protocol)",
    models=("no-BN twin on D_rand", "no-BN twin on D_R (capability control)"),
    guard="the no-BN twin on D_R learned (the recipe can learn); the D_rand twin only finite",
)
D_RAND_MORE = _claim(
    id="features.d_rand_more",
    text="Claim 5, with {with} ({stats}) a network learns more from D_rand than with {without}",
    paper="Claim 5: with BN a network can learn from D_rand, without it hardly (Figure 4)",
    quantity="clean test accuracy of the BN twin minus the no-BN twin's, per seed",
    protocol="clean test images under the named protocol",
    models=("BN twin on D_rand", "no-BN twin on D_rand"),
    guard="the BN twin learned on clean test images (trained but failing: fails under protocol); no-BN finite",
)
CONFLICTING_RF = _claim(
    id="features.conflicting_rf",
    text="Conflicting set: {without} follows robust features (accuracy vs y+1 above accuracy vs y)",
    paper="Figure 6: a model without BN trained on the conflicting set follows the robust features",
    quantity="the no-BN twin's accuracy vs y+1 minus vs y on clean test images, per seed",
    protocol="clean test images (a model without BN predicts alike under every protocol)",
    models=("no-BN twin on the conflicting set",),
    guard="the no-BN twin learned on the better of its two readings (y, y+1)",
)
CONFLICTING_NRF_MORE = _claim(
    id="features.conflicting_nrf_more",
    text="Conflicting set: {with} ({stats}) follows non-robust features more than {without} "
    "(accuracy vs y minus vs y+1)",
    paper="Figure 6: BN makes a network follow the non-robust features of the conflicting set",
    quantity="(acc vs y - acc vs y+1) of the BN twin minus that of the no-BN twin, per seed",
    protocol="clean test images under the named protocol",
    models=TWINS,
    guard="each twin learned on the better of its two readings (y, y+1); a BN twin that trained but "
    "fails there fails under protocol",
)
CONFLICTING_TURN = _claim(
    id="features.conflicting_turn",
    text="Conflicting set: {with}'s accuracy vs y+1 falls after epoch {epoch} (it turns to non-robust "
    "features later in training)",
    paper="Figure 6: with BN the robust features are followed early, the non-robust ones later",
    quantity="the BN twin's accuracy vs y+1 at the preset's early epoch minus at the last epoch, per seed",
    protocol="per-epoch evaluation images, the paper's protocol",
    models=("BN twin on the conflicting set",),
    guard="the BN twin learned on the better of its two readings (y, y+1)",
)


@dataclass(frozen=True)
class Arm:
    """One twin, per seed (aligned with the seeds): its outcomes on the fixed clean test images under one
    protocol and its health (training accuracy, finiteness)."""

    outcomes: Sequence[Outcomes]
    health: Sequence[Health]

    def acc(self, shift: int = 0) -> list[float]:
        """Accuracy per seed vs y (``shift`` 0) or vs y + shift."""
        return [o.accuracy(shift, h.num_classes) for o, h in zip(self.outcomes, self.health, strict=True)]

    def on_view(self, view: str, *, both_readings: bool = False) -> list[Health]:
        """Each seed's health on the claim's view: accuracy vs y, or the better of y and y+1."""
        out = []
        for o, h in zip(self.outcomes, self.health, strict=True):
            acc = max(o.accuracy(), o.accuracy(1, h.num_classes)) if both_readings else o.accuracy()
            top, share = top_class(o.predictions)
            out.append(replace(h, clean_acc=acc, top_class=top, top_share=share, view=view))
        return out


@dataclass(frozen=True)
class Names:
    """How the claims name the two normalizations and the protocol."""

    with_norm: str = "BN"
    without: str = "no normalization"
    protocol: str = "the paper's protocol (BN with running statistics)"
    stats: str = "BN with running statistics"

    def fill(self) -> dict[str, str]:
        return {"with": self.with_norm, "without": self.without, "stats": self.stats}


def d_rand_hardly(none: Arm, controls: Sequence[Health], *, seeds: Sequence[int], names: Names) -> Verdict:
    """Without BN a network hardly learns from D_rand: chance + margin minus its accuracy, per seed."""
    nc = none.health[0].num_classes if none.health else 10
    bar = chance(nc) + THRESHOLDS.chance_margin
    acc = none.acc()
    c = compare_scalars([bar] * len(acc), acc, seeds=seeds, note="one-sample t over seeds against the bar")
    view = "clean test images"
    guard = check(learners=controls, others=none.on_view(view))
    evidence = (
        f"Clean test accuracy of the {names.without} twin on D_rand per seed: {', '.join(pct(a) for a in acc)} "
        f"(mean {pct(c.b)}); the bar is chance + {pct(THRESHOLDS.chance_margin, 0)} = {pct(bar)}; estimate: bar "
        "minus accuracy. Capability control: the no-BN twin on D_R must have learned."
    )
    return judge_claim(D_RAND_HARDLY, c, evidence, guard=guard, seeds=seeds, protocol=names.protocol, **names.fill())


def d_rand_more(bn: Arm, none: Arm, controls: Sequence[Health], *, seeds: Sequence[int], names: Names) -> Verdict:
    """With BN (under the named protocol) a network learns more from D_rand than without."""
    a, b = bn.acc(), none.acc()
    c = compare_scalars(a, b, seeds=seeds, note="each seed's accuracy on the same fixed clean test images")
    view = f"clean test images, {names.stats}"
    guard = check(learners=controls, subjects=bn.on_view(view), others=none.on_view(view))
    evidence = (
        f"Clean test accuracy after training on D_rand: {names.with_norm} {pct(c.a)}, {names.without} {pct(c.b)}."
    )
    return judge_claim(D_RAND_MORE, c, evidence, guard=guard, seeds=seeds, protocol=names.protocol, **names.fill())


def conflicting_rf(none: Arm, *, seeds: Sequence[int], names: Names) -> Verdict:
    """The no-BN twin follows the robust features: accuracy vs y+1 minus vs y, per seed."""
    c = compare_scalars(none.acc(1), none.acc(), seeds=seeds, note="both readings of the same clean test images")
    guard = check(learners=none.on_view("conflicting view: clean test images, better of y and y+1", both_readings=True))
    evidence = (
        f"{names.without} twin: accuracy vs y+1 (robust features) {pct(c.a)}, vs y (non-robust features) {pct(c.b)}."
    )
    return judge_claim(CONFLICTING_RF, c, evidence, guard=guard, seeds=seeds, protocol=names.protocol, **names.fill())


def conflicting_nrf_more(bn: Arm, none: Arm, *, seeds: Sequence[int], names: Names) -> Verdict:
    """BN follows the non-robust features more than no-BN: the difference of the two twins'
    (acc vs y - acc vs y+1), per seed."""
    lead_bn = [y - y1 for y, y1 in zip(bn.acc(), bn.acc(1), strict=True)]
    lead_none = [y - y1 for y, y1 in zip(none.acc(), none.acc(1), strict=True)]
    c = compare_scalars(lead_bn, lead_none, seeds=seeds, note="difference of differences on the same images")
    view = f"conflicting view: clean test images, better of y and y+1, {names.stats}"
    guard = check(learners=none.on_view(view, both_readings=True), subjects=bn.on_view(view, both_readings=True))
    evidence = (
        f"Accuracy vs y / vs y+1 (mean over seeds): {names.with_norm} {pct(_mean(bn.acc()))} / "
        f"{pct(_mean(bn.acc(1)))}, {names.without} {pct(_mean(none.acc()))} / {pct(_mean(none.acc(1)))}; "
        f"estimate: {names.with_norm}'s lead of y over y+1 minus {names.without}'s."
    )
    return judge_claim(
        CONFLICTING_NRF_MORE, c, evidence, guard=guard, seeds=seeds, protocol=names.protocol, **names.fill()
    )


def conflicting_turn(
    early: Sequence[float],
    final: Sequence[float],
    bn: Arm,
    *,
    epoch: int,
    last: int,
    seeds: Sequence[int],
    names: Names,
) -> Verdict:
    """BN's accuracy vs y+1 at the preset's ``epoch`` minus at the ``last`` epoch (per-epoch records)."""
    c = compare_scalars(early, final, seeds=seeds, note=f"epoch {epoch} vs epoch {last}, fixed in the preset")
    view = "conflicting view: clean test images, better of y and y+1, BN with running statistics"
    guard = check(subjects=bn.on_view(view, both_readings=True))
    evidence = (
        f"Accuracy vs y+1 at epoch {epoch}: {', '.join(pct(v) for v in early)}; at epoch {last}: "
        f"{', '.join(pct(v) for v in final)} (per seed)."
    )
    return judge_claim(
        CONFLICTING_TURN,
        c,
        evidence,
        guard=guard,
        seeds=seeds,
        protocol=names.protocol,
        epoch=str(epoch),
        **names.fill(),
    )


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

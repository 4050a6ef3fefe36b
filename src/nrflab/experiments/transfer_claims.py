"""The claims of the transfer experiment (claim 6), declared once and judged from plain per-source
numbers, so tests build them without a zoo.

Every source's transfer success is first averaged over its targets (the other final models of the zoo).
The targets are shared by every source, so sources are not independent units: each claim therefore
averages, **per seed**, the sources of that seed (over the archs, and for the early-stop claim over both
normalizations) and pairs the two arms by seed; the interval is the paired t-interval over seeds,
``mean(d) ± t(0.975, n-1) · sd(d) / √n`` with ``d`` the per-seed differences. The shared targets stay a
fixed panel: the interval covers the sources' seed-to-seed variation, not a new draw of targets.

* ``transfer.no_bn``: adversarial examples from sources without BN transfer better (no-BN minus BN
  success, per seed);
* ``transfer.early_stop``: the checkpoint of an epoch fixed in the preset transfers better than the final
  model of the same run (early minus final success, per seed), the early checkpoints' health checked by the
  guard like the final models'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nrflab.core.fmt import pct
from nrflab.core.stats import Verdict
from nrflab.experiments.claims import judge_claim, register_claim
from nrflab.experiments.evidence import Comparison, compare_scalars
from nrflab.experiments.guard import Guard

FAMILY = "claim 6: transferability"
PAIRING = "each source averaged over its targets, then the sources of each seed averaged; paired by seed"

NO_BN = register_claim(
    id="transfer.no_bn",
    experiment="transfer",
    family=FAMILY,
    text="RFs transfer better: adversarial examples from sources without {with} transfer better",
    paper="Claim 6: adversarial examples of networks without BN transfer better (robust features)",
    quantity="mean transfer success over targets of the no-BN sources minus the BN sources', per seed (archs averaged)",
    unit="points",
    protocol="untargeted attack on the fixed test images; every final model of the zoo is a target",
    models=("BN sources", "no-BN sources"),
    guard="every source learned on the attacked test images; BN and no-BN sources of comparable usefulness",
)
EARLY_STOP = register_claim(
    id="transfer.early_stop",
    experiment="transfer",
    family=FAMILY,
    text="Early-stopped sources (mostly RFs) transfer better than the final model ({early} vs epoch {last})",
    paper="Claim 6: adversarial examples of early-stopped networks transfer better",
    quantity="mean transfer success over targets of each run's early checkpoint (the preset's epoch) minus "
    "its final model's, per seed (runs of the seed averaged)",
    unit="points",
    protocol="untargeted attack on the fixed test images; early epoch fixed in the preset",
    models=("early checkpoints", "final models"),
    guard="every final model and every early checkpoint learned on the attacked test images",
)


@dataclass(frozen=True)
class SourceTwins:
    """The BN and no-BN sources of one arch and seed: each one's mean transfer success over its targets."""

    arch: str
    seed: int
    bn: float
    none: float


@dataclass(frozen=True)
class EarlyVsFinal:
    """One run: mean transfer success of its early checkpoint and of its final model."""

    run: str
    group: str
    epoch: int
    final_epoch: int
    early: float
    final: float
    seed: int = 0

    @property
    def gain(self) -> float:
        return self.early - self.final


def by_seed(values: Sequence[tuple[int, float]]) -> dict[int, float]:
    """The mean of the finite values of each seed (seeds in increasing order)."""
    out: dict[int, list[float]] = {}
    for seed, v in values:
        if math.isfinite(v):
            out.setdefault(seed, []).append(v)
    return {sd: sum(vs) / len(vs) for sd, vs in sorted(out.items())}


def _paired(a: dict[int, float], b: dict[int, float]) -> tuple[Comparison, list[int]]:
    seeds = [sd for sd in a if sd in b]
    return compare_scalars([a[sd] for sd in seeds], [b[sd] for sd in seeds], seeds=seeds, note=PAIRING), seeds


def no_bn_claim(twins: Sequence[SourceTwins], *, guard: Guard, protocol: str = "", names: str = "BN") -> Verdict:
    """No-BN minus BN sources' transfer success, per seed (archs averaged first), paired by seed."""
    nobn = by_seed([(t.seed, t.none) for t in twins])
    bn = by_seed([(t.seed, t.bn) for t in twins])
    c, seeds = _paired(nobn, bn)
    archs = sorted({t.arch for t in twins})
    evidence = (
        f"Mean transfer success over targets, per seed (archs {', '.join(archs)} averaged): no-BN sources "
        f"{', '.join(pct(nobn[sd]) for sd in seeds)}, BN sources {', '.join(pct(bn[sd]) for sd in seeds)} "
        f"(seeds {', '.join(map(str, seeds))}); the targets are shared, so each seed is one unit."
    )
    return judge_claim(NO_BN, c, evidence, guard=guard, seeds=seeds, protocol=protocol or None, **{"with": names})


def early_stop_claim(rows: Sequence[EarlyVsFinal], *, guard: Guard, early: str, protocol: str = "") -> Verdict:
    """Early checkpoint minus final model, per seed (the runs of a seed averaged first), paired by seed.
    Runs whose early epoch is not before the last are left out; ``early`` names the early checkpoint
    ("epoch 2": fixed in the preset)."""
    kept = [r for r in rows if r.epoch < r.final_epoch]
    first = by_seed([(r.seed, r.early) for r in kept])
    final = by_seed([(r.seed, r.final) for r in kept])
    c, seeds = _paired(first, final)
    last = max((r.final_epoch for r in rows), default=0)
    helped = sum(r.gain > 0 for r in kept if math.isfinite(r.gain))
    evidence = (
        f"Early checkpoint ({early}; epochs {', '.join(sorted({str(r.epoch) for r in kept}))}) vs final model "
        f"(epoch {last}), mean transfer success per seed: early {', '.join(pct(first[sd]) for sd in seeds)}, final {', '.join(pct(final[sd]) for sd in seeds)}; higher "
        f"for {helped}/{len(kept)} runs."
    )
    return judge_claim(
        EARLY_STOP, c, evidence, guard=guard, seeds=seeds, protocol=protocol or None, early=early, last=str(last)
    )


__all__ = ["EARLY_STOP", "NO_BN", "EarlyVsFinal", "SourceTwins", "by_seed", "early_stop_claim", "no_bn_claim"]

"""Statistics shared by every verdict: confidence intervals and the one rule that turns them into words.

The rule (:func:`judge`, used by every experiment's report): a claim about models is replicated over
seeds (a paired t-interval over seeds, the seed being the unit); with fewer than :data:`MIN_SEEDS` seeds
it is **not tested**. It **agrees** or **disagrees** only when the 95 % interval of the claim-oriented
difference excludes zero, on the claimed side or the other, *and* its Holm-adjusted p-value within its
family of claims is below :data:`ALPHA` (:func:`adjust_families`); otherwise it is **inconclusive**. A
claim judged on a model that did not train is **void** with its reason; a claim whose subject trained
but failed on the claim's own view under its protocol **fails under protocol**, with the numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from nrflab.core.records import fields_json

Z95 = 1.959963984540054

Outcome = Literal["agrees", "disagrees", "inconclusive", "void", "not tested", "fails under protocol"]


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for ``k`` successes in ``n`` trials; (nan, nan) when ``n == 0``."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the bound is exactly 0 (1); rounding must not move it inside.
    lo = 0.0 if k == 0 else max(0.0, center - half)
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


def t_quantile(dof: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile for ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def mean_ci(values: Sequence[float], proportion: bool = True) -> tuple[float, float, float]:
    """Mean and 95 % t-interval across ``values`` (NaNs dropped; clipped to [0,1] for proportions).

    (mean, nan, nan) for a single value; (nan, nan, nan) for none.
    """
    vals = [float(v) for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, math.nan, math.nan
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    half = t_quantile(len(vals) - 1) * sd / math.sqrt(len(vals))
    if proportion:
        return m, max(0.0, m - half), min(1.0, m + half)
    return m, m - half, m + half


def paired_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean of the paired differences ``a[i] - b[i]`` and its 95 % t-interval (pairs with a NaN dropped).

    Pair by seed: the same seed for both arms removes the seed-to-seed variance the arms share.
    """
    return mean_ci(_differences(a, b, caller="paired_ci"), proportion=False)


def _differences(a: Sequence[float], b: Sequence[float], *, caller: str) -> list[float]:
    """The paired differences ``a[i] - b[i]``, pairs with a NaN dropped; unequal lengths are ``caller``'s error."""
    if len(a) != len(b):
        raise ValueError(f"{caller} needs equally many values ({len(a)} vs {len(b)})")
    return [float(x) - float(y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]


#: Seeds a comparative claim needs before it can agree or disagree (fewer: "not tested").
MIN_SEEDS = 3
#: The family-wise error rate that Holm's procedure holds within each family of claims.
ALPHA = 0.05


def paired_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float, int]:
    """Mean of the paired differences ``a[i] - b[i]``, its 95 % t-interval, the two-sided p-value of the
    one-sample t-test against 0, and the number of pairs (pairs with a NaN dropped).

    The unit is the pair (a seed: both arms trained with the same seed). p is NaN with fewer than two
    pairs; with zero spread it is 0 (a nonzero mean) or 1 (a zero mean).
    """
    return one_sample_test(_differences(a, b, caller="paired_test"))


def one_sample_test(values: Sequence[float]) -> tuple[float, float, float, float, int]:
    """Mean, 95 % t-interval and two-sided t-test p-value (against 0) of ``values`` (NaNs dropped), and n."""
    from scipy.stats import t

    vals = [float(v) for v in values if math.isfinite(v)]
    m, lo, hi = mean_ci(vals, proportion=False)
    n = len(vals)
    if n < 2:
        return m, lo, hi, math.nan, n
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(m)):  # no spread (up to rounding): the mean is exact
        return m, m, m, (1.0 if abs(m) <= 1e-12 else 0.0), n
    stat = m / (sd / math.sqrt(n))
    return m, lo, hi, float(2 * t.sf(abs(stat), n - 1)), n


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count towards the family size).

    Rejecting where the adjusted p is below alpha holds the family-wise error rate at alpha for any
    dependence between the tests.
    """
    order = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


@dataclass(frozen=True)
class ModelCheck:
    """One model's validity check on the view a claim is judged on (see :mod:`nrflab.experiments.guard`).

    ``accuracy`` is its accuracy on that view (``view`` says which: the clean test images under a
    protocol, or the better of two label readings), ``chance`` plus ``margin`` the bar it must reach,
    ``top_share`` the share of its predictions taken by its most frequent class.
    """

    model: str
    view: str
    accuracy: float
    chance: float
    margin: float
    top_share: float
    finite: bool
    passed: bool
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return fields_json(self)


@dataclass(frozen=True)
class Verdict:
    """One paper claim judged: the outcome, the measured difference with its interval, and why.

    ``difference`` is oriented so that a positive value supports the claim and is in ``unit`` (fractions
    for "points", printed x100). ``p`` is the raw two-sided p-value of the difference against 0 over
    ``n_seeds`` paired seeds, ``p_adjusted`` the Holm-adjusted one within ``family`` (set when a report
    collects its verdicts: :func:`adjust_families`). ``guard`` lists each compared model's check on the
    claim's evaluation view.
    """

    claim: str
    outcome: Outcome
    evidence: str
    difference: float = math.nan
    low: float = math.nan
    high: float = math.nan
    protocol: str = ""
    reason: str = ""
    claim_id: str = ""
    experiment: str = ""
    family: str = ""
    unit: str = ""
    n_seeds: int = 0
    p: float = math.nan
    p_adjusted: float = math.nan
    guard: tuple[ModelCheck, ...] = ()
    method: str = ""

    @property
    def word(self) -> str:
        """The outcome as the report prints it (``void: <reason>`` for void and the like)."""
        return f"{self.outcome}: {self.reason}" if self.outcome in EXPLAINED else self.outcome

    def to_dict(self) -> dict[str, object]:
        """The one verdict record of every ``verdicts.json``."""
        return {
            "claim": self.claim,
            "claim_id": self.claim_id,
            "experiment": self.experiment,
            "family": self.family,
            "verdict": self.outcome,
            "reason": self.reason,
            "unit": self.unit,
            "estimate": self.difference,
            "interval": [self.low, self.high],
            "n_seeds": self.n_seeds,
            "p": self.p,
            "p_adjusted": self.p_adjusted,
            "guard": [c.to_dict() for c in self.guard],
            "protocol": self.protocol,
            "method": self.method,
            "evidence": self.evidence,
        }


#: Outcomes printed with their reason.
EXPLAINED = ("void", "not tested", "fails under protocol")


def judge(
    claim: str,
    difference: float,
    low: float,
    high: float,
    evidence: str,
    *,
    protocol: str = "",
    void_reason: str | None = None,
    fails_reason: str | None = None,
    n_seeds: int | None = None,
    min_seeds: int = MIN_SEEDS,
    p: float = math.nan,
    claim_id: str = "",
    experiment: str = "",
    family: str = "",
    unit: str = "",
    guard: tuple[ModelCheck, ...] = (),
    method: str = "",
) -> Verdict:
    """The verdict rule.

    In order: **void** when a compared model did not train (``void_reason``); **fails under protocol**
    when the claim's subject trained but failed on the claim's view under its protocol (``fails_reason``:
    a measured failure of the claim, kept apart from void); **not tested** with fewer than ``min_seeds``
    paired seeds (``n_seeds``; None: not a seed comparison); **agrees**/**disagrees** only when the 95 %
    interval of the claim-oriented difference excludes zero, on the claimed side or the other; otherwise
    **inconclusive** (also when no interval could be computed). :func:`adjust_families` later turns an
    agree/disagree whose Holm-adjusted p is not below :data:`ALPHA` into inconclusive. ``claim_id``,
    ``experiment``, ``family``, ``unit``, ``guard`` and ``method`` are copied onto the verdict as given.
    """

    def verdict(outcome: Outcome, reason: str = "") -> Verdict:
        return Verdict(
            claim, outcome, evidence, difference, low, high, protocol, reason, claim_id=claim_id,
            experiment=experiment, family=family, unit=unit, n_seeds=0 if n_seeds is None else n_seeds, p=p,
            guard=guard, method=method,
        )  # fmt: skip

    if void_reason:
        return verdict("void", void_reason)
    if fails_reason:
        return verdict("fails under protocol", fails_reason)
    if n_seeds is not None and n_seeds < min_seeds:
        reason = f"{n_seeds} seed{'' if n_seeds == 1 else 's'}; at least {min_seeds} paired seeds are needed"
        return verdict("not tested", reason)
    if not (math.isfinite(low) and math.isfinite(high)):
        return verdict("inconclusive", "no interval (fewer than two paired values)")
    if low > 0:
        return verdict("agrees")
    return verdict("disagrees" if high < 0 else "inconclusive")


def adjust_families(verdicts: Sequence[Verdict], *, alpha: float = ALPHA) -> list[Verdict]:
    """Holm within each family: every verdict gets ``p_adjusted``; an agree/disagree whose adjusted p is
    not below ``alpha`` becomes inconclusive ("not significant after Holm over k claims in family F").

    Only verdicts that were judged on an interval (agrees, disagrees, inconclusive) count towards a
    family's size; void, not tested and failed ones carry no test. Verdicts without a family form one
    family each.
    """

    out = list(verdicts)
    families: dict[str, list[int]] = {}
    for i, v in enumerate(out):
        if v.outcome in ("agrees", "disagrees", "inconclusive") and math.isfinite(v.p):
            families.setdefault(v.family or f"#{i}", []).append(i)
    for family, members in families.items():
        adjusted = holm([out[i].p for i in members])
        for i, q in zip(members, adjusted, strict=True):
            v = out[i]
            if v.outcome in ("agrees", "disagrees") and not q < alpha:
                k = len(members)
                v = replace(
                    v,
                    outcome="inconclusive",
                    reason=f"{v.outcome} before correction (p {v.p:.2g}); Holm-adjusted p {q:.2g} over {k} "
                    f"claim{'s' if k > 1 else ''} of family '{family}'",
                )
            out[i] = replace(v, p_adjusted=q)
    return out


def finite_mean(values: Sequence[float | None] | torch.Tensor) -> float:
    """The mean over finite entries (None, NaN and Inf dropped, as the official code does); NaN if none.

    A tensor is averaged in its own dtype (pass ``values.double()`` for a double-precision mean).
    """
    if isinstance(values, torch.Tensor):
        v = values[torch.isfinite(values)]
        return float(v.mean()) if v.numel() else math.nan
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


__all__ = [
    "ALPHA",
    "EXPLAINED",
    "MIN_SEEDS",
    "ModelCheck",
    "Verdict",
    "adjust_families",
    "finite_mean",
    "judge",
    "mean_ci",
    "one_sample_test",
    "paired_ci",
    "paired_test",
    "wilson",
]

"""Statistics shared by every verdict: confidence intervals and the one rule that turns them into words.

The rule (used by every experiment's report): a claim **agrees** or **disagrees** only when the 95 %
interval of the measured difference excludes zero, on the claimed side or the other; otherwise it is
**inconclusive**. A claim judged on a model that did not learn, or at very unequal usefulness, is
**void** with its reason, never agreed or refuted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Z95 = 1.959963984540054

Outcome = Literal["agrees", "disagrees", "inconclusive", "void"]


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
    if len(a) != len(b):
        raise ValueError(f"paired_ci needs equally many values ({len(a)} vs {len(b)})")
    diffs = [float(x) - float(y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    return mean_ci(diffs, proportion=False)


def two_proportion_ci(p1: float, n1: int, p2: float, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """Difference ``p1 - p2`` of two proportions measured on ``n1`` and ``n2`` items, with a 95 % Wald
    interval (Newcombe-style continuity is not needed at the sample sizes reports use)."""
    if n1 <= 0 or n2 <= 0 or not (math.isfinite(p1) and math.isfinite(p2)):
        return math.nan, math.nan, math.nan
    d = p1 - p2
    se = math.sqrt(max(p1 * (1 - p1), 0.0) / n1 + max(p2 * (1 - p2), 0.0) / n2)
    se = max(se, 1e-12)
    return d, d - z * se, d + z * se


@dataclass(frozen=True)
class Verdict:
    """One paper claim judged: the outcome, the measured difference with its interval, and why.

    ``difference`` is oriented so that a positive value supports the claim.
    """

    claim: str
    outcome: Outcome
    evidence: str
    difference: float = math.nan
    low: float = math.nan
    high: float = math.nan
    protocol: str = ""
    reason: str = ""

    @property
    def word(self) -> str:
        """The outcome as the report prints it (``void: <reason>`` for void)."""
        return f"void: {self.reason}" if self.outcome == "void" else self.outcome

    def to_dict(self) -> dict[str, object]:
        return {
            "claim": self.claim,
            "outcome": self.outcome,
            "evidence": self.evidence,
            "difference": self.difference,
            "ci": [self.low, self.high],
            "protocol": self.protocol,
            "reason": self.reason,
        }


def judge(
    claim: str,
    difference: float,
    low: float,
    high: float,
    evidence: str,
    *,
    protocol: str = "",
    void_reason: str | None = None,
) -> Verdict:
    """The verdict rule: void if a validity guard failed; agrees/disagrees only when the interval of the
    (claim-oriented) difference excludes zero; otherwise inconclusive (also when it could not be computed)."""
    if void_reason:
        return Verdict(claim, "void", evidence, difference, low, high, protocol, void_reason)
    if not (math.isfinite(low) and math.isfinite(high)):
        return Verdict(
            claim,
            "inconclusive",
            evidence,
            difference,
            low,
            high,
            protocol,
            "no interval (fewer than two paired values)",
        )
    if low > 0:
        outcome: Outcome = "agrees"
    elif high < 0:
        outcome = "disagrees"
    else:
        outcome = "inconclusive"
    return Verdict(claim, outcome, evidence, difference, low, high, protocol)


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
    "Verdict",
    "finite_mean",
    "judge",
    "mean_ci",
    "paired_ci",
    "two_proportion_ci",
    "wilson",
]

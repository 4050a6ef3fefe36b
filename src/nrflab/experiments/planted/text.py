"""Report text of the planted experiment's numbers: intervals over seeds, differences, normalization names."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nrflab.core.stats import fmt_interval, mean_ci
from nrflab.experiments.planted.settings import NORM_NAMES
from nrflab.report.document import pct


def cell(values: Sequence[float], *, percent: bool = True, signed: bool = False) -> str:
    """``mean [95 % CI]`` over seeds (t-interval), percent or plain; ``signed`` percentages are differences
    in points (not clipped to [0, 1])."""
    if percent and signed:
        return diff_text(*mean_ci(values, proportion=False), percent=True)
    m, lo, hi = mean_ci(values, proportion=percent)
    if percent:
        return f"{pct(m)} {fmt_interval(lo, hi)}" if math.isfinite(lo) else pct(m)
    fmt = "{:+.2f}" if signed else "{:.3f}"
    if not math.isfinite(m):
        return "n/a"
    return f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]" if math.isfinite(lo) else fmt.format(m)


def diff_text(d: float, lo: float, hi: float, *, percent: bool) -> str:
    if not math.isfinite(d):
        return "n/a"
    if percent:
        return f"{100 * d:+.1f} points {fmt_interval(lo, hi)}"
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f"{d:+.2f} [n/a]"


def name(norm: str) -> str:
    return NORM_NAMES.get(norm, norm)


__all__ = ["cell", "diff_text", "name"]

"""How numbers and tables are written for readers: the one home of nrflab's formatters.

Every report, table and summary line prints its numbers through these functions, so one kind of number
has one look everywhere:

- a proportion as a percentage: :func:`pct` (``"95.0 %"``; ``unit=False`` gives ``"95.0"`` for tables whose
  header says ``%``);
- a difference of proportions in signed percentage points: :func:`points` (``"+3.2"``);
- a 95 % interval: :func:`interval` (``"[91.2, 96.8]"`` or ``"[n/a]"``), :func:`ci` (the same or nothing) and
  :func:`ci_phrase` (``" (95 % CI [91.2, 96.8])"`` or nothing);
- a mean over seeds with its interval: :func:`cell` (``"95.0 % [91.2, 96.8]"``); a mean with its range:
  :func:`spread` (``"0.91 (0.90 to 0.92)"``); a difference with its interval: :func:`difference`;
- a plain number: :func:`num`; an attack radius: :func:`eps` (``"8/255"`` where that is what it is).

An undefined number (None, NaN, infinite) is always written ``n/a``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence

from nrflab.core.stats import mean_ci


def pct(value: float | None, digits: int = 1, *, unit: bool = True) -> str:
    """A proportion in percent: ``0.95`` -> ``"95.0 %"`` (``unit=False``: ``"95.0"``), ``n/a`` when undefined."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f} %" if unit else f"{100 * value:.{digits}f}"


def num(value: float | None, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals (``n/a`` when undefined)."""
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def points(value: float, digits: int = 1) -> str:
    """A difference of proportions in signed percentage points: ``0.032`` -> ``"+3.2"`` (``n/a`` when undefined)."""
    return f"{100 * value:+.{digits}f}" if math.isfinite(value) else "n/a"


def interval(low: float, high: float, *, scale: float = 100.0, digits: int = 1) -> str:
    """``[low, high]`` scaled (percentage points by default), or ``[n/a]``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "[n/a]"
    return f"[{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def ci(bounds: tuple[float, float]) -> str:
    """A 95 % interval of proportions as ``[lo, hi]`` in percent, or the empty string when undefined."""
    low, high = bounds
    return interval(low, high) if math.isfinite(low) and math.isfinite(high) else ""


def ci_phrase(bounds: tuple[float, float]) -> str:
    """`` (95 % CI [lo, hi])`` in percent, or nothing when the interval is undefined."""
    text = ci(bounds)
    return f" (95 % CI {text})" if text else ""


def difference(d: float, low: float, high: float, *, percent: bool) -> str:
    """A difference with its interval: ``+3.2 points [1.0, 5.4]`` in percent, ``+0.12 [+0.03, +0.21]`` plain."""
    if not math.isfinite(d):
        return "n/a"
    if percent:
        return f"{100 * d:+.1f} points {interval(low, high)}"
    return f"{d:+.2f} [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else f"{d:+.2f} [n/a]"


def cell(values: Sequence[float], *, percent: bool = True, signed: bool = False) -> str:
    """``mean [95 % CI]`` over seeds (t-interval), percent or plain; ``signed`` percentages are differences
    in points (not clipped to [0, 1])."""
    if percent and signed:
        return difference(*mean_ci(values, proportion=False), percent=True)
    m, lo, hi = mean_ci(values, proportion=percent)
    if percent:
        return f"{pct(m)} {interval(lo, hi)}" if math.isfinite(lo) else pct(m)
    form = "{:+.2f}" if signed else "{:.3f}"
    if not math.isfinite(m):
        return "n/a"
    return f"{form.format(m)} [{form.format(lo)}, {form.format(hi)}]" if math.isfinite(lo) else form.format(m)


def spread(values: Sequence[float | None], form: Callable[[float], str]) -> str:
    """``mean (min to max)`` over seeds, the single value, or ``n/a`` (undefined values left out)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return form(vals[0])
    return f"{form(statistics.fmean(vals))} ({form(min(vals))} to {form(max(vals))})"


def eps(value: float) -> str:
    """An attack radius: ``k/255`` when it is a whole number of 8-bit steps that ``:g`` would not show
    exactly (``8/255``), else ``:g`` (``0.25``)."""
    steps = value * 255
    short = f"{value:g}"
    if value > 0 and abs(steps - round(steps)) < 1e-9 and float(short) != value:
        return f"{round(steps)}/255"
    return short


def eps_label(text: str) -> str:
    """The radius of an attack label (``0.0313725``, written with ``:g``) as a reader sees it: ``8/255`` when
    it is ``:g`` of a whole number of 8-bit steps, else as it is (labels keep ``:g``: they are column keys)."""
    try:
        value = float(text)
    except ValueError:
        return text
    k = round(value * 255)
    return f"{k}/255" if k > 0 and f"{k / 255:g}" == text and eps(k / 255) != text else text


_SPEC_NUMBER = re.compile(r"\b(eps|step)=([0-9.eE+\-]+)")


def attack_text(spec: str) -> str:
    """An attack spec (``pgd-linf:eps=0.03137254901960784,steps=10``) as a reader sees it: radii and steps
    that are whole 8-bit steps as fractions (``eps=8/255``), every other number as written."""
    return _SPEC_NUMBER.sub(lambda m: f"{m.group(1)}={_number_text(m.group(2))}", spec)


def _number_text(text: str) -> str:
    """A number of a spec as a fraction where :func:`eps` finds one, else exactly as written."""
    try:
        shown = eps(float(text))
    except ValueError:
        return text
    return shown if "/" in shown else text


def p_value(p: float) -> str:
    """A p-value as reports print it: ``< 0.001``, ``0.042``, or ``n/a`` when there is none."""
    return "n/a" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-style Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


__all__ = [
    "attack_text",
    "cell",
    "ci",
    "ci_phrase",
    "difference",
    "eps",
    "interval",
    "markdown_table",
    "num",
    "p_value",
    "pct",
    "points",
    "spread",
]

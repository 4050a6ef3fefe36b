"""The validity guard every verdict goes through: a claim judged on a model that did not train is void.

The checks and every threshold are :mod:`nrflab.measure.health` (:data:`~nrflab.measure.health.THRESHOLDS`);
this module turns them into reasons. A model *did not learn* when its final training accuracy (on its own
training set) is within ``chance_margin`` of chance, when its training loss or metrics are NaN/Inf, or
when it *collapsed*: one class takes at least ``collapse_share`` of its predictions on the test images
(under the protocol the claim is judged with). Two models compared on robustness are at *very unequal
usefulness* when their clean accuracies differ by more than ``usefulness_gap``. Any of these makes the
claim "void: <reason>" (:func:`nrflab.core.stats.judge`), never "agrees" or "disagrees".

Each claim names its subjects: ``learners`` must have learned; ``others`` (e.g. the no-BN twin in "without
BN a network can hardly learn from D_rand", whose failure is the claim) are only checked for NaN;
``comparable`` pairs must be of similar usefulness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from nrflab.core.fmt import interval, pct
from nrflab.core.stats import Verdict, judge
from nrflab.experiments.evidence import Comparison, Outcomes
from nrflab.measure import health as checks
from nrflab.measure.health import THRESHOLDS, Health, Thresholds, top_class
from nrflab.runs.rundir import RunDir


def health(name: str, run_dir: str | Path, outcomes: Outcomes, *, num_classes: int) -> Health:
    """The health of a run's final model: its last metrics row and its predictions on the test images."""
    last = RunDir(run_dir).read_metrics()[-1]
    train_acc = float(last.get("train_acc", math.nan))
    values = [last.get("train_loss", math.nan), last.get("clean_acc", math.nan), train_acc]
    top, share = top_class(outcomes.predictions)
    return Health(
        name,
        num_classes,
        train_acc,
        outcomes.accuracy(),
        top,
        share,
        all(math.isfinite(v) for v in values),
        outcomes.protocol,
    )


def named(name: str, healths: Sequence[Health]) -> list[Health]:
    """Per-seed health records named ``name`` (``name (run k)`` when there are several)."""
    if len(healths) == 1:
        return [replace(healths[0], name=name)]
    return [replace(h, name=f"{name} (run {i + 1})") for i, h in enumerate(healths)]


def void_reason(
    *,
    learners: Sequence[Health] = (),
    others: Sequence[Health] = (),
    comparable: Sequence[tuple[Sequence[Health], Sequence[Health]]] = (),
    thresholds: Thresholds = THRESHOLDS,
) -> str | None:
    """Why a claim on these models cannot be judged, or None when it can (see the module docstring)."""
    reasons: list[str] = []
    for h in [*learners, *others]:
        if not h.finite:
            reasons.append(f"{h.name} diverged (NaN/Inf in its final loss or metrics)")
    for h in learners:
        if not h.finite:
            continue
        if not h.learned(thresholds=thresholds):
            reasons.append(f"{h.name} did not learn (training accuracy {pct(h.train_acc)}, chance {pct(h.chance)})")
        elif h.collapsed(thresholds=thresholds):
            reasons.append(
                f"{h.name} collapsed to one class (class {h.top_class} takes {pct(h.top_share)} of its "
                f"test predictions, {h.protocol} protocol)"
            )
    for group_a, group_b in comparable:
        a = sum(h.clean_acc for h in group_a) / max(len(group_a), 1)
        b = sum(h.clean_acc for h in group_b) / max(len(group_b), 1)
        if not checks.comparable(a, b, thresholds=thresholds):
            name_a, name_b = _group_name(group_a), _group_name(group_b)
            reasons.append(
                f"usefulness very unequal ({name_a} {pct(a)} vs {name_b} {pct(b)} clean accuracy, more "
                f"than {100 * thresholds.usefulness_gap:.0f} points apart)"
            )
    return "; ".join(dict.fromkeys(reasons)) or None


def guarded(v: Verdict, reason: str | None) -> Verdict:
    """``v`` made void when the validity guard found a reason (a verdict judged before its guard ran)."""
    if not reason:
        return v
    return judge(v.claim, v.difference, v.low, v.high, v.evidence, protocol=v.protocol, void_reason=reason)


def _group_name(group: Sequence[Health]) -> str:
    return group[0].name.split(" (run")[0] if group else "?"


def verdict(
    claim: str,
    comparison: Comparison,
    evidence: str,
    *,
    protocol: str,
    seeds: Sequence[int],
    void: str | None,
    unit: str = "points",
) -> Verdict:
    """Judge ``claim`` from a claim-oriented ``comparison`` (positive supports it) with the one rule of
    :func:`nrflab.core.stats.judge`; the protocol, the seeds and how the interval was made are stated."""
    scale = 100.0 if unit == "points" else 1.0
    digits = 1 if unit == "points" else 3
    diff = "n/a" if not math.isfinite(comparison.difference) else f"{scale * comparison.difference:+.{digits}f}"
    text = (
        f"{evidence} Difference {diff} {unit}, 95 % CI "
        f"{interval(comparison.low, comparison.high, scale=scale, digits=digits)}."
    )
    return judge(
        claim,
        comparison.difference,
        comparison.low,
        comparison.high,
        text,
        protocol=f"{protocol}; seeds {', '.join(map(str, seeds))}; {comparison.method}",
        void_reason=void,
    )


__all__ = [
    "Health",
    "verdict",
    "void_reason",
]

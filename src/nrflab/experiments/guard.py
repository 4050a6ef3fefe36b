"""The validity guard every verdict goes through: a claim judged on a model that did not train is void.

A model *did not learn* when its final training accuracy (on its own training set) is within
``CHANCE_MARGIN`` of chance, when its training loss or metrics are NaN/Inf, or when it *collapsed*: one
class takes at least ``COLLAPSE_SHARE`` of its predictions on the test images (under the protocol the
claim is judged with). Two models compared on robustness are at *very unequal usefulness* when their
clean accuracies differ by more than ``USEFULNESS_GAP``. Any of these makes the claim
"void: <reason>" (:func:`nrflab.core.stats.judge`), never "agrees" or "disagrees".

Each claim names its subjects: ``learners`` must have learned; ``others`` (e.g. the no-BN twin in "without
BN a network can hardly learn from D_rand", whose failure is the claim) are only checked for NaN;
``comparable`` pairs must be of similar usefulness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nrflab.core.fmt import interval, pct
from nrflab.core.stats import Verdict, judge
from nrflab.experiments.evidence import Comparison, Outcomes
from nrflab.runs.rundir import RunDir

#: "Near chance": final training accuracy below chance + this.
CHANCE_MARGIN = 0.10
#: "Collapsed to one class": the most frequent prediction takes at least this share of the test images.
COLLAPSE_SHARE = 0.90
#: "Very unequal usefulness": clean accuracies more than this apart.
USEFULNESS_GAP = 0.10


@dataclass(frozen=True)
class Health:
    """What the guard knows about one trained model."""

    name: str
    num_classes: int
    train_acc: float
    clean_acc: float
    top_class: int
    top_share: float
    finite: bool
    protocol: str = "paper"

    @property
    def chance(self) -> float:
        return 1.0 / max(self.num_classes, 1)


def health(name: str, run_dir: str | Path, outcomes: Outcomes, *, num_classes: int) -> Health:
    """The health of a run's final model: its last metrics row and its predictions on the test images."""
    last = RunDir(run_dir).read_metrics()[-1]
    train_acc = float(last.get("train_acc", math.nan))
    values = [last.get("train_loss", math.nan), last.get("clean_acc", math.nan), train_acc]
    top, share = outcomes.top_class()
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
    gap: float = USEFULNESS_GAP,
) -> str | None:
    """Why a claim on these models cannot be judged, or None when it can (see the module docstring)."""
    reasons: list[str] = []
    for h in [*learners, *others]:
        if not h.finite:
            reasons.append(f"{h.name} diverged (NaN/Inf in its final loss or metrics)")
    for h in learners:
        if not h.finite:
            continue
        if not h.train_acc >= h.chance + CHANCE_MARGIN:
            reasons.append(f"{h.name} did not learn (training accuracy {pct(h.train_acc)}, chance {pct(h.chance)})")
        elif h.top_share >= COLLAPSE_SHARE:
            reasons.append(
                f"{h.name} collapsed to one class (class {h.top_class} takes {pct(h.top_share)} of its "
                f"test predictions, {h.protocol} protocol)"
            )
    for group_a, group_b in comparable:
        a = sum(h.clean_acc for h in group_a) / max(len(group_a), 1)
        b = sum(h.clean_acc for h in group_b) / max(len(group_b), 1)
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) > gap:
            name_a, name_b = _group_name(group_a), _group_name(group_b)
            reasons.append(
                f"usefulness very unequal ({name_a} {pct(a)} vs {name_b} {pct(b)} clean accuracy, more "
                f"than {100 * gap:.0f} points apart)"
            )
    return "; ".join(dict.fromkeys(reasons)) or None


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

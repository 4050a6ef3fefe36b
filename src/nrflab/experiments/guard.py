"""The one validity guard every verdict goes through: each compared model is checked on the claim's own
evaluation view, one model at a time, never pooled and never on training accuracy alone.

The checks and every threshold are :mod:`nrflab.measure.health` (:data:`~nrflab.measure.health.THRESHOLDS`);
this module turns them into per-model :class:`~nrflab.core.stats.ModelCheck` records and outcomes. A
*learner* (a model the claim needs to have learned) passes when its metrics are finite, its accuracy on
the claim's view (``Health.clean_acc``: the fixed test images under the claim's protocol, or the better of
two label readings for a conflicting set) is at least chance + ``chance_margin``, and no class takes
``collapse_share`` of its predictions on that view. A learner that fails is

* **void** ("did not train") when its training accuracy is itself within the margin of chance or its
  metrics are NaN/Inf: the claim says nothing;
* **fails under protocol** when it is one of the claim's *subjects* and it trained (training accuracy
  clearly above chance) but fails on the view under the claim's protocol, e.g. the BN twin with its
  running statistics on clean images: that failure is the measured outcome of the claim, with its numbers;
* **void** otherwise ("at chance on <view>"), since the comparison would be between a model that works and
  one that does not.

*Others* (e.g. the no-BN twin of "without BN a network hardly learns from D_rand", whose failure to learn
is the claim) are only checked for NaN/Inf. *Comparable* groups (robustness compared between models) must
have mean view accuracies at most ``usefulness_gap`` apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nrflab.core.fmt import interval, pct
from nrflab.core.stats import MIN_SEEDS, ModelCheck, Verdict, judge
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


def healths(
    name: str, runs: Sequence[str | Path], outcomes: Sequence[Outcomes], *, num_classes: int, view: str = ""
) -> list[Health]:
    """Per-seed health of one model group (runs aligned with their outcomes), named ``name`` (see :func:`named`),
    on ``view`` (the claim's view as reports name it; "": the clean test images under the outcomes' protocol)."""
    found = [health(name, r, o, num_classes=num_classes) for r, o in zip(runs, outcomes, strict=True)]
    return named(name, [replace(h, view=view) for h in found])


def named(name: str, healths: Sequence[Health]) -> list[Health]:
    """Per-seed health records named ``name`` (``name (run k)`` when there are several)."""
    if len(healths) == 1:
        return [replace(healths[0], name=name)]
    return [replace(h, name=f"{name} (run {i + 1})") for i, h in enumerate(healths)]


@dataclass(frozen=True)
class Guard:
    """What the guard found for one claim: each model's check, and the void or fails-under-protocol
    reason (None when the claim can be judged)."""

    checks: tuple[ModelCheck, ...] = ()
    void: str | None = None
    fails: str | None = None


def model_check(h: Health, *, thresholds: Thresholds = THRESHOLDS, learner: bool = True) -> ModelCheck:
    """One model's check on its view (a non-learner is only checked for finite metrics)."""
    view = h.view or f"clean test images, {h.protocol} protocol"
    reason = ""
    if not h.finite:
        reason = "diverged (NaN/Inf in its final loss or metrics)"
    elif learner and h.collapsed(thresholds=thresholds):
        reason = f"collapsed to one class on {view} (class {h.top_class} takes {pct(h.top_share)} of its predictions)"
    elif learner and not checks.learned(h.clean_acc, h.num_classes, thresholds=thresholds):
        reason = f"at chance on {view} ({pct(h.clean_acc)}, chance {pct(h.chance)} + {100 * thresholds.chance_margin:.0f} points)"
    return ModelCheck(
        h.name, view, h.clean_acc, h.chance, thresholds.chance_margin, h.top_share, h.finite, not reason, reason
    )


def check(
    *,
    learners: Sequence[Health] = (),
    subjects: Sequence[Health] = (),
    others: Sequence[Health] = (),
    comparable: Sequence[tuple[Sequence[Health], Sequence[Health]]] = (),
    thresholds: Thresholds = THRESHOLDS,
) -> Guard:
    """The guard of one claim (see the module docstring). ``subjects`` are learners whose failure on the
    view, after they trained, is the claim's measured outcome."""
    subject_names = {h.name for h in subjects}
    models = [*learners, *(h for h in subjects if h.name not in {x.name for x in learners})]
    found = [model_check(h, thresholds=thresholds) for h in models]
    found += [model_check(h, thresholds=thresholds, learner=False) for h in others]
    void: list[str] = []
    fails: list[str] = []
    for h, c in zip([*models, *others], found, strict=True):
        if c.passed:
            continue
        trained = h.finite and h.learned(thresholds=thresholds)
        if h.name in subject_names and trained:
            fails.append(f"{h.name} {c.reason}, though it trained (training accuracy {pct(h.train_acc)})")
        elif h.finite and not trained:
            void.append(f"{h.name} did not train (training accuracy {pct(h.train_acc)}, chance {pct(h.chance)})")
        else:
            void.append(f"{h.name} {c.reason}")
    for group_a, group_b in comparable:
        a = sum(h.clean_acc for h in group_a) / max(len(group_a), 1)
        b = sum(h.clean_acc for h in group_b) / max(len(group_b), 1)
        if not checks.comparable(a, b, thresholds=thresholds):
            void.append(
                f"usefulness very unequal ({_group_name(group_a)} {pct(a)} vs {_group_name(group_b)} {pct(b)} "
                f"accuracy, more than {100 * thresholds.usefulness_gap:.0f} points apart)"
            )
    return Guard(tuple(found), "; ".join(dict.fromkeys(void)) or None, "; ".join(dict.fromkeys(fails)) or None)


def void_reason(
    *,
    learners: Sequence[Health] = (),
    others: Sequence[Health] = (),
    comparable: Sequence[tuple[Sequence[Health], Sequence[Health]]] = (),
    thresholds: Thresholds = THRESHOLDS,
) -> str | None:
    """Why a claim on these models cannot be judged, or None when it can (:func:`check` without subjects)."""
    return check(learners=learners, others=others, comparable=comparable, thresholds=thresholds).void


def _group_name(group: Sequence[Health]) -> str:
    return group[0].name.split(" (run")[0] if group else "?"


def verdict(
    claim: str,
    comparison: Comparison,
    evidence: str,
    *,
    protocol: str,
    seeds: Sequence[int],
    void: str | Guard | None,
    unit: str = "points",
    claim_id: str = "",
    experiment: str = "",
    family: str = "",
    min_seeds: int = MIN_SEEDS,
) -> Verdict:
    """Judge ``claim`` from a claim-oriented ``comparison`` (positive supports it) with the one rule of
    :func:`nrflab.core.stats.judge`; the protocol, the seeds and how the interval was made are stated.

    ``void`` is the claim's :class:`Guard` (or, from older callers, a void reason). A comparison made over
    fewer than ``min_seeds`` paired seeds is "not tested".
    """
    guard = void if isinstance(void, Guard) else Guard(void=void)
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
        protocol=f"{protocol}; seeds {', '.join(map(str, seeds))}",
        void_reason=guard.void,
        fails_reason=guard.fails,
        n_seeds=comparison.n_seeds,
        min_seeds=min_seeds,
        p=comparison.p,
        claim_id=claim_id,
        experiment=experiment,
        family=family,
        unit=unit,
        guard=guard.checks,
        method=comparison.method,
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

"""Health of a trained model: did it learn, did it collapse to one class, are two models of comparable
usefulness, can it learn a feature at all. Every threshold lives here, once, in :data:`THRESHOLDS`.

A claim judged on a model that did not learn, collapsed or diverged says nothing, and robustness numbers
of two models of very unequal usefulness are not comparable. :mod:`nrflab.experiments.guard` turns these
checks into the "void: <reason>" of every verdict; the planted experiment's capability gate and
learned-seed filter, and the void rows of BN surgery, read the same thresholds.

Where the four guards of earlier versions disagreed, one value was chosen:

* *learned*: at least chance + 0.10 (the experiments' guard). BN surgery used "under 2 / classes"
  (the same for 10 classes; stricter for fewer, looser for more);
* *comparable usefulness*: clean accuracies at most 0.10 apart, either way (the guard). BN surgery used
  "under half the original's": a variant 10 to 50 % below the original (or more than 10 points above
  it) is now void there too;
* *capable* and *learned the set* (planted): 0.90, as before (both planted thresholds agreed);
* *follows*: 0.50, the planted claims' "the BN twin learns D_rand" / "follows either feature".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nrflab.core.records import record


@dataclass(frozen=True)
class Thresholds:
    """The named thresholds of every validity check (fractions in [0, 1])."""

    #: learned: accuracy at least chance + this.
    chance_margin: float = 0.10
    #: collapsed: the most frequent prediction takes at least this share of the test images.
    collapse_share: float = 0.90
    #: comparable usefulness: clean accuracies at most this far apart.
    usefulness_gap: float = 0.10
    #: capable / learned the set: accuracy (the median seed's, for capability) at least this.
    capable: float = 0.90
    #: follows a feature: at least this share of predictions agree with it.
    follows: float = 0.50


THRESHOLDS = Thresholds()


def chance(num_classes: int) -> float:
    """The accuracy of guessing: 1 / classes."""
    return 1.0 / max(num_classes, 1)


def learned(accuracy: float, num_classes: int, *, thresholds: Thresholds = THRESHOLDS) -> bool:
    """Whether an accuracy is clearly above chance (NaN: no)."""
    return accuracy >= chance(num_classes) + thresholds.chance_margin


def comparable(a: float, b: float, *, thresholds: Thresholds = THRESHOLDS) -> bool:
    """Whether two clean accuracies are close enough for their robustness to be compared (NaN: yes,
    nothing to say)."""
    return not (math.isfinite(a) and math.isfinite(b) and abs(a - b) > thresholds.usefulness_gap)


def capable(values: Sequence[float], *, minimum: float = THRESHOLDS.capable) -> bool:
    """Whether the median of the finite ``values`` (one per seed) reaches ``minimum``: one seed lost to an
    optimization blow-up does not make a feature unlearnable."""
    vals = [v for v in values if math.isfinite(v)]
    return bool(vals) and statistics.median(vals) >= minimum


def top_class(predictions: torch.Tensor) -> tuple[int, float]:
    """The most frequent prediction and its share of the images."""
    counts = torch.bincount(predictions)
    k = int(counts.argmax())
    return k, float(counts[k]) / max(int(predictions.shape[0]), 1)


@record
class Health:
    """What the validity checks know about one trained model: its final training accuracy, its clean
    accuracy and most frequent prediction on the test images (under ``protocol``), whether its final
    loss and metrics are finite."""

    name: str
    num_classes: int
    train_acc: float
    clean_acc: float
    top_class: int
    top_share: float
    finite: bool
    protocol: str = "paper"
    #: The view ``clean_acc`` was measured on, as reports name it ("" : the clean test images under ``protocol``).
    view: str = ""

    @property
    def chance(self) -> float:
        return chance(self.num_classes)

    def learned(self, *, thresholds: Thresholds = THRESHOLDS) -> bool:
        """Training accuracy clearly above chance (whether it trained at all; the guard judges the claim's
        view on ``clean_acc``)."""
        return learned(self.train_acc, self.num_classes, thresholds=thresholds)

    def collapsed(self, *, thresholds: Thresholds = THRESHOLDS) -> bool:
        """One class takes most of the test predictions."""
        return self.top_share >= thresholds.collapse_share


def chance_warning(clean_acc: float, num_classes: int) -> str:
    """Why a model's numbers say nothing about its features (clean accuracy near chance), or ""."""
    if learned(clean_acc, num_classes):
        return ""
    return (
        f"clean accuracy {100 * clean_acc:.1f} % is within {100 * THRESHOLDS.chance_margin:.0f} points of chance "
        f"({100 * chance(num_classes):.0f} %): its robustness and LIGS say nothing about its features"
    )


__all__ = ["Health", "THRESHOLDS", "Thresholds", "chance", "top_class"]

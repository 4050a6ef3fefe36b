"""Transfer success: the one definition of which adversarial examples count and which of them transfer.

An example crafted on a *source* model is **eligible** for a *target* when the source classifies it
correctly when clean, the attack fools the source (untargeted: the source's prediction is not the label;
targeted: the source predicts the target class), and the target classifies it correctly when clean.
**Transfer success** is the fraction of eligible examples that fool the target too (untargeted: the
target's prediction is not the label; targeted: the target predicts the target class). With no eligible
example the rate is undefined (NaN), never 0.

The transfer matrix, BN surgery (a variant as the source, the original model as the target) and the
planted experiment's claim 6 all count with :func:`eligible` and :func:`success`.
"""

from __future__ import annotations

import math

import torch

from nrflab.core.records import record
from nrflab.core.stats import wilson

ELIGIBLE = (
    "examples the source classifies correctly when clean, that fool the source after the attack "
    "(untargeted: source prediction != true label; targeted: source predicts the target class), "
    "and that the target classifies correctly when clean"
)
SUCCESS = (
    "among eligible examples, the fraction on which the target is fooled too (untargeted: "
    "target prediction != true label; targeted: target predicts the target class)"
)

#: The two definitions, keyed as the transfer records name them (written into every record and summary).
DEFINITIONS = {"eligible": ELIGIBLE, "transfer_success": SUCCESS}

IN_BRIEF = (
    "the share of eligible examples (source right when clean and fooled by the attack, target right "
    "when clean) that fool the target"
)


def fooled(pred: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Per example: does the prediction show the attack worked (not the label; or the target class)?"""
    return pred == targets if targets is not None else pred != labels


def eligible(
    *,
    source_clean: torch.Tensor,
    source_adv: torch.Tensor,
    target_clean: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per example (predictions in, a boolean mask out): eligible for transfer (see the module docstring).

    ``targets``: the target classes of a targeted attack (None: untargeted)."""
    return (source_clean == labels) & fooled(source_adv, labels, targets) & (target_clean == labels)


def success(
    *, eligible_mask: torch.Tensor, target_adv: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Per example: eligible and the target is fooled by the transferred example too."""
    return eligible_mask & fooled(target_adv, labels, targets)


@record
class TransferRate:
    """Successes among eligible examples, with the rate (NaN when none is eligible) and its 95 % Wilson
    interval."""

    eligible: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.eligible if self.eligible else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return wilson(self.successes, self.eligible)


def transfer_rate(
    *,
    source_clean: torch.Tensor,
    source_adv: torch.Tensor,
    target_clean: torch.Tensor,
    target_adv: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> TransferRate:
    """Count eligible examples and successes from the four predictions (see the module docstring)."""
    mask = eligible(
        source_clean=source_clean, source_adv=source_adv, target_clean=target_clean, labels=labels, targets=targets
    )
    hits = success(eligible_mask=mask, target_adv=target_adv, labels=labels, targets=targets)
    return TransferRate(eligible=int(mask.sum()), successes=int(hits.sum()))


__all__ = ["DEFINITIONS", "IN_BRIEF", "TransferRate", "transfer_rate"]

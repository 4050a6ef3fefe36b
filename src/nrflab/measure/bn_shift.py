"""BN statistics under a distribution shift: how much of the accuracy a shift costs comes back when BN's running
statistics are re-estimated on a few images of the shifted domain (Benz et al., WACV 2021, "Revisiting Batch
Normalization for Improving Corruption Robustness"; Schneider et al., NeurIPS 2020).

For each shift (a common corruption at a severity, ``gaussian_noise@3``): the model's accuracy on the clean test
images, on the same images shifted (running statistics as trained), and on them after *adaptation*: a deep copy
whose BN statistics are reset and estimated on ``n`` training images (never the evaluated ones) shifted the same
way (``n = 32`` by default, as in the WACV paper; no labels used). The recovered accuracy (adapted - shifted)
comes with a paired 95 % interval over the test images: it describes this one model, not a training procedure.
The user's model never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.core.fmt import pct
from nrflab.core.records import record
from nrflab.core.stats import paired_ci
from nrflab.measure.bn_variants import batchnorm_layers, recalibrated_variant
from nrflab.measure.corruptions import SEVERITIES, available_corruptions, corrupt
from nrflab.measure.predict import predict

#: Adaptation images by default (the WACV paper's n).
ADAPT_SAMPLES = 32


def parse_shift(text: str) -> tuple[str, int]:
    """``"gaussian_noise@3"`` -> ("gaussian_noise", 3); one line naming the known corruptions otherwise."""
    name, sep, severity = text.strip().partition("@")
    known = available_corruptions()
    if name not in known:
        raise NrflabError(f"unknown shift {text!r}: use CORRUPTION@SEVERITY with a corruption among {', '.join(known)}")
    if not sep or severity not in {str(s) for s in SEVERITIES}:
        raise NrflabError(f"shift {text!r} needs a severity 1-5 after '@' (e.g. {name}@3)")
    return name, int(severity)


@record
class ShiftRow:
    """One shift: accuracies without and with adaptation, and the recovered accuracy's paired interval."""

    shift: str
    clean_acc: float
    shifted_acc: float
    adapted_acc: float
    recovered: float
    low: float
    high: float


@record
class ShiftAdaptation:
    """BN statistics adapted to each shift on ``adapt_samples`` shifted training images."""

    adapt_samples: int
    num_samples: int
    seed: int
    rows: tuple[ShiftRow, ...]

    def lines(self) -> list[str]:
        """One line per shift, for a terminal or a report."""
        out = [
            f"BN statistics adapted on {self.adapt_samples} shifted training images (no labels), "
            f"{self.num_samples} test images; recovered = adapted - shifted, paired 95 % interval over images:"
        ]
        for r in self.rows:
            out.append(
                f"- {r.shift}: clean {pct(r.clean_acc)}, shifted {pct(r.shifted_acc)}, adapted {pct(r.adapted_acc)}; "
                f"recovered {100 * r.recovered:+.1f} points [{100 * r.low:+.1f}, {100 * r.high:+.1f}]"
            )
        return out


def adapt_to_shifts(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    adapt_images: torch.Tensor,
    shifts: Sequence[str],
    n: int = ADAPT_SAMPLES,
    seed: int = 0,
    batch_size: int = 256,
) -> ShiftAdaptation:
    """Each shift's accuracy without and with BN statistics adapted on ``n`` of ``adapt_images`` (clean images
    disjoint from ``x``, shifted here with another seed than the test images). ``model`` is unchanged."""
    if not batchnorm_layers(model):
        raise NrflabError("shift adaptation needs a model with BatchNorm layers (a model without BN has no statistics)")
    if n < 2 or adapt_images.shape[0] < n:
        raise NrflabError(
            f"shift adaptation needs n >= 2 and at least n adaptation images (n {n}, {adapt_images.shape[0]} images)"
        )
    parsed = [parse_shift(s) for s in shifts]
    model = model.eval()
    clean = _correct(model, x, y, batch_size)
    rows = []
    for name, severity in parsed:
        shifted_x = corrupt(x, name, severity, seed=seed)
        adapt = corrupt(adapt_images[:n], name, severity, seed=seed + 1)
        shifted, adapted = adapted_accuracy(model, shifted_x, y, adapt_images=adapt, batch_size=batch_size)
        d, lo, hi = paired_ci(adapted.tolist(), shifted.tolist())
        row = ShiftRow(
            f"{name}@{severity}", float(clean.mean()), float(shifted.mean()), float(adapted.mean()), d, lo, hi
        )
        rows.append(row)
    return ShiftAdaptation(n, int(y.shape[0]), seed, tuple(rows))


def adapted_accuracy(
    model: nn.Module, shifted_x: torch.Tensor, y: torch.Tensor, *, adapt_images: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image of the shifted test set: correct with the running statistics, and correct with the statistics
    re-estimated on ``adapt_images`` (already shifted)."""
    adapted_model = recalibrated_variant(model, adapt_images, batch_size=batch_size)
    return _correct(model, shifted_x, y, batch_size), _correct(adapted_model, shifted_x, y, batch_size)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return (predict(model, x, batch_size=batch_size).cpu() == y.cpu()).float()


__all__ = ["adapted_accuracy"]

"""The framework's row: usefulness (clean accuracy), robust usefulness (robust accuracy per attack) and
the robustness of the used features (LIGS), computed once, here, per image and then summarized.

:func:`image_outcomes` keeps per image what a model does on fixed images (its prediction under a
protocol, whether it is still right under each attack, its LIGS); :meth:`ImageOutcomes.summary` turns
that into the frozen :class:`FrameworkRow`. The trainer's per-epoch evaluation, the experiments' per-image
evidence, the planted experiment's final numbers, BN surgery and ``nrflab evaluate`` all go through it.

Per-image tensors stay on the images' device (a GPU caller synchronizes once, in ``summary``).
Predictions go through :func:`nrflab.measure.predict.predict`; attacks are untargeted on the true labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import field

import torch
from torch import nn

from nrflab.attacks import Attack
from nrflab.core.columns import CLEAN, LIGS, LOGIT_SIM, attack_of, robust_key
from nrflab.core.modules import model_device
from nrflab.core.records import record
from nrflab.measure.ligs import LigsResult, ligs_per_sample
from nrflab.measure.predict import PAPER, Protocol, predict


@record
class FrameworkRow:
    """The framework's row for one model on one set of images.

    usefulness = ``clean_acc``; robust usefulness = ``robust_acc[attack]``; robustness of the used
    features = ``ligs`` (None when not measured).
    """

    clean_acc: float
    robust_acc: Mapping[str, float] = field(default_factory=dict)
    ligs: float | None = None
    logit_sim: float | None = None
    num_samples: int = 0

    def row(self) -> dict[str, float]:
        """Flat metric columns, as in metrics.csv."""
        out = {CLEAN: self.clean_acc}
        out.update({robust_key(k): v for k, v in self.robust_acc.items()})
        if self.ligs is not None:
            out[LIGS] = self.ligs
        if self.logit_sim is not None:
            out[LOGIT_SIM] = self.logit_sim
        return out

    @classmethod
    def from_row(cls, row: Mapping[str, float], *, num_samples: int = 0) -> FrameworkRow:
        """Read back a metrics row (NaN LIGS counts as not measured)."""
        ligs = row.get(LIGS)
        sim = row.get(LOGIT_SIM)
        return cls(
            clean_acc=float(row[CLEAN]),
            robust_acc={a: float(row[k]) for k in row if (a := attack_of(k)) is not None},
            ligs=None if ligs is None or math.isnan(ligs) else float(ligs),
            logit_sim=None if sim is None or math.isnan(sim) else float(sim),
            num_samples=num_samples,
        )


@record(eq=False)
class ImageOutcomes:
    """One model on fixed images, per image: the label, the clean prediction (under ``protocol``), whether
    it is right under each attack (by attack label), LIGS (None when not measured), and the adversarial
    images when they were kept."""

    labels: torch.Tensor
    predictions: torch.Tensor
    robust: Mapping[str, torch.Tensor] = field(default_factory=dict)
    ligs: LigsResult | None = None
    protocol: str = PAPER.name
    adversarial: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def clean_correct(self) -> torch.Tensor:
        """True where the clean prediction is the label."""
        return self.predictions == self.labels

    def summary(self) -> FrameworkRow:
        """The :class:`FrameworkRow` of these outcomes (exact fractions; one device synchronization)."""
        counts = torch.stack([self.clean_correct.sum(), *(r.sum() for r in self.robust.values())]).tolist()
        n = max(self.n, 1)
        return FrameworkRow(
            clean_acc=counts[0] / n,
            robust_acc={label: c / n for label, c in zip(self.robust, counts[1:], strict=True)},
            ligs=None if self.ligs is None else self.ligs.ligs,
            logit_sim=None if self.ligs is None else self.ligs.logit_sim,
            num_samples=self.n,
        )


def robust_correct(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    *,
    batch_size: int = 256,
    check_inputs: bool = True,
    keep: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per image (on ``x``'s device): is ``model`` still right on ``attack``'s adversarial example?

    Crafted batch by batch on the model's device (untargeted, true labels), predicted in eval mode.
    ``check_inputs=False`` skips the attack's [0,1] check for images checked once by the caller; with
    ``keep`` the adversarial batches are appended to it (on ``x``'s device)."""
    device = model_device(model)
    correct = []
    for start in range(0, int(x.shape[0]), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        x_adv = attack.apply(xb, yb, check_inputs=check_inputs)
        correct.append(predict(model, x_adv, batch_size=batch_size) == yb)
        if keep is not None:
            keep.append(x_adv.to(x.device))
    if not correct:
        return torch.zeros(0, dtype=torch.bool, device=x.device)
    return torch.cat(correct).to(x.device)


def image_outcomes(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attacks: Sequence[tuple[str, Attack]] = (),
    ligs_sigma: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
    protocol: Protocol = PAPER,
    ligs_noise: torch.Tensor | None = None,
    check_inputs: bool = True,
    keep_adversarial: bool = False,
    progress: bool = False,
) -> ImageOutcomes:
    """What ``model`` does on each image of ``(x, y)``: the clean prediction under ``protocol`` (with
    ``seed`` ordering a shuffled protocol), correctness under each ``(label, attack)``, and LIGS with
    ``ligs_sigma`` (None: not measured; ``ligs_noise`` is its precomputed draw). The model is left as it
    was. Results do not depend on ``batch_size`` (attacks and LIGS key their noise on each image)."""
    from tqdm.auto import tqdm

    preds = predict(model, x, protocol=protocol, batch_size=batch_size, seed=seed)
    robust: dict[str, torch.Tensor] = {}
    adversarial: dict[str, torch.Tensor] = {}
    for label, attack in tqdm(attacks, desc="attacks", disable=not progress, leave=False):
        kept: list[torch.Tensor] | None = [] if keep_adversarial else None
        robust[label] = robust_correct(model, x, y, attack, batch_size=batch_size, check_inputs=check_inputs, keep=kept)
        if kept is not None:
            adversarial[label] = torch.cat(kept) if kept else x[:0]
    ligs = None
    if ligs_sigma is not None:
        ligs = ligs_per_sample(model, x, y, sigma=ligs_sigma, seed=seed, batch_size=batch_size, noise=ligs_noise)
    return ImageOutcomes(y, preds, robust, ligs, protocol.name, adversarial)


__all__ = ["image_outcomes"]

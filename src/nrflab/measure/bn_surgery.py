"""BN surgery: is it BatchNorm's statistics or its affine that makes a model vulnerable?

For any model with BatchNorm layers, five variants of the same trained weights, each a deep copy (the
user's model never changes):

* ``running`` -- as trained and deployed: normalization with the running statistics (eval mode);
* ``batch`` -- normalization with the statistics of the batch being evaluated (BN as in training), the
  running buffers untouched. Predictions then depend on the batch: every number of this variant is
  measured on batches of ``batch_size`` images, clean or adversarial as the row says. The attack on it
  also moves the batch's statistics, which the normalization partly undoes: a higher white-box robust
  accuracy here is not by itself evidence of more robust features (see its LIGS and its transfer);
* ``recalibrated`` -- running statistics reset and re-estimated on clean training images (cumulative
  average over ``N`` images, ``momentum=None``), then used as in ``running``;
* ``affine-only`` -- normalization removed, the learned affine kept: ``y = gamma * x + beta`` (the
  ``bn-eval`` idea applied after training). A model trained with BN usually does not survive this; its
  row is then void (clean accuracy near chance or far from the original's) and says so;
* ``folded`` -- every BN folded into the convolution before it (``torch.fx`` conv-BN fusion), the rest
  turned into per-channel affines: the same function as ``running`` up to float rounding (checked and
  reported as ``max_fold_error``), without any normalization layer left.

For each variant: the framework's row (clean accuracy, robust accuracy per attack, LIGS), its agreement
with the original's clean predictions, and the transfer of adversarial examples crafted on the variant
to the original model (success among eligible examples, :mod:`nrflab.measure.transfer_rate`). A row is
void when its clean accuracy is near chance or not comparable to the original's (:mod:`nrflab.measure.health`). Differences to
the ``running`` row come with paired 95 % intervals over images.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nrflab.attacks import AttackSpec
from nrflab.core.errors import NrflabError
from nrflab.core.fmt import pct
from nrflab.core.modules import frozen_model, model_device
from nrflab.core.records import record, to_json
from nrflab.core.stats import paired_ci
from nrflab.measure.bn_shift import ShiftAdaptation
from nrflab.measure.bn_variants import VARIANT_DESCRIPTIONS, VARIANTS, FoldInfo, batchnorm_layers, make_variants
from nrflab.measure.framework import image_outcomes
from nrflab.measure.health import THRESHOLDS, comparable, learned
from nrflab.measure.predict import predict
from nrflab.measure.transfer_rate import transfer_rate

# ---------------------------------------------------------------------------------------------
# The analysis


@record
class TransferNumbers:
    """Adversarial examples crafted on a variant, evaluated on the original model.

    ``eligible``: the variant classifies the image correctly when clean, the attack fools the variant, and
    the original classifies it correctly when clean; ``success_rate``: among them, the fraction that fools
    the original (95 % Wilson interval). ``original_accuracy``: the original's accuracy on all of them.
    """

    eligible: int
    successes: int
    success_rate: float
    ci: tuple[float, float]
    original_accuracy: float


@dataclass(frozen=True)
class VariantResult:
    """One variant's row: the framework's numbers, agreement with the original, transfer to it."""

    variant: str
    description: str
    clean_acc: float
    robust_acc: Mapping[str, float]
    ligs: float | None
    logit_sim: float | None
    agreement: float
    whitebox_success: Mapping[str, float]
    transfer: Mapping[str, TransferNumbers]
    void: str | None = None
    clean_correct: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool), repr=False)
    robust_correct: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)
    ligs_values: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.variant,
            "description": self.description,
            "clean_acc": self.clean_acc,
            "robust_acc": dict(self.robust_acc),
            "ligs": self.ligs,
            "logit_sim": self.logit_sim,
            "agreement_with_original": self.agreement,
            "whitebox_success": dict(self.whitebox_success),
            "transfer_to_original": to_json(self.transfer),
            "void": self.void,
        }


@dataclass(frozen=True)
class Difference:
    """A variant minus ``running`` on the same images: mean of per-image differences and its 95 % interval."""

    variant: str
    metric: str
    difference: float
    low: float
    high: float

    @property
    def word(self) -> str:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "no interval"
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "no detectable difference"

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.variant,
            "metric": self.metric,
            "difference": self.difference,
            "ci": [self.low, self.high],
            "reading": self.word,
        }


@dataclass(frozen=True)
class BnAnalysis:
    """The BN diagnosis of one model on one set of images (see the module docstring)."""

    model: Mapping[str, Any]
    dataset: str
    num_samples: int
    calibration_images: int
    attacks: Mapping[str, str]
    seed: int
    batch_size: int
    ligs_sigma: float | None
    bn_layers: int
    variants: tuple[VariantResult, ...]
    differences: tuple[Difference, ...]
    fold: FoldInfo | None
    max_fold_error: float | None
    #: BN statistics adapted to shifted domains (``bn-analysis --shift``), when asked.
    shift: ShiftAdaptation | None = None

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    @property
    def protocol(self) -> str:
        attacks = "; ".join(f"{k} = {v}" for k, v in self.attacks.items()) or "none"
        ligs = f"LIGS sigma {self.ligs_sigma:g}" if self.ligs_sigma is not None else "no LIGS"
        return (
            f"{self.num_samples} test images of {self.dataset}; attacks {attacks} (untargeted, true labels, each "
            f"crafted on the variant itself); {ligs}; seed {self.seed}; batches of {self.batch_size}; "
            f"recalibration on {self.calibration_images} clean training images; intervals: paired t over images "
            f"(differences), Wilson (transfer)"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "model": dict(self.model),
            "dataset": self.dataset,
            "num_samples": self.num_samples,
            "calibration_images": self.calibration_images,
            "attacks": dict(self.attacks),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "ligs_sigma": self.ligs_sigma,
            "bn_layers": self.bn_layers,
            "protocol": self.protocol,
            "variants": [v.to_dict() for v in self.variants],
            "differences_to_running": [d.to_dict() for d in self.differences],
            "fold": to_json(self.fold),
            "max_fold_error": self.max_fold_error,
            "shift_adaptation": to_json(self.shift),
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the framework table (percentages as text)."""
        labels = list(self.attacks)
        header = ["variant", "clean acc %"] + [f"robust acc % [{a}]" for a in labels] + ["LIGS", "agrees w/ original %"]
        header += [f"transfer to original % [{a}] (95 % CI)" for a in labels] + ["note"]
        rows = []
        for v in self.variants:
            row = [v.variant, pct(v.clean_acc, unit=False)] + [pct(v.robust_acc[a], unit=False) for a in labels]
            row += ["n/a" if v.ligs is None or math.isnan(v.ligs) else f"{v.ligs:.3f}", pct(v.agreement, unit=False)]
            for a in labels:
                t = v.transfer.get(a)
                row.append(
                    "n/a"
                    if t is None or t.eligible == 0
                    else f"{pct(t.success_rate, unit=False)} [{pct(t.ci[0], unit=False)}, {pct(t.ci[1], unit=False)}] n={t.eligible}"
                )
            row.append(f"void: {v.void}" if v.void else ("white-box (self)" if v.variant == "running" else ""))
            rows.append(row)
        return header, rows

    def summary_lines(self) -> list[str]:
        """The variants' table, aligned, then the reading of it (what ``nrflab bn-analysis`` prints)."""
        header, rows = self.table()
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        table = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        shift = ["", *self.shift.lines()] if self.shift is not None else []
        return [*table, "", *self.reading(), *shift]

    def reading(self) -> list[str]:
        """One line per variant and metric: the difference to running with its interval, in words."""
        lines = []
        for d in self.differences:
            scale, digits, unit = (100.0, 1, " pp") if d.metric != "ligs" else (1.0, 3, "")
            ci = f"[{scale * d.low:+.{digits}f}, {scale * d.high:+.{digits}f}]" if math.isfinite(d.low) else "[n/a]"
            value = f"{scale * d.difference:+.{digits}f}{unit}"
            void = self.variant(d.variant).void
            lines.append(
                f"- {d.variant} vs running, {d.metric}: {value} {ci}: {d.word}" + (f" (void: {void})" if void else "")
            )
        return lines

    def markdown(self) -> str:
        from nrflab.core.fmt import markdown_table

        header, rows = self.table()
        parts = [
            f"# BN surgery: {self.model.get('name', 'model')} on {self.dataset}",
            "",
            f"Protocol: {self.protocol}.",
            "",
            markdown_table(header, rows),
            "",
            "Variants: " + "; ".join(f"**{v.variant}**: {v.description}" for v in self.variants) + ".",
            "",
        ]
        if self.fold is not None:
            parts += [
                f"Folding: {self.fold.folded_into_conv} of {self.bn_layers} BN layers folded into convolutions, "
                f"{self.fold.as_affine} kept as per-channel affines"
                + (f" ({self.fold.reason})" if self.fold.reason else "")
                + (
                    f"; largest logit difference to running: {self.max_fold_error:.2e}"
                    if self.max_fold_error is not None
                    else ""
                )
                + ".",
                "",
            ]
        parts += ["## Differences to running (paired over images, 95 % interval)", ""] + self.reading()
        parts += [
            "",
            "Reading: rows that differ from running only in the statistics (batch, recalibrated) isolate the "
            "role of the statistics; affine-only removes the normalization and keeps the learned affine. A void "
            "row does not classify (or far worse than the original), so its robustness numbers say nothing "
            "about features. The batch-statistics variant couples the images of a batch: an attack on it also "
            "moves the batch's statistics, which the normalization partly undoes, so its white-box robust "
            "accuracy can exceed running's without more robust features -- its LIGS and the transfer of its "
            "adversarial examples to the original tell.",
        ]
        if self.shift is not None:
            parts += ["", "## BN statistics under shift", "", *self.shift.lines()]
        return "\n".join(parts) + "\n"


def _ratio(mask: torch.Tensor) -> float:
    """The exact fraction of True entries."""
    return int(mask.sum()) / max(1, int(mask.numel()))


def _void(clean_acc: float, base_clean: float, classes: int) -> str | None:
    """Why a variant's row says nothing about features (see :mod:`nrflab.measure.health`), or None."""
    if not learned(clean_acc, classes):
        return f"clean accuracy {100 * clean_acc:.1f} % is near chance ({100 / classes:.0f} %)"
    if not comparable(clean_acc, base_clean):
        return (
            f"clean accuracy {100 * clean_acc:.1f} % is more than {100 * THRESHOLDS.usefulness_gap:.0f} points "
            f"from the original's {100 * base_clean:.1f} %: its robustness numbers are not comparable"
        )
    return None


def _variant_result(
    name: str,
    variant: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    original: nn.Module,
    orig_clean: torch.Tensor,
    *,
    attacks: Sequence[AttackSpec],
    seed: int,
    batch_size: int,
    ligs_sigma: float | None,
    classes: int,
    base_clean: float | None,
) -> VariantResult:
    """One variant's framework row (through :func:`image_outcomes`), agreement and transfer to the original."""
    seen = image_outcomes(
        variant,
        x,
        y,
        attacks=[(spec.label, spec.build(variant, seed=seed)) for spec in attacks],
        ligs_sigma=ligs_sigma,
        seed=seed,
        batch_size=batch_size,
        keep_adversarial=True,
    )
    row = seen.summary()
    clean_correct = seen.clean_correct
    whitebox, transfer = {}, {}
    for spec in attacks:
        adv = seen.adversarial[spec.label]
        adv_pred = predict(variant, adv, batch_size=batch_size)
        fooled = adv_pred != y
        k_wb, n_wb = int((clean_correct & fooled).sum()), int(clean_correct.sum())
        whitebox[spec.label] = k_wb / n_wb if n_wb else math.nan
        orig_adv = adv_pred if name == "running" else predict(original, adv, batch_size=batch_size)
        rate = transfer_rate(
            source_clean=seen.predictions, source_adv=adv_pred, target_clean=orig_clean, target_adv=orig_adv, labels=y
        )
        transfer[spec.label] = TransferNumbers(rate.eligible, rate.successes, rate.rate, rate.ci, _ratio(orig_adv == y))
    return VariantResult(
        name,
        VARIANT_DESCRIPTIONS[name],
        row.clean_acc,
        row.robust_acc,
        row.ligs,
        row.logit_sim,
        _ratio(seen.predictions == orig_clean),
        whitebox,
        transfer,
        _void(row.clean_acc, row.clean_acc if base_clean is None else base_clean, classes),
        clean_correct,
        dict(seen.robust),
        None if seen.ligs is None else seen.ligs.gradient_similarity,
    )


def analyze_batchnorm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attacks: Sequence[AttackSpec],
    calibration_images: torch.Tensor | None,
    variants: Sequence[str] = VARIANTS,
    seed: int = 0,
    batch_size: int = 256,
    ligs_sigma: float | None = 0.01,
    num_classes: int | None = None,
    dataset: str = "dataset",
    model_info: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> BnAnalysis:
    """Run the BN diagnosis: each variant's framework row and its transfer to the original (``running``).

    Works on deep copies only; ``model`` (parameters, buffers, mode) is unchanged afterwards.
    """
    from tqdm.auto import tqdm

    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise NrflabError(f"need images and as many labels, got {x.shape[0]} and {y.shape[0]}")
    names = list(dict.fromkeys(["running", *variants]))
    built, fold = make_variants(model, calibration_images=calibration_images, batch_size=batch_size, variants=names)
    classes = num_classes or int(y.max()) + 1
    x, y = x.detach().cpu(), y.detach().cpu()
    original = built["running"]
    orig_clean = predict(original, x, batch_size=batch_size)
    results: list[VariantResult] = []
    measure_variant = functools.partial(
        _variant_result, attacks=attacks, seed=seed, batch_size=batch_size, ligs_sigma=ligs_sigma, classes=classes
    )
    for name in tqdm(names, desc="variants", disable=not progress, leave=False):
        base = results[0].clean_acc if results else None  # "running" comes first
        results.append(measure_variant(name, built[name], x, y, original, orig_clean, base_clean=base))
    folded = built.get("folded")
    return BnAnalysis(
        model=dict(model_info or {"name": type(model).__name__}),
        dataset=dataset,
        num_samples=int(y.shape[0]),
        calibration_images=int(calibration_images.shape[0])
        if calibration_images is not None and "recalibrated" in names
        else 0,
        attacks={s.label: s.to_string() for s in attacks},
        seed=seed,
        batch_size=batch_size,
        ligs_sigma=ligs_sigma,
        bn_layers=len(batchnorm_layers(model)),
        variants=tuple(results),
        differences=tuple(_differences(results, [s.label for s in attacks])),
        fold=fold,
        max_fold_error=None if folded is None else _max_logit_difference(original, folded, x, batch_size),
    )


def _differences(results: Sequence[VariantResult], labels: Sequence[str]) -> list[Difference]:
    """Each variant minus running, paired over images (LIGS: images with a finite value in both)."""
    base = next(r for r in results if r.variant == "running")
    out = []
    for r in results:
        if r.variant == "running":
            continue
        d, lo, hi = paired_ci(r.clean_correct.float().tolist(), base.clean_correct.float().tolist())
        out.append(Difference(r.variant, "clean acc", d, lo, hi))
        for a in labels:
            d, lo, hi = paired_ci(r.robust_correct[a].float().tolist(), base.robust_correct[a].float().tolist())
            out.append(Difference(r.variant, f"robust acc [{a}]", d, lo, hi))
        if r.ligs_values is not None and base.ligs_values is not None:
            d, lo, hi = paired_ci(r.ligs_values.tolist(), base.ligs_values.tolist())
            out.append(Difference(r.variant, "ligs", d, lo, hi))
    return out


def _max_logit_difference(a: nn.Module, b: nn.Module, x: torch.Tensor, batch_size: int) -> float:
    worst = 0.0
    with torch.no_grad(), frozen_model(a, "eval"), frozen_model(b, "eval"):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(model_device(a))
            worst = max(worst, float((a(xb) - b(xb.to(model_device(b)))).abs().max()))
    return worst


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

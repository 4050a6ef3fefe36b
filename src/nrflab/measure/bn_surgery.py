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
  row is then void (clean accuracy near chance or under half the original's) and says so;
* ``folded`` -- every BN folded into the convolution before it (``torch.fx`` conv-BN fusion), the rest
  turned into per-channel affines: the same function as ``running`` up to float rounding (checked and
  reported as ``max_fold_error``), without any normalization layer left.

For each variant: the framework's row (clean accuracy, robust accuracy per attack, LIGS), its agreement
with the original's clean predictions, and the transfer of adversarial examples crafted on the variant
to the original model (success among eligible examples, as in :mod:`nrflab.transfer`). Differences to
the ``running`` row come with paired 95 % intervals over images.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.attacks import AttackSpec, frozen_model
from nrflab.core.errors import NrflabError
from nrflab.core.fmt import pct
from nrflab.core.records import record, to_json
from nrflab.core.stats import paired_ci, wilson
from nrflab.measure.metrics import ligs_per_sample, model_device

VARIANT_DESCRIPTIONS: dict[str, str] = {
    "running": "running statistics (as trained, eval mode)",
    "batch": "batch statistics of each evaluated batch (BN as in training; buffers untouched)",
    "recalibrated": "running statistics re-estimated on clean training images (cumulative average)",
    "affine-only": "normalization removed, affine kept: y = gamma * x + beta",
    "folded": "BN folded into the preceding convolutions (same function as running)",
}
VARIANTS = tuple(VARIANT_DESCRIPTIONS)


# ---------------------------------------------------------------------------------------------
# The variants


class BatchStatisticsNorm(nn.Module):
    """Normalizes with the statistics of the batch it sees, whatever the mode; keeps no running buffers."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.eps = float(bn.eps)
        self.weight = nn.Parameter(bn.weight.detach().clone()) if bn.weight is not None else None
        self.bias = nn.Parameter(bn.bias.detach().clone()) if bn.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class ChannelAffine(nn.Module):
    """``y = scale * x + shift`` per channel (dimension 1)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone().float().to(scale.device))
        self.shift = nn.Parameter(shift.detach().clone().float().to(shift.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.scale.view(shape).to(x.dtype) + self.shift.view(shape).to(x.dtype)


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """Every BatchNorm layer of a model (BatchNorm1d/2d/3d and subclasses), with its qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _replace(model: nn.Module, make: Any) -> int:
    """Replace every BatchNorm layer of ``model`` in place by ``make(bn)``; the number replaced."""
    count = 0
    for name, bn in batchnorm_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(bn))
        count += 1
    return count


def _require_bn(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise NrflabError(
            "BN surgery needs an editable nn.Module, not TorchScript; load the model from a state dict "
            "or a factory (module:function)"
        )
    if not batchnorm_layers(model):
        raise NrflabError("the model has no BatchNorm layer: there is nothing to operate on")


def running_statistics_variant(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode: BN uses its running statistics (the deployed model)."""
    _require_bn(model)
    return copy.deepcopy(model).eval()


def batch_statistics_variant(model: nn.Module) -> nn.Module:
    """A deep copy whose BN layers normalize with the statistics of each batch (running buffers dropped)."""
    _require_bn(model)
    out = copy.deepcopy(model).eval()
    _replace(out, BatchStatisticsNorm)
    return out


def affine_only_variant(model: nn.Module) -> nn.Module:
    """A deep copy whose BN layers keep only their affine: ``gamma * x + beta`` (no normalization)."""
    _require_bn(model)
    out = copy.deepcopy(model).eval()

    def make(bn: nn.modules.batchnorm._BatchNorm) -> ChannelAffine:
        c = bn.num_features
        like = bn.weight if bn.weight is not None else next(iter(bn.buffers()), torch.zeros(1))
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones(c, device=like.device)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros(c, device=like.device)
        return ChannelAffine(gamma, beta)

    _replace(out, make)
    return out


def recalibrated_variant(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """A deep copy whose running statistics are re-estimated on ``images`` (clean training images).

    Every BN's statistics are reset and accumulated as a cumulative average (``momentum=None``) over all
    images in batches of ``batch_size``, with only the BN layers in training mode; then eval mode.
    """
    _require_bn(model)
    if images.shape[0] < 2:
        raise NrflabError("recalibration needs at least 2 images")
    out = copy.deepcopy(model).eval()
    layers = [bn for _, bn in batchnorm_layers(out)]
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        if not bn.track_running_stats or bn.running_mean is None:
            raise NrflabError(
                "a BatchNorm layer keeps no running statistics (track_running_stats=False): "
                "it always uses batch statistics, there is nothing to recalibrate"
            )
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    device = model_device(out)
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            chunk = images[i : i + batch_size]
            if chunk.shape[0] < 2:  # a BN batch of one carries no variance
                continue
            out(chunk.to(device))
    for bn, m in zip(layers, momenta):
        bn.momentum = m
    return out.eval()


@record
class FoldInfo:
    """How ``folded`` was built: BN layers folded into convolutions, turned into affines, and why."""

    folded_into_conv: int
    as_affine: int
    traced: bool
    reason: str = ""


def folded_variant(model: nn.Module) -> tuple[nn.Module, FoldInfo]:
    """BN folded into the preceding convolutions (``torch.fx`` conv-BN fusion on a deep copy, eval mode).

    BN layers that do not follow a convolution (or all of them, when the model cannot be traced) become
    the per-channel affine their running statistics define: ``gamma / sqrt(var + eps)`` and
    ``beta - mean * gamma / sqrt(var + eps)``. Either way the function is that of ``running``.
    """
    _require_bn(model)
    total = len(batchnorm_layers(model))
    base = copy.deepcopy(model).eval()
    traced, reason = True, ""
    try:
        from torch.fx.experimental.optimization import fuse

        out = fuse(base, inplace=True)
    except Exception as exc:  # tracing fails on data-dependent control flow: fold into affines only
        out, traced, reason = base, False, f"not traceable with torch.fx ({type(exc).__name__})"
    remaining = _replace(out, _running_affine)
    return out.eval(), FoldInfo(folded_into_conv=total - remaining, as_affine=remaining, traced=traced, reason=reason)


def _running_affine(bn: nn.modules.batchnorm._BatchNorm) -> ChannelAffine:
    if bn.running_mean is None or bn.running_var is None:
        raise NrflabError("a BatchNorm layer keeps no running statistics; it cannot be folded")
    inv = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    return ChannelAffine(scale, beta - bn.running_mean.detach().double() * scale)


def make_variants(
    model: nn.Module,
    *,
    calibration_images: torch.Tensor | None = None,
    batch_size: int = 256,
    variants: Sequence[str] = VARIANTS,
) -> tuple[dict[str, nn.Module], FoldInfo | None]:
    """The requested variants (deep copies) by name, and how ``folded`` was built (None if not asked)."""
    unknown = [v for v in variants if v not in VARIANT_DESCRIPTIONS]
    if unknown:
        raise NrflabError(f"unknown BN variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    out: dict[str, nn.Module] = {}
    fold = None
    for name in variants:
        if name == "running":
            out[name] = running_statistics_variant(model)
        elif name == "batch":
            out[name] = batch_statistics_variant(model)
        elif name == "recalibrated":
            if calibration_images is None:
                raise NrflabError("the recalibrated variant needs calibration images (clean training images)")
            out[name] = recalibrated_variant(model, calibration_images, batch_size=batch_size)
        elif name == "affine-only":
            out[name] = affine_only_variant(model)
        else:
            out[name], fold = folded_variant(model)
    return out, fold


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

    def to_dict(self) -> dict[str, Any]:
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

    def to_dict(self) -> dict[str, Any]:
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

    def to_dict(self) -> dict[str, Any]:
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

    def reading(self) -> list[str]:
        """One line per variant and metric: the difference to running with its interval, in words."""
        lines = []
        for d in self.differences:
            scale, unit = (100.0, " pp") if d.metric != "ligs" else (1.0, "")
            ci = (
                (
                    f"[{scale * d.low:+.1f}, {scale * d.high:+.1f}]"
                    if scale == 100.0
                    else f"[{d.low:+.3f}, {d.high:+.3f}]"
                )
                if math.isfinite(d.low)
                else "[n/a]"
            )
            value = f"{scale * d.difference:+.1f}{unit}" if scale == 100.0 else f"{d.difference:+.3f}"
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
        return "\n".join(parts) + "\n"


def _ratio(mask: torch.Tensor) -> float:
    """The exact fraction of True entries."""
    return int(mask.sum()) / max(1, int(mask.numel()))


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = model_device(model)
    out = []
    with torch.no_grad(), frozen_model(model, "eval"):
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i : i + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out)


def _craft(
    model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor, *, seed: int, batch_size: int
) -> torch.Tensor:
    device = model_device(model)
    attack = spec.build(model, seed=seed)
    return torch.cat(
        [
            attack(x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
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
    orig_clean = _predict(original, x, batch_size)
    orig_correct = orig_clean == y
    results: list[VariantResult] = []
    for name in tqdm(names, desc="variants", disable=not progress, leave=False):
        variant = built[name]
        pred = _predict(variant, x, batch_size)
        clean_correct = pred == y
        robust, robust_correct, whitebox, transfer = {}, {}, {}, {}
        for spec in attacks:
            adv = _craft(variant, spec, x, y, seed=seed, batch_size=batch_size)
            adv_pred = _predict(variant, adv, batch_size)
            fooled = adv_pred != y
            robust_correct[spec.label] = ~fooled
            robust[spec.label] = _ratio(~fooled)
            k_wb, n_wb = int((clean_correct & fooled).sum()), int(clean_correct.sum())
            whitebox[spec.label] = k_wb / n_wb if n_wb else math.nan
            orig_adv = adv_pred if name == "running" else _predict(original, adv, batch_size)
            eligible = clean_correct & fooled & orig_correct
            success = eligible & (orig_adv != y)
            n, k = int(eligible.sum()), int(success.sum())
            transfer[spec.label] = TransferNumbers(n, k, k / n if n else math.nan, wilson(k, n), _ratio(orig_adv == y))
        ligs_value = sim = per_image = None
        if ligs_sigma is not None:
            res = ligs_per_sample(variant, x, y, sigma=ligs_sigma, seed=seed, batch_size=batch_size)
            ligs_value, sim, per_image = res.ligs, res.logit_sim, res.gradient_similarity
        clean_acc = _ratio(clean_correct)
        void = None
        base_clean = results[0].clean_acc if results else clean_acc  # "running" comes first
        if clean_acc < 2.0 / classes:
            void = f"clean accuracy {100 * clean_acc:.1f} % is near chance ({100 / classes:.0f} %)"
        elif clean_acc < 0.5 * base_clean:
            void = (
                f"clean accuracy {100 * clean_acc:.1f} % is under half the original's {100 * base_clean:.1f} %: "
                f"its robustness numbers are not comparable"
            )
        results.append(
            VariantResult(
                name,
                VARIANT_DESCRIPTIONS[name],
                clean_acc,
                robust,
                ligs_value,
                sim,
                _ratio(pred == orig_clean),
                whitebox,
                transfer,
                void,
                clean_correct,
                robust_correct,
                per_image,
            )
        )
    differences = _differences(results, [s.label for s in attacks])
    max_err = None
    if "folded" in built:
        max_err = _max_logit_difference(original, built["folded"], x, batch_size)
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
        differences=tuple(differences),
        fold=fold,
        max_fold_error=max_err,
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


__all__ = [
    "BatchStatisticsNorm",
    "ChannelAffine",
    "VARIANTS",
    "affine_only_variant",
    "analyze_batchnorm",
    "batch_statistics_variant",
    "batchnorm_layers",
    "folded_variant",
    "recalibrated_variant",
]

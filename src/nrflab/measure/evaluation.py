"""Measuring a model the user names: ``evaluate`` (the framework row, sanity checks, corruptions) and
``bn-analysis`` (BN surgery), from a model reference and a dataset name.

What the two share is done once (:func:`open_subject`): load the model (any reference, see
:mod:`nrflab.models.references`), pick the dataset (the model's own when nrflab knows it), check that the
model fits it, and read the attacks (the dataset preset's when none is given). The settings are
:class:`~nrflab.core.schema.Schema` objects, so the command line's options are generated from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
from pydantic import Field, field_validator

from nrflab.attacks import AttackSpec, attack_from_parts, distinct_labels, parse_attack
from nrflab.core.columns import attack_title, metric_label
from nrflab.core.errors import NrflabError
from nrflab.core.io import read_json
from nrflab.core.records import to_json
from nrflab.core.schema import Schema
from nrflab.core.validation import DEVICE_HELP, Seed, resolve_device
from nrflab.data import DatasetBundle, limit_dataset, load_dataset
from nrflab.data.defaults import PRESETS, preset_for
from nrflab.measure.bn_shift import ADAPT_SAMPLES, parse_shift
from nrflab.measure.bn_variants import VARIANTS
from nrflab.measure.cascade import build_resumable
from nrflab.measure.corruption_table import CorruptionReport
from nrflab.measure.ensemble import ensemble_robust
from nrflab.measure.framework import image_outcomes
from nrflab.measure.health import chance_warning
from nrflab.measure.metrics import dataset_tensors
from nrflab.measure.sanity import SanityReport, format_sanity, sanity_checks
from nrflab.measure.spectrum import PerturbationSpectrum, perturbation_spectrum
from nrflab.models.inspection import (
    LoadedModel,
    adopt_dataset_normalization,
    check_model_fits,
    describe_model,
    model_slug,
)
from nrflab.models.references import load_model_reference

#: The config an nrflab run records beside its model (``RunDir.CONFIG``; ``measure`` sits below ``runs``).
RUN_CONFIG = "config.json"
Channels = Optional[tuple[float, ...]]
OUTSIDE = "of a bare state dict"


class MeasureSettings(Schema):
    """Which model, on which data, under which attacks: what ``evaluate`` and ``bn-analysis`` share."""

    model: Optional[str] = Field(
        None,
        description="The model: a run directory or checkpoint, a state dict (with --arch/--norm/--width where they "
        "cannot be read off it, or --arch package.module:Net for your own class), a TorchScript file, "
        "pretrained:NAME, or a factory package.module:function or file.py:function (RUNS YOUR OWN CODE).",
    )
    dataset: Optional[str] = Field(
        None, description="Dataset name or built dataset directory; default: the run's (or pretrained model's) dataset."
    )
    data_root: Optional[str] = Field(None, description="Where the dataset's files are.")
    download: bool = Field(False, description="Fetch missing dataset files (needs internet).")
    arch: Optional[str] = Field(None, description=f"Architecture {OUTSIDE} (read off the weights if omitted).")
    norm: Optional[str] = Field(None, description=f"Normalization {OUTSIDE}.")
    num_classes: Optional[int] = Field(None, ge=2, description=f"Classes {OUTSIDE}.")
    width: Optional[float] = Field(None, gt=0, description=f"Width multiplier {OUTSIDE}.")
    mean: Channels = Field(
        None,
        description="Per-channel mean the model expects, comma-separated (e.g. 0.4914,0.4822,0.4465); nrflab then "
        "normalizes inside the model. Omit for models that take [0,1] inputs.",
    )
    std: Channels = Field(None, description="Per-channel std the model expects, comma-separated (with --mean).")
    weights_dir: Optional[str] = Field(
        None,
        description="Where pretrained weights are looked for and downloaded (default $NRFLAB_WEIGHTS, then "
        "~/.nrflab/weights).",
    )
    allow_unverified: bool = Field(
        False, description="Allow downloading pretrained weights whose sha256 the registry does not pin."
    )
    attacks: Optional[list[str]] = Field(
        None,
        description="pgd-l2, pgd-linf, fgsm, fgm-l2, or a full spec like 'pgd-l2:eps=0.25,step=0.1,steps=10' "
        "(repeatable). Default: the dataset preset's attacks.",
    )
    eps: Optional[float] = Field(None, description="Attack radius (pixel scale, inputs in [0,1]).")
    steps: Optional[int] = Field(None, description="Attack iterations (default 10).")
    step_size: Optional[float] = Field(None, description="Attack step (default 2.5 * eps / steps).")
    limit: Optional[int] = Field(
        None, ge=1, description="Use a seeded random subset of N test images (seed: --seed; the same for every model)."
    )
    ligs: bool = Field(True, description="Measure LIGS (local input-gradient similarity).")
    sigma: float = Field(0.01, ge=0, description="LIGS noise std (pixel scale).")
    batch_size: int = Field(256, ge=1, description="Images per batch.")
    device: str = Field("auto", description=f"{DEVICE_HELP}.")
    seed: Seed = Field(0, description="Seed (0..2^32-1) for the --limit subset, attacks and LIGS noise.")

    def attack_specs(self, *, random_start: bool = False, restarts: int = 1) -> list[AttackSpec] | None:
        """The attacks given (kinds completed by ``eps``/``steps``/``step_size``, or full specs); None if none."""
        if not self.attacks:
            if self.eps is not None or self.steps is not None or self.step_size is not None:
                raise NrflabError("--eps/--steps/--step-size need an --attack (e.g. --attack pgd-l2)")
            return None
        if self.eps is not None and self.eps < 0:
            raise NrflabError(f"eps must be >= 0, got {self.eps}")
        return [
            attack_from_parts(
                text,
                eps=self.eps,
                steps=self.steps,
                step_size=self.step_size,
                random_start=random_start,
                restarts=restarts,
            )
            for text in self.attacks
        ]


class EvaluateSettings(MeasureSettings):
    """``nrflab evaluate``: the framework row of one model, with gradient-masking checks and corruptions."""

    random_start: bool = Field(False, description="Start PGD at a random point of the eps-ball.")
    restarts: int = Field(1, ge=1, description="PGD restarts; the per-sample worst case is kept.")
    sanity: bool = Field(
        True,
        description="Gradient-masking checks for every robustness number (eps monotone, unbounded attack, restarts, "
        "transfer from --surrogate) on a subset.",
    )
    sanity_limit: int = Field(32, ge=1, description="Images used by the sanity checks (the first N evaluated).")
    surrogate: Optional[str] = Field(
        None, description="A model reference to transfer from in the sanity checks (e.g. the model's no-BN twin)."
    )
    surrogate_mean: Channels = Field(None, description="Per-channel mean the surrogate expects (as --mean).")
    surrogate_std: Channels = Field(None, description="Per-channel std the surrogate expects (as --std).")
    corruptions: bool = Field(False, description="Also report accuracy per common corruption and severity.")
    spectrum: bool = Field(
        False, description="Also report each attack's perturbation energy (x_adv - x) in thirds of Nyquist."
    )
    cifar_c: Optional[str] = Field(
        None, description="A CIFAR-10-C/100-C directory of .npy files to use for --corruptions."
    )


class BnAnalysisSettings(MeasureSettings):
    """``nrflab bn-analysis``: BN surgery on a model with BatchNorm (is it the statistics or the affine?)."""

    variants: Optional[list[str]] = Field(
        None, description=f"Variants to run (repeatable): {', '.join(VARIANTS)}. Default: all."
    )
    calibration: int = Field(512, ge=2, description="Clean training images used to recalibrate the running statistics.")
    batch_size: int = Field(
        256, ge=2, description="Batch size; the batch-statistics variant normalizes over batches of this size."
    )
    shift: Optional[list[str]] = Field(
        None,
        description="Also adapt BN's statistics to a shifted domain, CORRUPTION@SEVERITY (e.g. gaussian_noise@3; "
        "repeatable): accuracy on the shifted test images without and with statistics re-estimated on "
        "--adapt-samples shifted training images.",
    )
    adapt_samples: int = Field(
        ADAPT_SAMPLES, ge=2, description="Shifted training images BN's statistics are re-estimated on (WACV 2021: 32)."
    )

    @field_validator("shift")
    @classmethod
    def _known_shifts(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        for text in value or []:
            parse_shift(text)
        return value

    def chosen_variants(self) -> list[str]:
        chosen = list(dict.fromkeys(v.strip().lower() for v in (self.variants or VARIANTS)))
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            raise NrflabError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
        return chosen


@dataclass(frozen=True)
class Subject:
    """A loaded model and the dataset it is measured on (checked to fit), with the attacks to run."""

    loaded: LoadedModel
    bundle: DatasetBundle
    attacks: tuple[AttackSpec, ...]
    device: torch.device
    surrogate: Optional[LoadedModel] = None

    def default_output(self, stem: str) -> Path:
        """``STEM_<dataset>`` beside an nrflab checkpoint, else ``STEM_<model>_<dataset>`` in the current
        directory: where a command writes when not told."""
        base = Path(self.bundle.name).name
        if self.loaded.kind == "nrflab":
            return Path(self.loaded.source).parent / f"{stem}_{base}"
        return Path.cwd() / f"{stem}_{model_slug(self.loaded)}_{base}"

    def test_tensors(self, s: MeasureSettings) -> tuple[torch.Tensor, torch.Tensor]:
        """The test images measured: the seeded ``limit`` subset, in test-set order."""
        return dataset_tensors(limit_dataset(self.bundle.test, s.limit, s.seed))

    def describe(self) -> list[str]:
        """Lines about the model (what it is, its input normalization, its fingerprint), printed first."""
        return describe_model(self.loaded)


def default_dataset_of(loaded: LoadedModel) -> str | None:
    """The dataset a model was trained on, when nrflab knows it: an nrflab run's, a pretrained entry's."""
    if loaded.kind == "nrflab":
        try:
            recorded = read_json(Path(loaded.source).parent / RUN_CONFIG, "run config", expect=dict)
            return str(recorded["dataset"])
        except (NrflabError, KeyError, TypeError):
            return None
    if loaded.kind == "pretrained":
        from nrflab.models.pretrained import available_pretrained

        for entry in available_pretrained():
            shipped = entry.package_file and loaded.source.endswith(entry.package_file[1])
            if entry.name == loaded.name or loaded.source.endswith(entry.filename) or shipped:
                return str(entry.dataset)
    return None


def load_reference(
    reference: Optional[str], s: MeasureSettings, *, mean: Channels, std: Channels, own: bool, flag: str = "--model"
) -> LoadedModel:
    """Load the model ``reference`` names (one-line errors for every bad input); ``own``: the measured
    model, which takes the bare-state-dict options of ``s`` (a surrogate does not)."""
    if reference is None or not str(reference).strip():
        raise NrflabError(
            f"give a model with {flag} (a run directory, weights file, pretrained:NAME or module:function)"
        )
    return load_model_reference(
        reference,
        arch=s.arch if own else None,
        norm=s.norm if own else None,
        num_classes=s.num_classes if own else None,
        width=s.width if own else None,
        mean=mean,
        std=std,
        device=str(resolve_device(s.device)),
        weights_dir=s.weights_dir,
        allow_unverified=s.allow_unverified,
    )


def open_subject(
    s: MeasureSettings, *, attacks: Sequence[AttackSpec] | None, flag: str = "--model", batchnorm: bool = False
) -> Subject:
    """Load the model and its dataset, check that they fit; the dataset preset's attacks when ``attacks``
    is None. With ``batchnorm``, a model without BatchNorm, or one that cannot be edited, is refused."""
    device = resolve_device(s.device)
    loaded = load_reference(s.model, s, mean=s.mean, std=s.std, own=True, flag=flag)
    if batchnorm and not loaded.has_batchnorm:
        raise NrflabError(f"model {loaded.name} has no BatchNorm layer: there is nothing to operate on")
    if batchnorm and loaded.kind == "torchscript":
        raise NrflabError("BN surgery needs an editable model, not TorchScript; give a state dict or a factory")
    dataset = s.dataset or default_dataset_of(loaded)
    if dataset is None:
        raise NrflabError("--dataset is required (the model is not an nrflab run nor a registered pretrained model)")
    bundle = load_dataset(dataset, root=s.data_root, download=s.download)
    if attacks is None:
        preset = preset_for(bundle.name, b if isinstance(b := bundle.info.get("base_dataset"), str) else None)
        attacks = [parse_attack(t) for t in PRESETS[preset]["eval_attacks"]]
    attacks = distinct_labels(list(attacks))  # one result per attack: none replaces another
    loaded = adopt_dataset_normalization(loaded, mean=bundle.mean, std=bundle.std, dataset=bundle.name)
    check_model_fits(loaded, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
    return Subject(loaded=loaded, bundle=bundle, attacks=tuple(attacks), device=device)


@dataclass(frozen=True)
class EvaluationRecord:
    """What ``evaluate`` measured: the framework row (``metrics``), its sanity checks and corruptions."""

    checkpoint: str
    dataset: str
    num_samples: int
    model: Mapping[str, Any]
    model_reference: Mapping[str, Any]
    attacks: Mapping[str, str]
    ligs_sigma: Optional[float]
    seed: int
    metrics: Mapping[str, float]
    sanity: Optional[tuple[SanityReport, ...]] = None
    corruptions: Optional[Mapping[str, Any]] = field(default=None)
    #: Why the model sits near chance on these images ("" when it does not): its robustness says nothing then.
    at_chance: str = ""
    #: Per attack label, the spectrum of its perturbations ``x_adv - x`` (``--spectrum``).
    spectra: Optional[Mapping[str, PerturbationSpectrum]] = None

    def to_json(self) -> dict[str, object]:
        """The JSON record (``sanity`` and ``corruptions`` only when measured)."""
        out: dict[str, object] = {
            "checkpoint": self.checkpoint,
            "dataset": self.dataset,
            "num_samples": self.num_samples,
            "model": dict(self.model),
            "model_reference": dict(self.model_reference),
            "attacks": dict(self.attacks),
            "ligs_sigma": self.ligs_sigma,
            "seed": self.seed,
            "metrics": dict(self.metrics),
            "metric_labels": {k: metric_label(k) for k in self.metrics},
            "at_chance": bool(self.at_chance),
        }
        if self.at_chance:
            out["at_chance_reason"] = self.at_chance
        if self.sanity is not None:
            out["sanity"] = {r.attack: r.to_dict() for r in self.sanity}
        if self.corruptions is not None:
            out["corruptions"] = dict(self.corruptions)
        if self.spectra is not None:
            out["spectra"] = {k: {**to_json(v), "thirds": v.thirds()} for k, v in self.spectra.items()}
        return out

    def summary_lines(self) -> list[str]:
        """The table a reader sees: each metric (radii as ``8/255`` where they are one, :func:`metric_label`),
        the mean corruption accuracy, the sanity verdicts."""
        labels = {k: metric_label(k) for k in self.metrics}
        width = max([28, *(len(label) + 1 for label in labels.values())])
        lines = [f"{'metric':<{width}} value"]
        for k, v in self.metrics.items():
            shown = f"{100 * v:.2f} %" if k.endswith("acc") or "acc[" in k else f"{v:.4f}"
            lines.append(f"{labels[k]:<{width}} {shown}")
        if self.corruptions is not None:
            lines.append(f"{'mean corruption accuracy':<{width}} {100 * self.corruptions['summary']['mean']:.2f} %")
        for label, spec in (self.spectra or {}).items():
            low, mid, high = spec.thirds()
            lines.append(f"perturbation energy {attack_title(label)}: low {low:.2f}, mid {mid:.2f}, high {high:.2f}")
        if self.sanity:
            lines.extend(format_sanity(self.sanity))
        return lines


def open_evaluation(s: EvaluateSettings) -> Subject:
    """Everything ``evaluate`` checks before it measures: attacks, the CIFAR-C folder, the model and data."""
    specs = s.attack_specs(random_start=s.random_start, restarts=s.restarts)
    if s.cifar_c is not None:
        from nrflab.measure.corruptions import available_cifar_c

        available_cifar_c(Path(s.cifar_c))  # a wrong directory fails now, not after the attacks ran
    subject = open_subject(s, attacks=specs)
    if s.surrogate is None or not s.sanity:
        return subject
    surrogate = load_reference(
        s.surrogate, s, mean=s.surrogate_mean, std=s.surrogate_std, own=False, flag="--surrogate"
    )
    bundle = subject.bundle
    check_model_fits(surrogate, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
    return replace(subject, surrogate=surrogate)


def evaluate_subject(
    subject: Subject, s: EvaluateSettings, *, progress: bool = False, state_dir: Optional[Path] = None
) -> EvaluationRecord:
    """Measure an opened subject: the framework row, the sanity checks and corruptions asked for
    (``state_dir``: :func:`~nrflab.measure.cascade.build_resumable`)."""
    surrogate = subject.surrogate
    loaded, model = subject.loaded, subject.loaded.module
    x, y = (t.to(subject.device) for t in subject.test_tensors(s))
    attacks = [(spec.label, build_resumable(spec, model, seed=s.seed, state_dir=state_dir)) for spec in subject.attacks]
    sigma = s.sigma if s.ligs else None
    if x.shape[0] == 0:
        raise NrflabError("no samples to evaluate")
    seen = image_outcomes(
        model,
        x,
        y,
        attacks=attacks,
        ligs_sigma=sigma,
        seed=s.seed,
        batch_size=s.batch_size,
        keep_adversarial=s.spectrum,
        progress=progress,
    )
    row = seen.summary().row()
    # per threat model with several attacks: the per-image worst case, beside each attack's own number
    for threat, robust in ensemble_robust(subject.attacks, seen.robust, min_attacks=2).items():
        row[threat.key] = int(robust.sum()) / max(int(robust.numel()), 1)  # exact, as every other fraction
    cfg = getattr(model, "config", None)
    reports = None
    if s.sanity:
        n = min(s.sanity_limit, int(y.shape[0]))
        reports = tuple(
            sanity_checks(
                model,
                x[:n],
                y[:n],
                spec=spec,
                surrogate=surrogate.module if surrogate else None,
                surrogate_name=surrogate.name if surrogate else "surrogate",
                seed=s.seed,
                batch_size=s.batch_size,
            )
            for spec in subject.attacks
            if spec.kind != "none"
        )
    return EvaluationRecord(
        checkpoint=loaded.source,
        dataset=subject.bundle.name,
        num_samples=int(y.shape[0]),
        model=cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else loaded.describe(),
        model_reference=loaded.describe(),
        attacks={spec.label: spec.to_string() for spec in subject.attacks},
        ligs_sigma=sigma,
        seed=s.seed,
        metrics=row,
        sanity=reports,
        corruptions=corruption_rows(subject, s, progress=progress) if s.corruptions else None,
        at_chance=chance_warning(row.get("clean_acc", float("nan")), subject.bundle.num_classes),
        spectra={k: perturbation_spectrum(a - x) for k, a in seen.adversarial.items()} if s.spectrum else None,
    )


def evaluate_reference(s: EvaluateSettings, *, progress: bool = False) -> EvaluationRecord:
    """``nrflab evaluate`` in Python: open the model and data, measure them."""
    return evaluate_subject(open_evaluation(s), s, progress=progress)


def corruption_rows(subject: Subject, s: EvaluateSettings, *, progress: bool = False) -> CorruptionReport:
    """Accuracy per corruption and severity: on CIFAR-C files if given, else corrupting the test set."""
    from nrflab.measure.corruptions import corruption_report

    test = limit_dataset(subject.bundle.test, s.limit, s.seed)
    cifar_c = Path(s.cifar_c) if s.cifar_c is not None else None
    return corruption_report(
        subject.loaded.module,
        test,
        cifar_c=cifar_c,
        limit=s.limit,
        seed=s.seed,
        batch_size=s.batch_size,
        progress=progress,
    )


def open_bn_analysis(s: BnAnalysisSettings) -> Subject:
    """Everything ``bn-analysis`` checks before it measures: attacks, variants, a model with BatchNorm, data."""
    specs = s.attack_specs()
    s.chosen_variants()
    return open_subject(s, attacks=specs, flag="MODEL", batchnorm=True)


__all__ = [
    "BnAnalysisSettings",
    "EvaluateSettings",
    "evaluate_reference",
    "open_bn_analysis",
    "open_evaluation",
]

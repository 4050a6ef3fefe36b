"""``nrflab bn-analysis`` in Python: BN surgery on an opened subject (:func:`analyze_subject`), the whole
command from its settings (:func:`analyze_reference`), and the same run written to a directory as
``bn_analysis.json`` and ``bn_analysis.md`` (:func:`write_bn_analysis`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.measure.bn_shift import adapt_to_shifts
from nrflab.measure.bn_surgery import BnAnalysis, analyze_batchnorm
from nrflab.measure.evaluation import BnAnalysisSettings, Subject, open_bn_analysis
from nrflab.measure.metrics import dataset_tensors

#: The two files ``bn-analysis`` writes into its directory.
FILES = ("bn_analysis.json", "bn_analysis.md")


def analyze_subject(subject: Subject, s: BnAnalysisSettings, *, progress: bool = False) -> BnAnalysis:
    """BN surgery on an opened subject: every variant's framework row and its transfer to the original."""
    chosen = s.chosen_variants()
    x, y = subject.test_tensors(s)
    calib = None
    if "recalibrated" in chosen:
        train_x, _ = dataset_tensors(subject.bundle.train)
        order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(s.seed))
        calib = train_x[order[: s.calibration]]
    result = analyze_batchnorm(
        subject.loaded.module,
        x,
        y,
        attacks=subject.attacks,
        calibration_images=calib,
        variants=chosen,
        seed=s.seed,
        batch_size=s.batch_size,
        ligs_sigma=s.sigma if s.ligs else None,
        num_classes=subject.bundle.num_classes,
        dataset=subject.bundle.name,
        model_info=subject.loaded.describe(),
        progress=progress,
    )
    if not s.shift:
        return result
    train_x, _ = dataset_tensors(subject.bundle.train)
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(s.seed + 1))
    shift = adapt_to_shifts(
        subject.loaded.module,
        x,
        y,
        adapt_images=train_x[order[: s.adapt_samples]],
        shifts=s.shift,
        n=s.adapt_samples,
        seed=s.seed,
        batch_size=s.batch_size,
    )
    return replace(result, shift=shift)


def analyze_reference(s: BnAnalysisSettings, *, progress: bool = False) -> BnAnalysis:
    """``nrflab bn-analysis`` in Python: open the model and data, run the surgery."""
    return analyze_subject(open_bn_analysis(s), s, progress=progress)


def write_bn_analysis(
    subject: Subject, s: BnAnalysisSettings, *, folder: Path, progress: bool = False
) -> tuple[BnAnalysis, tuple[Path, Path]]:
    """BN surgery on an opened subject (:func:`~nrflab.measure.evaluation.open_bn_analysis`), written into
    ``folder`` (created) as ``bn_analysis.json`` and ``bn_analysis.md``. Returns the result and the two paths."""
    result = analyze_subject(subject, s, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / FILES[0], folder / FILES[1])
    atomic_write_json(paths[0], result.to_dict())
    atomic_write_text(paths[1], result.markdown())
    return result, paths


__all__ = ["analyze_reference", "write_bn_analysis"]

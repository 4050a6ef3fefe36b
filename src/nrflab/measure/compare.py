"""``nrflab compare A B``: is model A less robust than model B, and how sure is that?

Each side is one model or several (e.g. the seeds of one recipe, paired with the other side's by position).
Every model is measured on the same fixed test images: clean accuracy, robust accuracy under each attack and
under all of one threat model's at once (the *ensemble* of a norm and eps: an image counts as robust only if
every attack of that threat failed on it; attacks of different threats are never pooled), LIGS,
and accuracy per class. Each quantity gets the difference A - B with a paired 95 % interval and p-value, the
same statistics as the experiments' verdicts (:mod:`nrflab.core.stats`):

* one model per side: per image (the interval covers which test images were drawn, for this pair of models);
* several per side: per pair of models (each model first averaged over the images), so the interval covers
  model-to-model variation; with fewer than 3 pairs the difference is reported as "not tested".

The word of each row is "A higher", "B higher" or "no clear difference" (the interval contains 0).

AutoAttack, the slow attack, may run on the first N of the images only (``autoattack_limit``; the same N for
every model, so still paired); clean accuracy, LIGS and the other attacks use every image, and the ensemble
is over the images every attack saw (the Markdown says so).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from pydantic import Field

from nrflab.core.columns import attack_title
from nrflab.core.errors import NrflabError
from nrflab.core.fmt import markdown_table, p_value
from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.core.records import record, to_json
from nrflab.core.stats import MIN_SEEDS, finite_mean, one_sample_test, paired_test
from nrflab.measure.cascade import build_resumable
from nrflab.measure.ensemble import ensemble_robust
from nrflab.measure.evaluation import MeasureSettings, Subject, load_reference, open_subject
from nrflab.measure.framework import image_outcomes
from nrflab.models.inspection import LoadedModel, adopt_dataset_normalization, check_model_fits

#: What ``nrflab compare`` writes into its directory (:func:`write_comparison`).
FILES = ("compare.json", "compare.csv", "compare.md")
ENSEMBLE = "ensemble"
"""How the per-threat ensemble rows begin (``robust accuracy, ensemble, L2 eps 0.5``)."""


class CompareSettings(MeasureSettings):
    """``nrflab compare``: two models, or two groups of models paired by position, on the same images."""

    a: list[str] = Field(default_factory=list, description="Side A: model references (paired with B by position).")
    b: list[str] = Field(default_factory=list, description="Side B: model references.")
    autoattack_limit: Optional[int] = Field(
        None,
        ge=1,
        description="Run AutoAttack specs on only the first N of the measured images (the same N for every model); "
        "the ensemble is then over those N images.",
    )


@dataclass(frozen=True)
class Measured:
    """One model's per-image outcomes: clean correctness, robustness per attack and ensemble, LIGS."""

    name: str
    labels: torch.Tensor
    values: dict[str, torch.Tensor]


@record
class Row:
    """One quantity compared: each side's mean, A - B with its interval and p, and what the interval is over."""

    quantity: str
    unit: str
    a: float
    b: float
    difference: float
    low: float
    high: float
    p: float
    n: int
    over: str
    word: str


@record
class Comparison:
    """What ``nrflab compare`` measured and judged."""

    dataset: str
    num_images: int
    a_models: tuple[str, ...]
    b_models: tuple[str, ...]
    attacks: dict[str, str]
    seed: int
    rows: tuple[Row, ...]
    per_class: tuple[tuple[int, float, float], ...]
    #: The images the ensemble is over: every image, or the first ``--autoattack-limit`` (AutoAttack saw only those).
    ensemble_images: int

    def markdown(self) -> str:
        """The comparison table, the per-class table and how the intervals were made."""
        rows = [
            [r.quantity, _value(r.a, r.unit), _value(r.b, r.unit), _diff(r), p_value(r.p), str(r.n), r.word]
            for r in self.rows
        ]
        per_class = [[str(c), f"{100 * a:.1f} %", f"{100 * b:.1f} %"] for c, a, b in self.per_class]
        over = self.rows[0].over if self.rows else ""
        return "\n".join(
            [
                f"# nrflab compare on {self.dataset} ({self.num_images} test images, seed {self.seed})",
                "",
                f"A: {', '.join(self.a_models)}  ",
                f"B: {', '.join(self.b_models)}",
                "",
                markdown_table(["quantity", "A", "B", "A - B [95 % CI]", "p", "n", "reading"], rows),
                "",
                f"Intervals: paired 95 % t-intervals {over}. Attacks: "
                + "; ".join(f"{k} = {v}" for k, v in self.attacks.items())
                + f". {ENSEMBLE} of a threat (norm, eps): an image is robust only if every attack of that threat"
                " failed on it"
                + (
                    f" (over the first {self.ensemble_images} images, the ones every attack saw)."
                    if self.ensemble_images < self.num_images
                    else "."
                ),
                "",
                "## Accuracy per class",
                "",
                markdown_table(["class", "A", "B"], per_class),
                "",
            ]
        )

    def csv_rows(self) -> list[dict[str, object]]:
        return [to_json(r) for r in self.rows]


def _value(v: float, unit: str) -> str:
    return "n/a" if not math.isfinite(v) else (f"{100 * v:.1f} %" if unit == "points" else f"{v:.3f}")


def _diff(r: Row) -> str:
    if not math.isfinite(r.difference):
        return "n/a"
    s, d = (100.0, 1) if r.unit == "points" else (1.0, 3)
    ci = f"[{s * r.low:+.{d}f}, {s * r.high:+.{d}f}]" if math.isfinite(r.low) else "[n/a]"
    return f"{s * r.difference:+.{d}f} {ci}" + (" points" if r.unit == "points" else "")


def open_side(refs: Sequence[str], s: CompareSettings, subject: Subject) -> list[LoadedModel]:
    """Load every model of one side and check that it fits the subject's dataset."""
    bundle = subject.bundle
    out = []
    for ref in refs:
        loaded = load_reference(ref, s, mean=s.mean, std=s.std, own=True)
        loaded = adopt_dataset_normalization(loaded, mean=bundle.mean, std=bundle.std, dataset=bundle.name)
        check_model_fits(loaded, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
        out.append(loaded)
    return out


def open_comparison(s: CompareSettings) -> tuple[Subject, list[LoadedModel], list[LoadedModel]]:
    """Everything checked before anything is measured: both sides, their sizes, the dataset, the attacks."""
    if not s.a or not s.b:
        raise NrflabError("compare needs a model on each side (A B)")
    if len(s.a) != len(s.b):
        raise NrflabError(
            f"side A has {len(s.a)} models and side B {len(s.b)}: give as many (paired by position, e.g. by seed)"
        )
    subject = open_subject(s.model_copy(update={"model": s.a[0]}), attacks=s.attack_specs())
    return subject, open_side(s.a, s, subject), open_side(s.b, s, subject)


def measure_model(
    loaded: LoadedModel,
    subject: Subject,
    s: CompareSettings,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    state_dir: Optional[Path] = None,
) -> Measured:
    """One model's per-image values on ``(x, y)``; AutoAttack specs on the first ``s.autoattack_limit``
    images when set (then the ensemble is over those images), keeping their resume state in ``state_dir``."""
    model = loaded.module
    n_aa = min(s.autoattack_limit or int(y.shape[0]), int(y.shape[0]))
    short = [spec for spec in subject.attacks if spec.kind == "autoattack" and n_aa < int(y.shape[0])]
    built = [
        (spec.label, build_resumable(spec, model, seed=s.seed, state_dir=state_dir))
        for spec in subject.attacks
        if spec not in short
    ]
    seen = image_outcomes(
        model, x, y, attacks=built, ligs_sigma=s.sigma if s.ligs else None, seed=s.seed, batch_size=s.batch_size
    )
    robust = dict(seen.robust)
    if short:
        aa = [(spec.label, build_resumable(spec, model, seed=s.seed, state_dir=state_dir)) for spec in short]
        robust.update(image_outcomes(model, x[:n_aa], y[:n_aa], attacks=aa, batch_size=s.batch_size).robust)
        robust = {spec.label: robust[spec.label] for spec in subject.attacks}  # the order the attacks were given
    seen_all = {label: c[: min(int(v.shape[0]) for v in robust.values())] for label, c in robust.items()}
    values = {"clean accuracy": seen.clean_correct.float().cpu()}
    for label, correct in robust.items():
        values[f"robust accuracy ({attack_title(label)})"] = correct.float().cpu()
    for threat, worst in ensemble_robust(subject.attacks, seen_all, min_attacks=2).items():
        values[f"robust accuracy, {threat.title}"] = worst.float()
    if seen.ligs is not None:
        values["LIGS"] = seen.ligs.gradient_similarity.double().cpu()
    return Measured(loaded.name, y.cpu(), values)


def compare_measured(a: Sequence[Measured], b: Sequence[Measured]) -> list[Row]:
    """A - B for every quantity, per image for one pair, per pair of models for groups."""
    rows = []
    for quantity in a[0].values:
        unit = "LIGS" if quantity == "LIGS" else "points"
        va, vb = [m.values[quantity].double() for m in a], [m.values[quantity].double() for m in b]
        mean_a = sum(finite_mean(v) for v in va) / len(va)
        mean_b = sum(finite_mean(v) for v in vb) / len(vb)
        if len(a) == 1:
            diffs = (va[0] - vb[0]).tolist()
            d, lo, hi, p, n = one_sample_test(diffs)
            over = f"over {n} test images (this pair of models)"
            word = _word(lo, hi)
        else:
            d, lo, hi, p, n = paired_test([finite_mean(v) for v in va], [finite_mean(v) for v in vb])
            over = f"over {n} pairs of models (each averaged over the test images)"
            word = _word(lo, hi) if n >= MIN_SEEDS else f"not tested ({n} pairs; at least {MIN_SEEDS} needed)"
        rows.append(Row(quantity, unit, mean_a, mean_b, d, lo, hi, p, n, over, word))
    return rows


def _word(lo: float, hi: float) -> str:
    if math.isfinite(lo) and lo > 0:
        return "A higher"
    if math.isfinite(hi) and hi < 0:
        return "B higher"
    return "no clear difference"


def per_class(a: Sequence[Measured], b: Sequence[Measured], num_classes: int) -> list[tuple[int, float, float]]:
    """Clean accuracy per class, each side averaged over its models."""
    out = []
    for c in range(num_classes):
        acc = []
        for side in (a, b):
            vals = [
                float(m.values["clean accuracy"][m.labels == c].mean()) for m in side if bool((m.labels == c).any())
            ]
            acc.append(sum(vals) / len(vals) if vals else math.nan)
        out.append((c, acc[0], acc[1]))
    return out


def compare_models(s: CompareSettings, *, progress: bool = False) -> Comparison:
    """``nrflab compare`` in Python: load both sides, measure every model on the same images, compare."""
    subject, side_a, side_b = open_comparison(s)
    return compare_opened(subject, side_a, side_b, s, progress=progress)


def compare_opened(
    subject: Subject,
    side_a: Sequence[LoadedModel],
    side_b: Sequence[LoadedModel],
    s: CompareSettings,
    *,
    progress: bool = False,
    state_dir: Optional[Path] = None,
) -> Comparison:
    """Measure and compare opened sides (see :func:`compare_models`); ``state_dir``: AutoAttack's resume state."""
    from tqdm.auto import tqdm

    x, y = (t.to(subject.device) for t in subject.test_tensors(s))
    measured = [
        measure_model(m, subject, s, x, y, state_dir=state_dir)
        for m in tqdm([*side_a, *side_b], desc="models", disable=not progress)
    ]
    a, b = measured[: len(side_a)], measured[len(side_a) :]
    return Comparison(
        subject.bundle.name,
        int(y.shape[0]),
        tuple(m.source for m in side_a),
        tuple(m.source for m in side_b),
        {spec.label: spec.to_string() for spec in subject.attacks},
        s.seed,
        tuple(compare_measured(a, b)),
        tuple(per_class(a, b, subject.bundle.num_classes)),
        min(
            [int(v.shape[0]) for k, v in a[0].values.items() if k.startswith(f"robust accuracy, {ENSEMBLE}")]
            or [int(y.shape[0])]
        ),
    )


def write_comparison(
    subject: Subject,
    side_a: Sequence[LoadedModel],
    side_b: Sequence[LoadedModel],
    s: CompareSettings,
    *,
    folder: Path,
    overwrite: bool = False,
    progress: bool = False,
) -> tuple[Comparison, tuple[Path, ...]]:
    """Compare opened sides (:func:`open_comparison`) and write ``compare.json``, ``compare.csv`` (one row per
    quantity) and ``compare.md`` into ``folder`` (created); AutoAttack keeps its resume state in
    ``folder/autoattack-state``. An earlier comparison there is refused before anything runs unless
    ``overwrite``. Returns the comparison and the paths written."""
    paths = tuple(folder / name for name in FILES)
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise NrflabError(f"{existing[0]} exists: give --overwrite to replace it, or another --out")
    state = folder / "autoattack-state"  # an interrupted AutoAttack resumes from here
    result = compare_opened(subject, side_a, side_b, s, progress=progress, state_dir=state)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(paths[0], to_json(result))
    atomic_write_text(paths[1], _csv(result.csv_rows()))
    atomic_write_text(paths[2], result.markdown())
    return result, paths


def _csv(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["quantity"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


__all__ = ["CompareSettings", "compare_models", "open_comparison", "write_comparison"]

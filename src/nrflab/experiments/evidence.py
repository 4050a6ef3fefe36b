"""Per-image evidence for verdicts: what each final model does on each fixed evaluation image, and the
intervals of the differences between models.

:func:`measure` evaluates a run's final model on fixed test images under an evaluation protocol and
keeps, per image, the prediction, correctness under each attack, and LIGS (cached in the run directory,
recomputed when the model, the images or the settings change). :func:`compare` turns two models'
per-image values into a difference with a 95 % interval and a p-value **over seeds**: each seed's
model is averaged over the same fixed test images, and the per-seed means of the two arms are paired by
seed (a paired t-test; the seed is the unit of replication, so the interval covers seed-to-seed
variation, and the test images only through each seed's mean). With fewer than
:data:`~nrflab.core.stats.MIN_SEEDS` seeds the difference is reported but the claim is not tested.
"""

from __future__ import annotations

import hashlib
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from typing_extensions import Required, TypedDict, Unpack

from nrflab.attacks import parse_attack
from nrflab.core.seeds import seeded_subset
from nrflab.core.stats import finite_mean, paired_test
from nrflab.measure.cascade import build_resumable, subset_outcomes, survivors
from nrflab.measure.ensemble import Threat, ensemble_robust, group_by_threat
from nrflab.measure.framework import image_outcomes
from nrflab.measure.health import top_class
from nrflab.measure.predict import PAPER, Protocol, predict

if TYPE_CHECKING:
    from nrflab.experiments.engine import CallTask


@dataclass(frozen=True)
class Outcomes:
    """One model on fixed evaluation images under one protocol, per image."""

    protocol: str
    labels: torch.Tensor
    predictions: torch.Tensor
    robust: Mapping[str, torch.Tensor] = field(default_factory=dict)
    ligs: torch.Tensor | None = None
    corruption: torch.Tensor | None = None
    corruption_table: Mapping[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def correct(self, shift: int = 0, num_classes: int | None = None) -> torch.Tensor:
        """1.0 where the prediction is the label (``shift``: the label + shift mod C), else 0.0."""
        target = self.labels if shift == 0 else (self.labels + shift) % int(num_classes or self.labels.max() + 1)
        return (self.predictions == target).float()

    def accuracy(self, shift: int = 0, num_classes: int | None = None) -> float:
        return float(self.correct(shift, num_classes).mean())

    def ligs_values(self) -> torch.Tensor:
        """Per-image LIGS (all NaN when it was not measured)."""
        return self.ligs if self.ligs is not None else torch.full((self.n,), float("nan"))

    def robust_correct(self, attack: str) -> torch.Tensor:
        return self.robust[attack].float()

    def top_class(self) -> tuple[int, float]:
        """The most frequent prediction and its share of the images."""
        return top_class(self.predictions)


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def cache_path(
    run_dir: str | Path,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    protocol: Protocol,
    attacks: Sequence[str],
    ligs_sigma: float | None,
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
    autoattack_size: int | None = None,
) -> Path:
    """Where :func:`measure` keeps these outcomes of the run's current final model."""
    from nrflab.features import sha256_file
    from nrflab.runs.rundir import RunDir

    if protocol.name != PAPER.name:
        attacks, ligs_sigma, corruptions = (), None, ()
    key = {
        "protocol": protocol.name,
        "attacks": list(attacks),
        "ligs_sigma": ligs_sigma,
        "seed": seed,
        "corruptions": list(corruptions),
        "severities": list(severities),
        "format": 1,
    }
    if autoattack_size is not None and any(parse_attack(a).kind == "autoattack" for a in attacks):
        key["autoattack_size"] = autoattack_size  # only then: the caches of runs without it keep their names
        key["autoattack_on"] = "survivors of the threat's other attacks"
    run = RunDir(run_dir)
    digest = _digest(key, sha256_file(run.model_path), x, y)
    return run.path / f"outcomes_{protocol.name}_{digest}.safetensors"


def measure(
    run_dir: str | Path,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    protocol: Protocol = PAPER,
    attacks: Sequence[str] = (),
    ligs_sigma: float | None = None,
    corruptions: Sequence[str] = (),
    severities: Sequence[int] = (),
    seed: int = 0,
    device: str = "auto",
    autoattack_size: int | None = None,
) -> Outcomes:
    """Per-image outcomes of the run's final model on ``(x, y)``, cached in the run directory. Attacks and LIGS
    only under the paper protocol; corruption outcomes: per-image accuracy averaged over every (corruption,
    severity) pair. AutoAttack keeps its resumable state in the run directory and, with ``autoattack_size``,
    runs on a fixed seeded subset of that many images (:data:`AUTOATTACK_SUBSET_SEED`; NaN on the others)."""
    from nrflab.core.io import atomic_save_tensors
    from nrflab.core.validation import resolve_device
    from nrflab.models.checkpoint import load_model
    from nrflab.runs.rundir import RunDir

    run = RunDir(run_dir)
    cache = cache_path(
        run_dir,
        x,
        y,
        protocol=protocol,
        attacks=attacks,
        ligs_sigma=ligs_sigma,
        corruptions=corruptions,
        severities=severities,
        seed=seed,
        autoattack_size=autoattack_size,
    )
    if protocol.name != PAPER.name:
        attacks, ligs_sigma, corruptions = (), None, ()
    if cache.is_file():
        loaded = _load(cache, protocol.name)
        if loaded is not None:
            return loaded
    dev = resolve_device(device)
    model = load_model(run.path, dev).eval()
    tensors = _attack_outcomes(
        model,
        x,
        y,
        attacks,
        ligs_sigma=ligs_sigma,
        seed=seed,
        protocol=protocol,
        autoattack_size=autoattack_size,
        state_dir=run.path,
    )
    table: dict[str, float] = {}
    if corruptions:
        tensors["corruption"], table = _corruption_outcomes(model, x, y, corruptions, severities, seed=seed)
    atomic_save_tensors(cache, tensors, {"protocol": protocol.name, "corruption_table": json.dumps(table)})
    return _from_tensors(tensors, protocol.name, table)


def _attack_outcomes(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[str],
    *,
    ligs_sigma: float | None,
    seed: int,
    protocol: Protocol,
    autoattack_size: int | None,
    state_dir: Path,
) -> dict[str, torch.Tensor]:
    """Labels, predictions, per-attack robust correctness and LIGS of ``model`` on ``(x, y)``; AutoAttack
    keeps its state in ``state_dir`` (the run directory) and runs on its subset where one is set."""
    specs = [parse_attack(a) for a in attacks]
    n = int(y.shape[0])
    chosen = seeded_subset(n, autoattack_size, seed=AUTOATTACK_SUBSET_SEED)
    subset = torch.arange(n) if chosen is None else chosen
    on_subset = [sp for sp in specs if sp.kind == "autoattack"]
    built = [
        (sp.label, build_resumable(sp, model, seed=seed, state_dir=state_dir)) for sp in specs if sp not in on_subset
    ]
    seen = image_outcomes(model, x.cpu(), y.cpu(), attacks=built, ligs_sigma=ligs_sigma, seed=seed, protocol=protocol)
    tensors: dict[str, torch.Tensor] = {"labels": y.cpu().long(), "predictions": seen.predictions}
    for label, correct in seen.robust.items():
        tensors[f"robust::{label}"] = correct.to(torch.uint8)
    if on_subset:
        for spec in on_subset:
            pending = survivors(
                spec, specs=specs, robust=seen.robust, clean_correct=seen.predictions == y.cpu(), subset=subset
            )
            tensors.update(
                subset_outcomes(model, x, y, [spec], subset=subset, pending=pending, seed=seed, state_dir=state_dir)
            )
    if seen.ligs is not None:
        tensors["ligs"] = seen.ligs.gradient_similarity.float()
    return tensors


#: The seed of the fixed subset of the final images that AutoAttack runs on where it runs on a subset.
AUTOATTACK_SUBSET_SEED = 1


def robust_under(o: Outcomes, attacks: Sequence[str], threat: Threat) -> torch.Tensor:
    """Per image (1.0 / 0.0): robust under every attack of ``attacks`` at ``threat`` (the ensemble, the
    strongest evaluation of that threat model the outcomes hold)."""
    return ensemble_robust(attacks, o.robust)[threat].float()


def claim_threat(attacks: Sequence[str]) -> Threat | None:
    """The threat model a robustness claim is judged at: the first perturbing final attack's."""
    return next(iter(group_by_threat(attacks)), None)


def strongest_note(attacks: Sequence[str], *, autoattack_size: int | None, n: int) -> str:
    """The sentence of a report that says what its ensemble columns and robustness verdicts stand on."""
    threat = claim_threat(attacks)
    if threat is None:
        return ""
    text = (
        f"Robustness verdicts are judged on the strongest evaluation at {threat.ball} (the first final attack's "
        "threat model): per image, robust only if every final attack of that threat failed (the ensemble column); "
        "attacks of another threat model are never pooled with it."
    )
    if not any(parse_attack(a).kind == "autoattack" for a in attacks):
        return text
    if autoattack_size is not None and autoattack_size < n:
        text += (
            f" AutoAttack ran on a fixed seeded subset of {autoattack_size} of the {n} images (cost), so its column "
            "and the ensemble are means over that subset; every other column is over all of them."
        )
    return text + (
        " AutoAttack attacked only the images every other attack of its threat left correctly classified (the "
        "cascade AutoAttack runs between its own attacks), so its column equals its threat's ensemble."
    )


def _corruption_outcomes(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    corruptions: Sequence[str],
    severities: Sequence[int],
    *,
    seed: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per image: accuracy averaged over every (corruption, severity) pair; and each pair's accuracy. Each
    batch of 256 is corrupted with ``seed + its start`` (as the cached outcomes were made)."""
    from nrflab.core.modules import model_device
    from nrflab.measure.corruptions import corrupt

    dev = model_device(model)
    table: dict[str, float] = {}
    total = torch.zeros(x.shape[0])
    for name in corruptions:
        for severity in severities:
            hits = []
            for start in range(0, x.shape[0], 256):
                xb = corrupt(x[start : start + 256].to(dev), name, severity, seed=seed + start)
                hits.append((predict(model, xb, batch_size=256).cpu() == y[start : start + 256].cpu()).float())
            per = torch.cat(hits)
            table[f"{name}@{severity}"] = float(per.mean())
            total += per
    return total / (len(corruptions) * len(severities)), table


def _from_tensors(t: Mapping[str, torch.Tensor], protocol: str, table: Mapping[str, float]) -> Outcomes:
    robust = {  # a subset's attack keeps its NaN (not attacked); the others are bool
        k.split("::", 1)[1]: v.float() if v.is_floating_point() else v.bool()
        for k, v in t.items()
        if k.startswith("robust::")
    }
    return Outcomes(
        protocol, t["labels"].long(), t["predictions"].long(), robust, t.get("ligs"), t.get("corruption"), dict(table)
    )


def _load(path: Path, protocol: str) -> Outcomes | None:
    from nrflab.core.errors import NrflabError
    from nrflab.core.io import load_tensors, read_metadata

    try:
        tensors = load_tensors(path, "evaluation cache")
        table = json.loads(read_metadata(path).get("corruption_table", "{}"))
    except (NrflabError, json.JSONDecodeError):
        return None
    return _from_tensors(tensors, protocol, table)


class Measured(TypedDict, total=False):
    """What is measured on the test images (see :func:`measure`): with the protocol and the seed, the keys of a
    run's cached outcomes."""

    attacks: Sequence[str]
    ligs_sigma: float | None
    corruptions: Sequence[str]
    severities: Sequence[int]
    autoattack_size: int | None


class MeasureRequest(Measured, total=False):
    """What an engine measurement task (:func:`measure_task`) asks for besides the run and the device: the test
    images (``dataset``, ``data_root``, ``test_size``) and what to measure on them (see :func:`measure`)."""

    dataset: Required[str]
    data_root: Required[str | None]
    test_size: Required[int | None]
    protocol: str
    seed: int


class _CacheKeys(Measured):
    """The keyword arguments that select a run's cached outcomes (:func:`cache_path`, :func:`measure`)."""

    protocol: Protocol
    seed: int


class _TestImageSettings(typing.Protocol):
    """Settings that name an experiment's fixed test images."""

    @property
    def dataset(self) -> str: ...
    @property
    def data_root(self) -> str | None: ...
    @property
    def test_size(self) -> int | None: ...


def on_test_images(settings: _TestImageSettings) -> MeasureRequest:
    """The part of a measurement request that names the settings' fixed test images (for :func:`measure_task`)."""
    return {"dataset": settings.dataset, "data_root": settings.data_root, "test_size": settings.test_size}


def _images_and_keys(request: MeasureRequest) -> tuple[torch.Tensor, torch.Tensor, _CacheKeys]:
    """The fixed test images of a request and the keys of its cached outcomes (the defaults of :func:`measure`)."""
    from nrflab.data import load_dataset
    from nrflab.experiments.analysis import test_images
    from nrflab.measure.predict import get_protocol

    x, y = test_images(load_dataset(request["dataset"], root=request["data_root"]), request["test_size"])
    keys: _CacheKeys = {
        "protocol": get_protocol(request.get("protocol", "paper")),
        "attacks": request.get("attacks", ()),
        "ligs_sigma": request.get("ligs_sigma"),
        "corruptions": request.get("corruptions", ()),
        "severities": request.get("severities", ()),
        "seed": request.get("seed", 0),
        "autoattack_size": request.get("autoattack_size"),
    }
    return x, y, keys


def measure_run(
    *, run_dir: str, device: str = "auto", progress: bool = False, **request: Unpack[MeasureRequest]
) -> str:
    """:func:`measure` on the fixed test images of ``dataset`` (what an engine task calls, so the
    evaluations of independent runs go in parallel; the analysis then reads the cache)."""
    x, y, keys = _images_and_keys(request)
    measure(run_dir, x, y, device=device, **keys)
    return run_dir


def measured(*, run_dir: str, device: str = "auto", **request: Unpack[MeasureRequest]) -> bool:
    """Whether :func:`measure_run` with these arguments would only read its cache."""
    from nrflab.runs.rundir import RunDir

    if not RunDir(run_dir).model_path.is_file():
        return False
    x, y, keys = _images_and_keys(request)
    return cache_path(run_dir, x, y, **keys).is_file()


def measure_task(run_key: str, **kwargs: object) -> CallTask:
    """The engine task that measures the run ``run_key`` once it has trained (see :func:`measure_run`)."""
    from nrflab.experiments.engine import CallTask

    tag = _digest(kwargs)[:10]
    return CallTask(
        f"{run_key}#measure-{tag}",
        "nrflab.experiments.evidence:measure_run",
        {"run_dir": run_key, **kwargs},
        after=(run_key,),
        done_target="nrflab.experiments.evidence:measured",
    )


# ---------------------------------------------------------------------------------------------
# Differences with intervals


@dataclass(frozen=True)
class Comparison:
    """``difference`` (a - b) with its 95 % interval, the two-sided p-value against 0, the number of paired
    seeds, and how the interval was made; ``a`` and ``b`` are the arms' means."""

    difference: float
    low: float
    high: float
    method: str
    a: float = math.nan
    b: float = math.nan
    p: float = math.nan
    n_seeds: int | None = None
    #: The per-seed differences the interval was made from (empty when it was not made over seeds).
    per_seed: tuple[float, ...] = ()

    def shifted(self, margin: float) -> Comparison:
        """The comparison of ``a - b + margin``: a non-inferiority test of ``a - b`` against ``-margin``
        (interval and p-value recomputed from the per-seed differences)."""
        from dataclasses import replace

        from nrflab.core.stats import one_sample_test

        if not self.per_seed:
            return replace(self, difference=self.difference + margin, low=self.low + margin, high=self.high + margin)
        d, lo, hi, p, _ = one_sample_test([v + margin for v in self.per_seed])
        return replace(self, difference=d, low=lo, high=hi, p=p, per_seed=tuple(v + margin for v in self.per_seed))


def compare(
    a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], *, seeds: Sequence[int], what: str = "test images"
) -> Comparison:
    """``mean(a) - mean(b)`` from per-image values of each seed's model (lists aligned with ``seeds``),
    paired by seed: each seed's model is first averaged over the ``what``."""
    return compare_scalars(
        [finite_mean(v.double()) for v in a],
        [finite_mean(v.double()) for v in b],
        seeds=seeds,
        note=f"each seed's mean over the same {int(a[0].isfinite().sum()) if a else 0} {what}",  # NaN: not measured
    )


def compare_scalars(a: Sequence[float], b: Sequence[float], *, seeds: Sequence[int], note: str = "") -> Comparison:
    """``a - b`` from one value per seed, paired by seed (paired t-test over seeds)."""
    d, lo, hi, p, n = paired_test(list(a), list(b))
    per_seed = tuple(float(x) - float(y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y))
    detail = f"; {note}" if note else ""
    return Comparison(
        d,
        lo,
        hi,
        f"95 % t-interval over {n} paired seed{'s' if n != 1 else ''} ({', '.join(map(str, seeds))}){detail}",
        finite_mean(list(a)),
        finite_mean(list(b)),
        p,
        n,
        per_seed,
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

"""The transfer matrix: craft adversarial examples once per source, evaluate every target on them.

Two numbers per (source, target) pair (see ``DEFINITIONS``):

* **target accuracy**: the target's accuracy (against the true labels) on all transferred examples;
* **transfer success**: among the *eligible* examples -- those the source classifies correctly when
  clean and the attack fools on the source (untargeted: source prediction != label; targeted: source
  predicts the target class), and that the target classifies correctly when clean -- the fraction the
  target gets wrong (untargeted) or assigns to the target class (targeted).

:func:`prepare_matrix` resolves and checks everything (models, their class counts and input shapes
against the data, the attack, seed, device) without writing; :func:`compute_matrix` does the work into a
claimed :class:`~nrflab.transfer.store.ResultStore`; :func:`transfer_matrix` does both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Union

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from typing_extensions import TypedDict, Unpack

from nrflab.attacks import Attack, AttackSpec, frozen_model, parse_attack
from nrflab.core.errors import NrflabError
from nrflab.core.logs import get_logger
from nrflab.core.seeds import seeded_subset
from nrflab.core.stats import wilson
from nrflab.core.validation import check_positive_int, check_seed, resolve_device
from nrflab.data import DatasetBundle
from nrflab.measure.metrics import dataset_tensors
from nrflab.measure.predict import predict
from nrflab.measure.transfer_rate import transfer_rate
from nrflab.models.inspection import first_line
from nrflab.transfer.refs import DEFAULT_GROUP_KEYS, GroupKeys, ModelLike, ModelRef, OutsideModelOptions, resolve_model
from nrflab.transfer.results import (
    DEFINITIONS,
    PairNumbers,
    PairResult,
    SourceFacts,
    TargetFacts,
    TransferResult,
    TransferSettings,
)
from nrflab.transfer.store import AdversarialSet, ResultStore, open_store

log = get_logger("transfer")

TargetPolicy = Literal["next", "random"]
AttackLike = Union[str, AttackSpec, Callable[[nn.Module], Attack]]
DataLike = Union[DatasetBundle, "Dataset[Any]", tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True, eq=False)
class MatrixJob:
    """A transfer matrix ready to compute: everything resolved and checked, nothing written yet."""

    sources: tuple[ModelRef, ...]
    targets: tuple[ModelRef, ...]
    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    make_attack: Callable[[nn.Module], Attack]
    settings: TransferSettings
    num_classes: int
    device: torch.device
    batch_size: int
    include_self: bool

    @property
    def targeted(self) -> bool:
        return self.settings.targeted


def attack_builder(
    attack: AttackLike, *, targeted: bool, seed: int, attack_name: str | None
) -> tuple[Callable[[nn.Module], Attack], str]:
    """A factory ``model -> Attack`` and a string naming it (for the settings record)."""
    if isinstance(attack, str):
        attack = parse_attack(attack)
    if isinstance(attack, AttackSpec):
        spec = replace(attack, targeted=True) if targeted else attack
        if spec.targeted != targeted:
            raise NrflabError("the attack spec is targeted but targeted=False was asked; pass targeted=True")
        return (lambda m: spec.build(m, seed=seed)), spec.to_string()
    if callable(attack):
        if not attack_name:
            raise NrflabError("an attack factory needs attack_name (it identifies the attack in cached results)")
        return attack, attack_name
    raise NrflabError(f"attack must be a spec string, an AttackSpec or a factory, got {type(attack).__name__}")


def choose_targets(y: torch.Tensor, num_classes: int, policy: str, seed: int) -> torch.Tensor:
    """Target classes for a targeted attack: (y+1) mod C ('next') or a seeded uniform wrong class ('random')."""
    if policy == "next":
        return (y + 1) % num_classes
    if policy == "random":
        shift = torch.randint(1, num_classes, y.shape, generator=torch.Generator().manual_seed(seed))
        return (y + shift) % num_classes
    raise NrflabError(f"unknown target policy {policy!r}; choose next or random")


def data_tensors(data: DataLike, *, limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All test samples, or a seeded random subset of ``limit`` of them kept in dataset order (test sets
    are often sorted by class, so the first N would be one class)."""
    if isinstance(data, DatasetBundle):
        data = data.test
    x, y = dataset_tensors(data)
    idx = seeded_subset(int(y.shape[0]), limit, seed=seed)
    if idx is not None:
        x, y = x[idx], y[idx]
    return x.float().contiguous(), y.long().contiguous()


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=12)
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _probe(ref: ModelRef, model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """The model's class count, checking that it accepts inputs shaped like the data."""
    cfg = getattr(model, "config", None)
    shape = getattr(cfg, "input_shape", None)
    if shape and tuple(shape) != tuple(x.shape[1:]):
        raise NrflabError(f"model {ref.name} expects inputs of shape {tuple(shape)}, the data has {tuple(x.shape[1:])}")
    try:
        with torch.no_grad(), frozen_model(model, "eval"):
            logits = model(x[:1].to(device))
    except Exception as exc:  # the user's module: any failure is one line naming it
        raise NrflabError(
            f"model {ref.name} does not accept inputs of shape {tuple(x.shape[1:])} ({first_line(exc)[:100]})"
        ) from None
    if not torch.is_tensor(logits) or logits.ndim != 2:
        shape_text = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise NrflabError(f"model {ref.name} returned an output of shape {shape_text}, not (N, classes)")
    return int(logits.shape[1])


def _check_models(
    sources: Sequence[ModelRef], targets: Sequence[ModelRef], x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> int:
    """One class count and input shape for all models and the data; returns the class count."""
    counts: dict[str, int] = {}
    for ref in [*sources, *targets]:
        if ref.name in counts:
            continue
        model = ref.load(device)
        counts[ref.name] = _probe(ref, model, x, device)
        del model
    first = next(iter(counts))
    for name, c in counts.items():
        if c != counts[first]:
            raise NrflabError(
                f"model {name} has {c} classes but {first} has {counts[first]}; "
                "sources and targets must share the label set"
            )
    c = counts[first]
    if int(y.max()) >= c:
        raise NrflabError(f"the data has label {int(y.max())} but the models have {c} classes")
    return c


def _unique_names(refs: Sequence[ModelRef], kind: str) -> None:
    seen: set[str] = set()
    for r in refs:
        if r.name in seen:
            raise NrflabError(f"two {kind}s are named {r.name!r}; names must be unique")
        seen.add(r.name)


class MatrixOptions(TypedDict, total=False):
    """The keywords :func:`transfer_matrix` hands to :func:`prepare_matrix` (which holds their defaults)."""

    targeted: bool
    target_policy: TargetPolicy
    attack_name: str | None
    source_epoch: int | None
    group_keys: GroupKeys
    model_options: OutsideModelOptions
    limit: int | None
    seed: int
    batch_size: int
    device: str | torch.device
    include_self: bool


def prepare_matrix(
    sources: Sequence[ModelLike],
    targets: Sequence[ModelLike],
    data: DataLike,
    attack: AttackLike,
    *,
    targeted: bool = False,
    target_policy: TargetPolicy = "next",
    attack_name: str | None = None,
    source_epoch: int | None = None,
    group_keys: GroupKeys = DEFAULT_GROUP_KEYS,
    model_options: OutsideModelOptions = OutsideModelOptions(),
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    include_self: bool = False,
) -> MatrixJob:
    """Resolve and check a matrix (see :func:`transfer_matrix`) without writing anything."""
    if not sources:
        raise NrflabError("no source models given")
    if not targets:
        raise NrflabError("no target models given")
    seed = check_seed(seed)
    batch_size = check_positive_int(batch_size, "batch size")
    if limit is not None:
        limit = check_positive_int(limit, "limit")
    if target_policy not in ("next", "random"):
        raise NrflabError(f"unknown target policy {target_policy!r}; choose next or random")
    dev = resolve_device(device)
    src_refs = tuple(
        resolve_model(s, epoch=source_epoch, group_keys=group_keys, options=model_options) for s in sources
    )
    tgt_refs = tuple(resolve_model(t, group_keys=group_keys, options=model_options) for t in targets)
    _unique_names(src_refs, "source")
    _unique_names(tgt_refs, "target")
    make_attack, attack_text = attack_builder(attack, targeted=targeted, seed=seed, attack_name=attack_name)
    x, y = data_tensors(data, limit=limit, seed=seed)
    num_classes = _check_models(src_refs, tgt_refs, x, y, dev)
    t = choose_targets(y, num_classes, target_policy, seed) if targeted else y
    settings = TransferSettings(
        attack_text, targeted, target_policy if targeted else "none", seed, int(y.shape[0]), _digest(x, y)
    )
    return MatrixJob(src_refs, tgt_refs, x, y, t, make_attack, settings, num_classes, dev, batch_size, include_self)


def _craft(job: MatrixJob, ref: ModelRef, progress: bool) -> AdversarialSet:
    model = ref.load(job.device)
    atk = job.make_attack(model)
    xs = []
    for i in tqdm(
        range(0, job.x.shape[0], job.batch_size), desc=f"attack {ref.name}", leave=False, disable=not progress
    ):
        xs.append(atk(job.x[i : i + job.batch_size].to(job.device), job.t[i : i + job.batch_size].to(job.device)).cpu())
    x_adv = torch.cat(xs)
    return AdversarialSet(
        x_adv=x_adv,
        y=job.y.clone(),
        t=job.t.clone(),
        source_clean_pred=predict(model, job.x, batch_size=job.batch_size),
        source_adv_pred=predict(model, x_adv, batch_size=job.batch_size),
    )


def _source_facts(ref: ModelRef, adv: AdversarialSet, job: MatrixJob) -> SourceFacts:
    correct = adv.source_clean_pred == job.y
    # white-box success is transfer to the source itself: right when clean and fooled by the attack
    pred, adv_pred = adv.source_clean_pred, adv.source_adv_pred
    targets = job.t if job.targeted else None
    itself = transfer_rate(
        source_clean=pred, source_adv=adv_pred, target_clean=pred, target_adv=adv_pred, labels=job.y, targets=targets
    )
    n, k = int(correct.sum()), itself.successes
    return SourceFacts(
        model=ref.info(),
        clean_accuracy=float(correct.float().mean()),
        clean_correct=n,
        fooled=k,
        whitebox_success=k / n if n else float("nan"),
        whitebox_ci=wilson(k, n),
        robust_accuracy=float((adv.source_adv_pred == job.y).float().mean()),
    )


def _pair_numbers(adv: AdversarialSet, clean_pred: torch.Tensor, adv_pred: torch.Tensor, job: MatrixJob) -> PairNumbers:
    y = job.y
    rate = transfer_rate(
        source_clean=adv.source_clean_pred,
        source_adv=adv.source_adv_pred,
        target_clean=clean_pred,
        target_adv=adv_pred,
        labels=y,
        targets=job.t if job.targeted else None,
    )
    return PairNumbers.count(
        clean_correct=int((clean_pred == y).sum()),
        adv_correct=int((adv_pred == y).sum()),
        total=int(y.shape[0]),
        eligible=rate.eligible,
        successes=rate.successes,
    )


def compute_matrix(job: MatrixJob, store: ResultStore, *, progress: bool = True) -> TransferResult:
    """Craft on every source (or reuse the cache), evaluate every target, and collect the typed result."""
    adversarial: dict[str, AdversarialSet] = {}
    source_facts = []
    for ref in tqdm(job.sources, desc="crafting on sources", disable=not progress, unit="source"):
        adv = store.load_adversarial(ref)
        if adv is None:
            adv = _craft(job, ref, progress)
            store.save_adversarial(ref, adv)
        adversarial[ref.name] = adv
        source_facts.append(_source_facts(ref, adv, job))

    target_facts, pairs = [], {}
    bar = tqdm(total=len(job.sources) * len(job.targets), desc="evaluating targets", disable=not progress, unit="pair")
    for tref in job.targets:
        model: nn.Module | None = None
        clean_pred: torch.Tensor | None = None
        first: PairNumbers | None = None
        for sref in job.sources:
            numbers = store.load_pair(sref, tref)
            if numbers is None:
                if model is None:
                    model = tref.load(job.device)
                    clean_pred = predict(model, job.x, batch_size=job.batch_size)
                assert clean_pred is not None
                adv_pred = predict(model, adversarial[sref.name].x_adv, batch_size=job.batch_size)
                numbers = _pair_numbers(adversarial[sref.name], clean_pred, adv_pred, job)
                store.save_pair(sref, tref, numbers)
            first = first or numbers
            pairs[(sref.name, tref.name)] = PairResult(
                sref.name, tref.name, sref.group, tref.group, sref.origin == tref.origin, numbers
            )
            bar.update(1)
        assert first is not None
        target_facts.append(
            TargetFacts(
                model=tref.info(), clean_accuracy=first.target_clean_accuracy, clean_correct=first.target_clean_correct
            )
        )
        del model
    bar.close()
    store.commit()
    for s in source_facts:
        if s.fooled == 0:
            log.warning("the attack fooled source %s on no example; its transfer success is undefined", s.name)
    for tf in target_facts:
        if tf.clean_correct == 0:
            log.warning("target %s classifies no clean example correctly; it has no eligible examples", tf.name)
    return TransferResult(
        job.settings, tuple(source_facts), tuple(target_facts), pairs, job.include_self, dict(DEFINITIONS)
    )


def transfer_matrix(
    sources: Sequence[ModelLike],
    targets: Sequence[ModelLike],
    data: DataLike,
    attack: AttackLike,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **options: Unpack[MatrixOptions],
) -> TransferResult:
    """Craft adversarial examples on each source once and evaluate every target on them.

    ``options`` are :func:`prepare_matrix`'s (:class:`MatrixOptions`, with its defaults).
    ``data``: (x, y) tensors, a Dataset or a DatasetBundle (its test set); ``limit`` takes a random subset
    of that many samples drawn with ``seed`` (kept in dataset order). ``attack``: a spec
    (``"pgd-linf:eps=0.1,steps=10"``), an AttackSpec, or a factory ``model -> Attack`` (then
    ``attack_name`` identifies it). ``targeted`` aims at classes chosen by ``target_policy``.

    Everything is checked before ``out_dir`` is touched. Results are cached there
    (``adversarial/<source>.safetensors``, ``pairs/<source>__<target>.json``): with ``resume`` a rerun
    under the same settings reuses them; without it existing results are refused; other settings are
    refused unless ``overwrite`` (the old results are kept until the first new one is written).
    """
    job = prepare_matrix(sources, targets, data, attack, **options)
    with open_store(out_dir, job.settings, resume=resume, overwrite=overwrite) as store:
        return compute_matrix(job, store, progress=progress)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

"""The per-epoch evaluation of a run: the framework's row (clean accuracy, robust accuracy per attack,
LIGS; computed by :mod:`nrflab.measure.framework`) and the dataset's probes, on a fixed evaluation set
(the same images every epoch and across twins).

Evaluation is fp32 and in eval mode whatever the training used. On a GPU it keeps its counts on the
device (one synchronization per epoch, not per batch), builds each attack once per run (so their CUDA
graphs are captured once), checks the images once, draws LIGS's noise once, and takes the largest batch
that fits when the config's evaluation batch size is ``"auto"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from nrflab.attacks import Attack, AttackSpec, check_images
from nrflab.core import accel
from nrflab.core.columns import CLEAN, LIGS, LOGIT_SIM, SHIFTED, robust_key
from nrflab.core.seeds import seeded_subset
from nrflab.data import DatasetBundle, Probe
from nrflab.measure.framework import image_outcomes
from nrflab.measure.ligs import ligs_noise
from nrflab.measure.metrics import dataset_tensors
from nrflab.training.config import TrainConfig

TIMING_COLUMNS = ["epoch_time", "eval_time", "wall_time"]


@dataclass
class _Reused:
    """What an :class:`EvalSet` computes once and every epoch reuses (None: not yet)."""

    attacks: tuple[tuple[object, ...], nn.Module, list[Attack]] | None = None
    noise: tuple[int, torch.Tensor] | None = None  # (seed, noise)
    batch: tuple[int | str, int] | None = None  # (setting, resolved batch size)
    checked: bool = False


@dataclass(frozen=True)
class EvalSet:
    """The images evaluated every epoch, on the training device (in the model's memory layout).

    ``cache`` keeps what every epoch reuses: the built attacks, LIGS's noise, the resolved batch size
    and whether the images were checked."""

    x: torch.Tensor
    y: torch.Tensor
    cache: _Reused = field(default_factory=_Reused, compare=False, repr=False)

    @classmethod
    def from_bundle(cls, bundle: DatasetBundle, cfg: TrainConfig, device: torch.device) -> EvalSet:
        x, y = dataset_tensors(bundle.test)
        idx = seeded_subset(int(y.shape[0]), cfg.eval_size, seed=cfg.seed)  # the same images every epoch and twin
        if idx is not None:
            x, y = x[idx], y[idx]
        x = x.to(device)
        if cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return cls(x, y.to(device))

    def attacks(self, model: nn.Module, specs: Sequence[AttackSpec], seed: int) -> list[Attack]:
        """The attacks of ``specs`` on ``model``, built once and reused every epoch (they keep no state
        between calls but their captured graphs; a graph is recaptured if the model's tensors move)."""
        key = ("attacks", id(model), tuple(specs), seed)
        cached = self.cache.attacks
        if cached is None or cached[0] != key or cached[1] is not model:
            cached = (key, model, [spec.build(model, seed=seed) for spec in specs])
            self.cache.attacks = cached
        return cached[2]

    def noise(self, seed: int) -> torch.Tensor:
        """LIGS's per-image noise for these images (drawn once)."""
        if self.cache.noise is None or self.cache.noise[0] != seed:
            self.cache.noise = (seed, ligs_noise(self.x, seed))
        return self.cache.noise[1]

    def batch_size(self, value: int | str, model: nn.Module) -> int:
        """The evaluation batch size: ``value`` if an integer, else probed once (``"auto"``)."""
        if self.cache.batch is None or self.cache.batch[0] != value:
            size = accel.resolve_batch_size(value, model=model, sample=self.x[:1], total=int(self.y.shape[0]))
            self.cache.batch = (value, int(size))
        return self.cache.batch[1]

    def check(self) -> None:
        """The attacks' [0,1] check of the images, done once instead of in every attack call."""
        if not self.cache.checked:
            check_images(self.x)
            self.cache.checked = True


def probe_columns(probes: Sequence[Probe]) -> list[str]:
    """The columns every probe adds, in order (duplicates are an error of the dataset)."""
    cols: list[str] = []
    for p in probes:
        cols += [c for c in p.columns() if c not in cols]
    return cols


def run_probes(model: nn.Module, probes: Sequence[Probe]) -> dict[str, float]:
    """Every probe's metrics for ``model`` (left in its mode; probes must not change it)."""
    row: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for p in probes:
            row.update({k: float(v) for k, v in p(model).items()})
    finally:
        model.train(was_training)
    return row


def metrics_columns(cfg: TrainConfig, probes: Sequence[Probe] = ()) -> list[str]:
    """The columns of a run's metrics.csv, in order."""
    cols = ["epoch", "lr", "train_loss", "train_acc", CLEAN]
    if cfg.eval_shifted_labels:
        cols.append(SHIFTED)
    cols += [robust_key(s.label) for s in cfg.attack_specs()]
    if cfg.ligs:
        cols += [LIGS, LOGIT_SIM]
    cols += probe_columns(probes)
    return cols + TIMING_COLUMNS


def evaluate_epoch(
    model: nn.Module, cfg: TrainConfig, data: EvalSet, num_classes: int, probes: Sequence[Probe] = ()
) -> dict[str, float]:
    """Clean accuracy, robust accuracy per attack, LIGS and logit similarity on the evaluation set (the
    framework's row, :func:`nrflab.measure.framework.image_outcomes`), and the probes' metrics. Always fp32
    and in eval mode, whatever the training used."""
    specs = cfg.attack_specs()
    was_training = model.training
    model.eval()
    try:
        bs = data.batch_size(cfg.eval_batch_size, model)
        attacks = data.attacks(model, specs, cfg.seed)
        if attacks:
            data.check()
        seen = image_outcomes(
            model,
            data.x,
            data.y,
            attacks=[(spec.label, attack) for spec, attack in zip(specs, attacks, strict=True)],
            ligs_sigma=cfg.ligs_sigma if cfg.ligs else None,
            seed=cfg.seed,
            batch_size=bs,
            ligs_noise=data.noise(cfg.seed) if cfg.ligs else None,
            check_inputs=False,
        )
        summary = seen.summary()  # the epoch's one synchronization for the counts
        row = {CLEAN: summary.clean_acc}
        if cfg.eval_shifted_labels:
            row[SHIFTED] = int((seen.predictions == (data.y + 1) % num_classes).sum()) / seen.n
        row.update({robust_key(label): value for label, value in summary.robust_acc.items()})
        if summary.ligs is not None and summary.logit_sim is not None:
            row[LIGS] = summary.ligs
            row[LOGIT_SIM] = summary.logit_sim
        row.update(run_probes(model, probes))
    finally:
        model.train(was_training)
    return row


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

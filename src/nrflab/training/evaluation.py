"""The per-epoch evaluation of a run: clean accuracy, robust accuracy per attack, LIGS, and the
dataset's probes, on a fixed evaluation set (the same images every epoch and across twins).

Evaluation is fp32 and in eval mode whatever the training used. On a GPU it keeps its counts on the
device (one synchronization per epoch, not per batch), builds each attack once per run (so their CUDA
graphs are captured once), checks the images once, draws LIGS's noise once, and takes the largest batch
that fits when the config's evaluation batch size is ``"auto"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nrflab.attacks import Attack, AttackSpec, check_images
from nrflab.core import accel
from nrflab.core.columns import CLEAN, LIGS, LOGIT_SIM, SHIFTED, robust_key
from nrflab.data import DatasetBundle, Probe
from nrflab.measure.metrics import dataset_tensors, ligs_noise, ligs_per_sample
from nrflab.training.config import TrainConfig

TIMING_COLUMNS = ["epoch_time", "eval_time", "wall_time"]


@dataclass(frozen=True)
class EvalSet:
    """The images evaluated every epoch, on the training device (in the model's memory layout).

    ``cache`` keeps what every epoch reuses: the built attacks, LIGS's noise, the resolved batch size
    and whether the images were checked."""

    x: torch.Tensor
    y: torch.Tensor
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_bundle(cls, bundle: DatasetBundle, cfg: TrainConfig, device: torch.device) -> EvalSet:
        x, y = dataset_tensors(bundle.test)
        if cfg.eval_size is not None and cfg.eval_size < y.shape[0]:
            # A fixed, seeded subset: the same images every epoch and across twins.
            idx = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[: cfg.eval_size]
            idx = idx.sort().values
            x, y = x[idx], y[idx]
        x = x.to(device)
        if cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return cls(x, y.to(device))

    def attacks(self, model: nn.Module, specs: Sequence[AttackSpec], seed: int) -> list[Attack]:
        """The attacks of ``specs`` on ``model``, built once and reused every epoch (they keep no state
        between calls but their captured graphs; a graph is recaptured if the model's tensors move)."""
        key = ("attacks", id(model), tuple(specs), seed)
        cached = self.cache.get("attacks")
        if cached is None or cached[0] != key or cached[1] is not model:
            cached = (key, model, [spec.build(model, seed=seed) for spec in specs])
            self.cache["attacks"] = cached
        return cached[2]

    def noise(self, seed: int) -> torch.Tensor:
        """LIGS's per-image noise for these images (drawn once)."""
        if self.cache.get("noise_seed") != seed:
            self.cache["noise"] = ligs_noise(self.x, seed)
            self.cache["noise_seed"] = seed
        noise: torch.Tensor = self.cache["noise"]
        return noise

    def batch_size(self, value: int | str, model: nn.Module) -> int:
        """The evaluation batch size: ``value`` if an integer, else probed once (``"auto"``)."""
        if self.cache.get("batch_setting") != value:
            self.cache["batch_size"] = accel.resolve_batch_size(
                value, model=model, sample=self.x[:1], total=int(self.y.shape[0])
            )
            self.cache["batch_setting"] = value
        return int(self.cache["batch_size"])

    def check(self) -> None:
        """The attacks' [0,1] check of the images, done once instead of in every attack call."""
        if not self.cache.get("checked"):
            check_images(self.x)
            self.cache["checked"] = True


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
    """Clean accuracy, robust accuracy per attack, LIGS and logit similarity on the evaluation set, and
    the probes' metrics. Always fp32 and in eval mode, whatever the training used."""
    row: dict[str, float] = {}
    specs = cfg.attack_specs()
    counts = torch.zeros(2 + len(specs), dtype=torch.long, device=data.y.device)  # clean, shifted, per attack
    was_training = model.training
    model.eval()
    try:
        bs = data.batch_size(cfg.eval_batch_size, model)
        attacks = data.attacks(model, specs, cfg.seed)
        if attacks:
            data.check()
        for i in range(0, data.y.shape[0], bs):
            x, y = data.x[i : i + bs], data.y[i : i + bs]
            with torch.no_grad():
                pred = model(x).argmax(1)
            counts[0] += (pred == y).sum()
            counts[1] += (pred == (y + 1) % num_classes).sum()
            for j, attack in enumerate(attacks):
                x_adv = attack.apply(x, y, check_inputs=False)
                with torch.no_grad():
                    counts[2 + j] += (model(x_adv).argmax(1) == y).sum()
        n = data.y.shape[0]
        totals = counts.tolist()  # the epoch's one synchronization for the counts
        row[CLEAN] = totals[0] / n
        if cfg.eval_shifted_labels:
            row[SHIFTED] = totals[1] / n
        for spec, c in zip(specs, totals[2:], strict=True):
            row[robust_key(spec.label)] = c / n
        if cfg.ligs:
            res = ligs_per_sample(
                model, data.x, data.y, sigma=cfg.ligs_sigma, seed=cfg.seed, batch_size=bs, noise=data.noise(cfg.seed)
            )
            row[LIGS] = res.ligs
            row[LOGIT_SIM] = res.logit_sim
        row.update(run_probes(model, probes))
    finally:
        model.train(was_training)
    return row


__all__ = [
    "EvalSet",
    "evaluate_epoch",
]

"""The per-epoch evaluation of a run: clean accuracy, robust accuracy per attack, LIGS, and the
dataset's probes, on a fixed evaluation set (the same images every epoch and across twins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..data import DatasetBundle, Probe
from ..metrics import dataset_tensors, ligs_per_sample
from ..results import CLEAN, LIGS, LOGIT_SIM, SHIFTED, robust_key
from .config import TrainConfig

TIMING_COLUMNS = ["epoch_time", "eval_time", "wall_time"]


@dataclass(frozen=True)
class EvalSet:
    """The images evaluated every epoch, on the training device."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_bundle(cls, bundle: DatasetBundle, cfg: TrainConfig, device: torch.device) -> "EvalSet":
        x, y = dataset_tensors(bundle.test)
        if cfg.eval_size is not None and cfg.eval_size < y.shape[0]:
            # A fixed, seeded subset: the same images every epoch and across twins.
            idx = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[: cfg.eval_size]
            idx = idx.sort().values
            x, y = x[idx], y[idx]
        return cls(x.to(device), y.to(device))


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


def evaluate_epoch(model: nn.Module, cfg: TrainConfig, data: EvalSet, num_classes: int,
                   probes: Sequence[Probe] = ()) -> dict[str, float]:
    """Clean accuracy, robust accuracy per attack, LIGS and logit similarity on the evaluation set, and
    the probes' metrics. Always fp32 and in eval mode, whatever the training used."""
    row: dict[str, float] = {}
    specs = cfg.attack_specs()
    correct = 0
    robust = {s.label: 0 for s in specs}
    shifted = 0
    bs = cfg.eval_batch_size
    was_training = model.training
    model.eval()
    try:
        for i in range(0, data.y.shape[0], bs):
            x, y = data.x[i: i + bs], data.y[i: i + bs]
            with torch.no_grad():
                pred = model(x).argmax(1)
            correct += int((pred == y).sum())
            shifted += int((pred == (y + 1) % num_classes).sum())
            for spec in specs:
                x_adv = spec.build(model, seed=cfg.seed)(x, y)
                with torch.no_grad():
                    robust[spec.label] += int((model(x_adv).argmax(1) == y).sum())
        n = data.y.shape[0]
        row[CLEAN] = correct / n
        if cfg.eval_shifted_labels:
            row[SHIFTED] = shifted / n
        for label, c in robust.items():
            row[robust_key(label)] = c / n
        if cfg.ligs:
            res = ligs_per_sample(model, data.x, data.y, sigma=cfg.ligs_sigma, seed=cfg.seed, batch_size=bs)
            row[LIGS] = res.ligs
            row[LOGIT_SIM] = res.logit_sim
        row.update(run_probes(model, probes))
    finally:
        model.train(was_training)
    return row


__all__ = ["EvalSet", "TIMING_COLUMNS", "evaluate_epoch", "metrics_columns", "probe_columns", "run_probes"]

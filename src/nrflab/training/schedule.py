"""Optimizer, learning-rate schedule and the per-epoch random generators of a run.

The learning rate is a pure function of (config, epoch, step) and every epoch's randomness comes from a
generator keyed on (seed, epoch), so a resumed run replays the uninterrupted one exactly and needs no
scheduler state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nrflab.training.config import TrainConfig


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or Adam, with the config's weight decay."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate at (0-based) ``epoch`` and ``step`` within it.

    ``multistep``/``cosine``/``constant`` may start with a linear warm-up over ``warmup_epochs``;
    ``onecycle`` has its own (30 % up, cosine down to lr/1e4, PyTorch's defaults).
    """
    spe = max(steps_per_epoch, 1)
    t_epochs = epoch + step / spe
    if cfg.schedule == "onecycle":
        total = max(cfg.epochs * spe, 1)
        t = (epoch * spe + step) / total
        start, floor = cfg.lr / 25, cfg.lr / 1e4
        if t < 0.3:
            return start + (cfg.lr - start) * t / 0.3
        return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * (t - 0.3) / 0.7))
    if cfg.schedule == "constant":
        lr = cfg.lr
    elif cfg.schedule == "multistep":
        lr = cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    else:  # cosine
        t = (epoch * spe + step) / max(cfg.epochs * spe, 1)
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.warmup_epochs > 0 and t_epochs < cfg.warmup_epochs:
        lr *= min(1.0, (t_epochs + 1 / spe) / cfg.warmup_epochs)
    return lr


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, stream): resumed runs replay exactly."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % (2**63))


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

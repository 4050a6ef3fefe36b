"""Evaluation protocols: how a trained model's predictions on test images are made.

* ``paper`` -- the paper's (and the official code's) protocol: the model in eval mode, so BatchNorm
  normalizes every image with the running statistics gathered during training.
* ``batch-stats`` -- BN evaluated with batch statistics: each batch of ``BATCH_STATS_BATCH`` test images
  (in a fixed, seeded random order, so no batch is one class) is normalized by its own mean and variance,
  as in training. The running statistics are restored afterwards; models without BatchNorm give the same
  predictions under both protocols.

Why the variant: a BN model trained on images whose statistics differ from clean test images (the
feature datasets, built by perturbing every training image) carries running statistics that do not fit
clean images; with them it may predict one class for almost every test image, although its features do
separate the classes. Judging the feature claims under both protocols tells a statistics mismatch from a
model that learned nothing useful. The paper's numbers are under ``paper``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nrflab.attacks import frozen_model
from nrflab.core.errors import NrflabError

#: Test images per batch under the batch-statistics protocol.
BATCH_STATS_BATCH = 250


@dataclass(frozen=True)
class Protocol:
    """A named way of evaluating a model, with the sentence the report prints for it."""

    name: str
    title: str
    description: str


PAPER = Protocol(
    "paper",
    "the paper's protocol (BN with running statistics)",
    "model in eval mode; BatchNorm normalizes with its running statistics, as in the official code",
)
BATCH_STATS = Protocol(
    "batch-stats",
    "the batch-statistics protocol (BN with batch statistics)",
    f"BatchNorm normalizes each batch of {BATCH_STATS_BATCH} test images (a fixed seeded random "
    "order) with the batch's own statistics; running statistics untouched; models without BN "
    "are unaffected",
)
PROTOCOLS = {p.name: p for p in (PAPER, BATCH_STATS)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise NrflabError(f"unknown evaluation protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def has_batch_norm(model: nn.Module) -> bool:
    """Whether any BatchNorm layer would use batch statistics in train mode."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def predict(
    model: nn.Module, x: torch.Tensor, *, protocol: Protocol, batch_size: int = 256, seed: int = 0
) -> torch.Tensor:
    """Predicted classes for ``x`` (CPU, in ``x``'s order) under ``protocol``; the model is left as it was."""
    device = next(model.parameters()).device
    if protocol.name == "paper" or not has_batch_norm(model):
        order = torch.arange(x.shape[0])
        mode: Literal["eval", "train"] = "eval"
        size = batch_size
    else:
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        mode, size = "train", BATCH_STATS_BATCH
    preds = torch.empty(x.shape[0], dtype=torch.long)
    with torch.no_grad(), frozen_model(model, mode, keep_buffers=True):
        for start in range(0, x.shape[0], size):
            idx = order[start : start + size]
            preds[idx] = model(x[idx].to(device)).argmax(1).cpu()
    return preds


__all__ = [
    "BATCH_STATS",
    "PAPER",
    "PROTOCOLS",
    "Protocol",
    "get_protocol",
    "predict",
]

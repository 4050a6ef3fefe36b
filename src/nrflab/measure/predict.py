"""Predictions in batches, under a named evaluation protocol: the only batch loop that turns images into
predicted classes.

* ``paper`` -- the paper's (and the official code's) protocol: the model in eval mode, so BatchNorm
  normalizes every image with the running statistics gathered during training.
* ``batch-stats`` -- BN evaluated with batch statistics: each batch of ``BATCH_STATS_BATCH`` test images
  (in a fixed, seeded random order, so no batch is one class) is normalized by its own mean and variance,
  as in training. The running statistics are restored afterwards; models without BatchNorm give the same
  predictions under both protocols.
* ``batch-stats-in-order`` -- batch statistics over consecutive batches of the caller's size, in the
  images' own order (the planted views are already shuffled; the reliance probe and the MNIST question
  use it).

Why batch statistics: a BN model trained on images whose statistics differ from clean test images (the
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

from nrflab.core.errors import NrflabError
from nrflab.core.modules import frozen_model, model_device

#: Test images per batch under the batch-statistics protocol.
BATCH_STATS_BATCH = 250


@dataclass(frozen=True)
class Protocol:
    """A named way of predicting with a model, with the sentence the report prints for it.

    ``batch_statistics``: BN normalizes with each batch's statistics (train mode, buffers restored);
    ``shuffled``: the batches are drawn in a seeded random order; ``batch_size``: the batch size the
    protocol fixes (None: the caller's)."""

    name: str
    title: str
    description: str
    batch_statistics: bool = False
    shuffled: bool = False
    batch_size: int | None = None


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
    batch_statistics=True,
    shuffled=True,
    batch_size=BATCH_STATS_BATCH,
)
BATCH_STATS_IN_ORDER = Protocol(
    "batch-stats-in-order",
    "batch statistics over consecutive batches",
    "BatchNorm normalizes each consecutive batch of the caller's size with the batch's own statistics; "
    "running statistics untouched; models without BN are unaffected",
    batch_statistics=True,
)
#: The protocols a user can name (``--protocol``).
PROTOCOLS = {p.name: p for p in (PAPER, BATCH_STATS)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise NrflabError(f"unknown evaluation protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def has_batch_norm(model: nn.Module) -> bool:
    """Whether any BatchNorm layer would use batch statistics in train mode."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def predict(
    model: nn.Module, x: torch.Tensor, *, protocol: Protocol = PAPER, batch_size: int = 256, seed: int = 0
) -> torch.Tensor:
    """Predicted classes for ``x`` under ``protocol``, in ``x``'s order and on ``x``'s device.

    The model (mode, parameter flags, buffers) is left as it was. Without BatchNorm every protocol is
    ``paper`` (eval mode, ``batch_size``). Predictions stay on the model's device until one copy at the
    end, so a GPU caller with images on the GPU never synchronizes here."""
    n = int(x.shape[0])
    device = model_device(model)
    mode: Literal["eval", "train"] = "eval"
    size, order = batch_size, None
    if protocol.batch_statistics and has_batch_norm(model):
        mode, size = "train", protocol.batch_size or batch_size
        if protocol.shuffled:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if size < 1:
        raise NrflabError(f"batch size must be >= 1, got {size}")
    chunks = []
    with torch.no_grad(), frozen_model(model, mode, keep_buffers=True):
        for start in range(0, n, size):
            batch = x[start : start + size] if order is None else x[order[start : start + size]]
            chunks.append(model(batch.to(device)).argmax(1))
    if not chunks:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    preds = torch.cat(chunks)
    if order is not None:
        preds = torch.empty_like(preds).index_copy_(0, order.to(preds.device), preds)
    return preds.to(x.device)


__all__ = ["BATCH_STATS", "PAPER", "PROTOCOLS", "Protocol", "get_protocol", "predict"]

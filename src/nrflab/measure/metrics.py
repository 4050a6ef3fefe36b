"""Usefulness (clean accuracy) and robust usefulness (robust accuracy) on any data source -- a Dataset, a
DataLoader, an iterable of batches or a tensor pair -- streamed batch by batch, and the data helpers the
measurements share. Per-image outcomes and the framework's row with LIGS are in
:mod:`nrflab.measure.framework`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nrflab.attacks import Attack
from nrflab.core.errors import NrflabError
from nrflab.core.modules import model_device
from nrflab.data.base import iterate_batches
from nrflab.measure.framework import robust_correct
from nrflab.measure.predict import predict

Data = Union[
    DataLoader[Any], Dataset[Any], tuple[torch.Tensor, torch.Tensor], Iterable[tuple[torch.Tensor, torch.Tensor]]
]


def batches(
    data: Data, batch_size: int = 256, device: torch.device | str | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches on ``device`` from a Dataset, a DataLoader, an iterable of batches or a tensor pair."""
    device = device or "cpu"
    if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
        x, y = data
        for i in range(0, x.shape[0], batch_size):
            yield x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
    elif isinstance(data, Dataset):
        yield from iterate_batches(data, batch_size, device)
    else:
        for x, y in data:
            yield x.to(device), torch.as_tensor(y).to(device)


def accuracy(model: nn.Module, data: Data, batch_size: int = 256) -> float:
    """Clean accuracy in [0,1] (the framework's *usefulness*) on any data source, model in eval mode."""
    device = model_device(model)
    correct = torch.zeros((), dtype=torch.long, device=device)  # counted on the device: no sync per batch
    total = 0
    for x, y in batches(data, batch_size, device):
        correct += (predict(model, x, batch_size=batch_size) == y).sum()
        total += int(y.shape[0])
    if total == 0:
        raise NrflabError("no samples to evaluate")
    return int(correct) / total


def robust_accuracy(model: nn.Module, data: Data, attack: Attack, batch_size: int = 256) -> float:
    """Accuracy on adversarial examples from ``attack`` (*robust usefulness*), in [0,1], on any data source.

    The attack is run untargeted on the true labels (see :func:`nrflab.measure.framework.robust_correct`).
    """
    device = model_device(model)
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    for x, y in batches(data, batch_size, device):
        correct += robust_correct(model, x, y, attack, batch_size=batch_size).sum()
        total += int(y.shape[0])
    if total == 0:
        raise NrflabError("no samples to evaluate")
    return int(correct) / total


def dataset_tensors(data: Data, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All (or the first ``limit``) samples of ``data`` as two CPU tensors."""
    xs, ys, n = [], [], 0
    for x, y in batches(data, 512, "cpu"):
        xs.append(x)
        ys.append(y)
        n += y.shape[0]
        if limit is not None and n >= limit:
            break
    if not xs:
        raise NrflabError("the dataset is empty")
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


__all__ = ["accuracy", "dataset_tensors", "robust_accuracy"]

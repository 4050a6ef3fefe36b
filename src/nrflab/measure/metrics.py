"""Metrics of the paper's framework: usefulness (clean accuracy), robust usefulness (robust accuracy)
and robustness of the used features (LIGS, local input-gradient similarity)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from nrflab.attacks import Attack, frozen_model, per_sample_noise
from nrflab.core.columns import EvalResult
from nrflab.core.errors import NrflabError
from nrflab.core.modules import model_device
from nrflab.core.stats import finite_mean
from nrflab.data.base import iterate_batches

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


@torch.no_grad()
def predict(model: nn.Module, data: Data, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels (on CPU) for all samples, model in eval mode."""
    device = model_device(model)
    preds, labels = [], []
    with frozen_model(model, "eval"):
        for x, y in batches(data, batch_size, device):
            preds.append(model(x).argmax(1))
            labels.append(y)
    if not preds:
        raise NrflabError("no samples to evaluate")
    return torch.cat(preds).cpu(), torch.cat(labels).cpu()  # one device-to-host copy, not one per batch


def accuracy(model: nn.Module, data: Data, batch_size: int = 256) -> float:
    """Clean accuracy in [0,1] (the framework's *usefulness*)."""
    pred, y = predict(model, data, batch_size)
    return int((pred == y).sum()) / int(y.numel())


def robust_accuracy(model: nn.Module, data: Data, attack: Attack, batch_size: int = 256) -> float:
    """Accuracy on adversarial examples from ``attack`` (*robust usefulness*), in [0,1].

    For a targeted attack the labels passed to it are the true labels' targets chosen by the attack's
    caller; here the attack is run untargeted on the true labels.
    """
    device = model_device(model)
    correct = torch.zeros((), dtype=torch.long, device=device)  # counted on the device: no sync per batch
    total = 0
    for x, y in batches(data, batch_size, device):
        x_adv = attack(x, y)
        with torch.no_grad(), frozen_model(model, "eval"):
            correct += (model(x_adv).argmax(1) == y).sum()
        total += y.shape[0]
    if total == 0:
        raise NrflabError("no samples to evaluate")
    return int(correct) / total


@dataclass
class LigsResult:
    """Per-sample LIGS values (NaN where a gradient vanished) and logit cosine similarities."""

    gradient_similarity: torch.Tensor
    logit_similarity: torch.Tensor

    @property
    def ligs(self) -> float:
        return finite_mean(self.gradient_similarity)

    @property
    def logit_sim(self) -> float:
        return finite_mean(self.logit_similarity)


def _ce_input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return grad, logits.detach()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity; NaN where either vector is zero (so it can be filtered)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    denom: torch.Tensor = a.norm(dim=1) * b.norm(dim=1)  # Tensor.norm is typed Any
    return ((a * b).sum(1) / denom).float()


LIGS_NOISE_SALT = 777
"""The salt that keys LIGS's per-image noise (see :func:`nrflab.attacks.per_sample_noise`)."""


def ligs_noise(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The standard-normal draw LIGS adds (times sigma) to each image of ``x``, keyed on its content.

    A fixed evaluation set gets the same draw every epoch: callers that evaluate it repeatedly compute
    this once and pass it to :func:`ligs_per_sample` as ``noise`` (hashing every image on the host
    each epoch costs more than the gradients on a GPU)."""
    return per_sample_noise(x, seed, "normal", salt=LIGS_NOISE_SALT)


def ligs_per_sample(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.01,
    seed: int = 0,
    batch_size: int = 256,
    *,
    noise: torch.Tensor | None = None,
) -> LigsResult:
    """Cosine similarity of the cross-entropy input gradient at x and at x + N(0, sigma^2), per sample.

    Exactly as the paper's code: pixel-space noise, one draw per image, no clamp, true labels, model in
    eval mode. The noise is keyed on each image's content, so results do not depend on batching.
    ``noise`` is :func:`ligs_noise` of ``x`` for this ``seed``, precomputed (it is not checked).
    """
    if sigma < 0:
        raise NrflabError(f"sigma must be >= 0, got {sigma}")
    if noise is not None and noise.shape != x.shape:
        raise NrflabError(f"LIGS noise of shape {tuple(noise.shape)} for images of shape {tuple(x.shape)}")
    device = model_device(model)
    grads, logits = [], []
    with frozen_model(model, "eval"):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            draw = (
                ligs_noise(xb, seed) if noise is None else noise[i : i + batch_size].to(device=device, dtype=xb.dtype)
            )
            noisy = xb + sigma * draw
            g0, l0 = _ce_input_grad(model, xb, yb)
            g1, l1 = _ce_input_grad(model, noisy, yb)
            grads.append(_cosine(g0, g1))  # kept on the device: one copy at the end, no sync per batch
            logits.append(_cosine(l0, l1))
    if not grads:
        return LigsResult(torch.empty(0), torch.empty(0))
    return LigsResult(torch.cat(grads).cpu(), torch.cat(logits).cpu())


def ligs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float = 0.01, seed: int = 0, batch_size: int = 256
) -> float:
    """The paper's Local Input Gradient Similarity (the framework's *robustness*): near 1 = locally
    linear, robust features; NaN/Inf per-sample values are dropped before averaging."""
    return ligs_per_sample(model, x, y, sigma, seed, batch_size).ligs


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


__all__ = [
    "accuracy",
    "dataset_tensors",
    "evaluate_model",
    "ligs",
    "ligs_noise",
    "ligs_per_sample",
    "model_device",
    "robust_accuracy",
]


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[tuple[str, Attack]],
    ligs_sigma: float | None = 0.01,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> EvalResult:
    """The framework's row for one model: clean accuracy, robust accuracy per (label, attack), LIGS."""
    from tqdm.auto import tqdm

    clean = accuracy(model, (x, y), batch_size)
    robust = {}
    for label, attack in tqdm(attacks, desc="attacks", disable=not progress, leave=False):
        robust[label] = robust_accuracy(model, (x, y), attack, batch_size)
    ligs_value = sim = None
    if ligs_sigma is not None:
        res = ligs_per_sample(model, x, y, sigma=ligs_sigma, seed=seed, batch_size=batch_size)
        ligs_value, sim = res.ligs, res.logit_sim
    return EvalResult(clean_acc=clean, robust_acc=robust, ligs=ligs_value, logit_sim=sim, num_samples=int(y.shape[0]))

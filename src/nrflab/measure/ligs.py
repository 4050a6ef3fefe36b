"""LIGS (local input-gradient similarity), the framework's *robustness* of the used features, and the
logit similarity measured with it: per image, as the paper's official code computes them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.attacks import per_sample_noise
from nrflab.core.errors import NrflabError
from nrflab.core.modules import frozen_model, model_device
from nrflab.core.stats import finite_mean


@dataclass(frozen=True)
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


__all__ = ["ligs", "ligs_noise", "ligs_per_sample"]

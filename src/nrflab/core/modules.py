"""Facts about and guards around a ``torch.nn.Module`` that every room needs: its device, and running code on
it with its mode, parameter flags and (optionally) buffers restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

ModelMode = Literal["eval", "train"]

__all__ = ["ModelMode", "frozen_model", "model_device"]


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@dataclass
class _ModelState:
    training: dict[nn.Module, bool]
    requires_grad: list[tuple[nn.Parameter, bool]]
    buffers: list[tuple[torch.Tensor, torch.Tensor]] | None


@contextmanager
def frozen_model(model: nn.Module, mode: ModelMode = "eval", keep_buffers: bool = True) -> Iterator[nn.Module]:
    """Run code on ``model`` in ``mode`` with parameters frozen; restore mode and flags afterwards.

    With ``mode="train"`` BatchNorm uses batch statistics and would update its running statistics;
    ``keep_buffers=True`` restores them, ``False`` lets the updates stand (the official code's
    adversarial training did so).
    """
    state = _ModelState(
        training={m: m.training for m in model.modules()},
        requires_grad=[(p, p.requires_grad) for p in model.parameters()],
        buffers=[(b, b.detach().clone()) for b in model.buffers()] if (mode == "train" and keep_buffers) else None,
    )
    try:
        model.train(mode == "train")
        for p, _ in state.requires_grad:
            p.requires_grad_(False)
        yield model
    finally:
        for m, flag in state.training.items():
            m.training = flag
        for p, flag in state.requires_grad:
            p.requires_grad_(flag)
        if state.buffers is not None:
            with torch.no_grad():
                for b, saved in state.buffers:
                    b.copy_(saved)

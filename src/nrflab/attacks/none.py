"""The identity attack ``none``: the clean images, a baseline row next to real attacks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from nrflab.attacks.base import Attack
from nrflab.attacks.registry import register_attack
from nrflab.core.modules import ModelMode

if TYPE_CHECKING:
    from nrflab.attacks.spec import AttackSpec

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


@register_attack("none", norm="linf")
class NoAttack(Attack):
    """The identity: returns the clean images (a baseline row next to real attacks)."""

    name = "none"
    perturbs: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, seed: int = 0, mode: ModelMode = "eval", keep_buffers: bool = True):
        super().__init__(model, eps=0.0, norm="linf", mode=mode, keep_buffers=keep_buffers, seed=seed)

    @classmethod
    def from_spec(cls, spec: AttackSpec, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> NoAttack:
        """The identity on ``model`` (a spec of ``none`` has no settings)."""
        return cls(model, seed=seed, **kwargs)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x

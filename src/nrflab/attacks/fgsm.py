"""The fast gradient (sign) method: one step of size eps; ``fgsm`` (Linf) and ``fgm-l2``."""

from __future__ import annotations

import torch

from nrflab.attacks.base import Attack, normalized_step
from nrflab.attacks.registry import register_attack

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


@register_attack("fgm-l2", norm="l2")
@register_attack("fgsm", norm="linf")
class FGSM(Attack):
    """Fast gradient (sign) method: one step of size eps; ``norm="l2"`` gives the L2 fast gradient method."""

    name = "fgsm"

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        grad, _ = self.input_gradient(x, y)
        step = normalized_step(grad, self.norm)
        # Pixels without gradient stay put (eps=inf would otherwise give 0 * inf = NaN).
        return torch.where(step == 0, x, x + self.eps * step)

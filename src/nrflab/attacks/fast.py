"""Speed without other results: the PGD update as one compiled kernel, and one whole step as a CUDA graph.

Nothing here changes what an attack computes: the compiled update is the same sequence of operations as
:func:`pgd_update` (bit-exact for Linf, the last bit of an L2 norm's summation order otherwise), and a
captured graph replays the eager kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nrflab.attacks.base import Norm, enforce_ball, normalized_step
from nrflab.core import accel

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


def pgd_update(
    x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, *, norm: Norm, step_size: float, eps: float
) -> torch.Tensor:
    """One PGD update: a normalized step along ``grad``, then projection onto the eps-ball and [0,1].

    Written as one function so that it can be compiled into one fused kernel (a dozen launches of small
    element-wise and reduction kernels otherwise weigh as much as a small model's own pass). Eagerly it
    is exactly the unfused sequence.
    """
    x_adv = x_adv + step_size * normalized_step(grad, norm)
    return enforce_ball(x, x_adv, norm=norm, eps=eps)


compiled_pgd_update = accel.CompiledFunction(pgd_update)
""":func:`pgd_update` compiled (on its first call); the eager function if compilation fails."""

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``step(x_adv, y, x) -> next x_adv``: one iteration of an attack."""


class GraphedStep:
    """One captured attack step on static buffers (``x``, ``y``, the iterate), replayed ``steps`` times."""

    def __init__(self, step: Step, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y, self.x_adv = x.clone(), y.clone(), x.clone()

        def body() -> None:
            self.x_adv.copy_(step(self.x_adv, self.y, self.x))

        self.captured = accel.CapturedStep(body, x.device)

    def run(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
        """The iterate after ``steps`` replays from ``start`` (a fresh tensor, not the static buffer)."""
        self.x.copy_(x)
        self.y.copy_(y)
        self.x_adv.copy_(start)
        for _ in range(steps):
            self.captured.replay()
        return self.x_adv.clone()

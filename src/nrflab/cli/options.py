"""Option parsing shared by commands: attack specs from command-line flags."""

from __future__ import annotations

from typing import Optional

from ..attacks import AttackSpec, attack_from_parts
from ..errors import NrflabError


def attack_specs_from_flags(
    attack: Optional[list[str]],
    eps: Optional[float],
    steps: Optional[int],
    step_size: Optional[float],
    random_start: bool = False,
    restarts: int = 1,
    targeted: bool = False,
) -> list[AttackSpec] | None:
    """``--attack pgd-l2 --eps 0.25 ...`` or full specs ``--attack pgd-l2:eps=0.25,steps=10``; None if no attack given."""
    if not attack:
        if eps is not None or steps is not None or step_size is not None:
            raise NrflabError("--eps/--steps/--step-size need an --attack (e.g. --attack pgd-l2)")
        return None
    if eps is not None and eps < 0:
        raise NrflabError(f"eps must be >= 0, got {eps}")
    specs = [
        attack_from_parts(
            text,
            eps=eps,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            restarts=restarts,
            targeted=targeted,
        )
        for text in attack
    ]
    return specs

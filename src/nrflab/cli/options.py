"""Options shared by commands, declared once so a name means the same thing everywhere, and attack specs
from command-line flags."""

from __future__ import annotations

from typing import Optional

import typer

from nrflab.attacks import AttackSpec, attack_from_parts
from nrflab.core.errors import NrflabError

EVAL_DATASET_OPTION = typer.Option(
    None,
    "--dataset",
    "-d",
    help="Dataset name or built dataset directory; default: the run's (or pretrained model's) dataset.",
)
DATA_ROOT_OPTION = typer.Option(None, "--data-root", help="Where the dataset's files are.")
DOWNLOAD_OPTION = typer.Option(False, "--download", help="Fetch missing dataset files (needs internet).")
ATTACKS_OPTION = typer.Option(
    None,
    "--attack",
    "-a",
    help="pgd-l2, pgd-linf, fgsm, fgm-l2, or a full spec like 'pgd-l2:eps=0.25,step=0.1,steps=10' (repeatable). "
    "Default: the dataset preset's attacks.",
)
EPS_OPTION = typer.Option(None, "--eps", help="Attack radius (pixel scale, inputs in [0,1]).")
STEPS_OPTION = typer.Option(None, "--steps", help="Attack iterations (default 10).")
STEP_SIZE_OPTION = typer.Option(None, "--step-size", help="Attack step (default 2.5 * eps / steps).")


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

"""AutoAttack after cheaper attacks: run it only where the threat's worst case is still open.

An image that another attack of the same threat model (norm and eps) already fooled, or that the model gets
wrong unattacked, is not robust under that threat whatever AutoAttack would find; attacking only the rest is
the cascade AutoAttack itself runs between its own attacks, and it leaves every ensemble value unchanged at a
fraction of the cost. AutoAttack keeps a resumable state in a given folder (a run directory), so an interrupted
evaluation resumes after its last finished attack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from nrflab.attacks import Attack, AttackSpec
from nrflab.measure.ensemble import threat_of
from nrflab.measure.framework import image_outcomes

__all__ = ["build_resumable", "subset_outcomes", "survivors"]


def survivors(
    spec: AttackSpec,
    *,
    specs: Sequence[AttackSpec],
    robust: Mapping[str, torch.Tensor],
    clean_correct: torch.Tensor,
    subset: torch.Tensor,
) -> torch.Tensor:
    """The images of ``subset`` that ``spec`` still has to attack: classified correctly and left robust by
    every other attack of its threat model. Elsewhere the threat's worst case is already decided (the
    cascade AutoAttack itself runs between its attacks), so skipping them changes no ensemble value."""
    threat = threat_of(spec)
    keep = clean_correct.bool().clone()
    for other in specs:
        if other is not spec and other.label in robust and threat is not None and threat_of(other) == threat:
            keep &= robust[other.label].bool()
    return subset[keep[subset]]


def subset_outcomes(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    specs: Sequence[AttackSpec],
    *,
    subset: torch.Tensor,
    pending: torch.Tensor,
    seed: int,
    state_dir: Path,
) -> dict[str, torch.Tensor]:
    """Robust correctness under ``specs`` on the images ``subset`` (1.0 / 0.0), NaN on every other image.

    Only ``pending`` (a part of ``subset``) is attacked; the rest of the subset is recorded as not robust,
    since another attack of the same threat already fooled the model there (or it was wrong unattacked).
    The column is therefore the worst case of the threat on the subset, equal to its ensemble."""
    built = [(sp.label, build_resumable(sp, model, seed=seed, state_dir=state_dir)) for sp in specs]
    out = {}
    for label, attack in built:
        full = torch.full((int(y.shape[0]),), float("nan"))
        full[subset] = 0.0
        if pending.numel():
            seen = image_outcomes(model, x[pending].cpu(), y[pending].cpu(), attacks=[(label, attack)], seed=seed)
            full[pending] = seen.robust[label].cpu().float()
        out[f"robust::{label}"] = full
    return out


def build_resumable(spec: AttackSpec, model: torch.nn.Module, *, seed: int, state_dir: Path | None) -> Attack:
    """The attack of ``spec``; AutoAttack keeps its resumable state in ``state_dir`` (the run directory), so
    an interrupted final evaluation resumes after its last finished attack instead of starting over (None:
    no state is kept)."""
    extra = {"state_dir": state_dir} if state_dir is not None and spec.kind == "autoattack" else {}
    return spec.build(model, seed=seed, **extra)

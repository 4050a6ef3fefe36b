"""The strongest evaluation per threat model: the per-image worst case over every attack of one threat.

A *threat model* is a norm and a radius (``l2`` eps 1, ``linf`` eps 8/255). Several attacks may be evaluated
at one threat (PGD-10 and AutoAttack, say); an image is robust under the threat only if every one of them
failed on it, so the *ensemble* robust accuracy of a threat is never above any of its attacks' own. Attacks
of different threats are never pooled: an L2 attack at eps 1 and an Linf attack at eps 0.1 answer different
questions, and a worst case over both would answer neither. Attacks that perturb nothing (``none``) belong
to no threat. An attack run on a subset of the images (AutoAttack on a fixed seeded subset of the final
images, where running it on all of them costs too much) marks the others NaN (not attacked), and the ensemble
of its threat is then NaN there too: it is the worst case over the images every attack of the threat saw, and
a finite mean of it is a mean over that subset. Every place that reports an ensemble (``evaluate``, ``compare``, the experiments' tables and
verdicts) takes it from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from nrflab.attacks import AttackSpec, parse_attack
from nrflab.attacks.base import Norm
from nrflab.core.columns import robust_key
from nrflab.core.errors import NrflabError
from nrflab.core.fmt import eps as eps_text

__all__ = ["Threat", "ensemble_robust", "group_by_threat"]


@dataclass(frozen=True, order=True)
class Threat:
    """A threat model: the norm of the ball and its radius."""

    norm: Norm
    eps: float

    @property
    def name(self) -> str:
        """``ensemble l2 eps=1``, ``ensemble linf eps=8/255``: the ensemble's label (radius as a reader writes it)."""
        return f"ensemble {self.norm} eps={eps_text(self.eps)}"

    @property
    def key(self) -> str:
        """The ensemble's metric column, e.g. ``robust_acc[ensemble l2 eps=1]``."""
        return robust_key(self.name)

    @property
    def ball(self) -> str:
        """The threat as a reader writes it: ``L2 eps 1``, ``Linf eps 8/255``."""
        return f"{self.norm.upper().replace('LINF', 'Linf')} eps {eps_text(self.eps)}"

    @property
    def title(self) -> str:
        """A reader's name: ``ensemble, L2 eps 1``."""
        return f"ensemble, {self.ball}"


def threat_of(spec: AttackSpec | str) -> Threat | None:
    """The threat model of an attack (a spec or its text); None for an attack that perturbs nothing."""
    s = parse_attack(spec) if isinstance(spec, str) else spec
    if not s.entry.perturbs:
        return None
    return Threat(norm=s.norm, eps=float(s.eps))


def group_by_threat(specs: Sequence[AttackSpec | str]) -> dict[Threat, list[AttackSpec]]:
    """The perturbing attacks grouped by threat model, threats in the order their first attack comes."""
    groups: dict[Threat, list[AttackSpec]] = {}
    for spec in specs:
        s = parse_attack(spec) if isinstance(spec, str) else spec
        threat = threat_of(s)
        if threat is not None:
            groups.setdefault(threat, []).append(s)
    return groups


def ensemble_robust(
    specs: Sequence[AttackSpec | str], robust: Mapping[str, torch.Tensor], *, min_attacks: int = 1
) -> dict[Threat, torch.Tensor]:
    """Per threat model, per image: 1.0 (robust) only if every attack of that threat failed on it, 0.0 if
    one succeeded, NaN where an attack of the threat did not attack the image.

    ``robust`` maps each attack's result key (its spec's ``label``) to per-image robust correctness (bool,
    or 1.0 / 0.0 / NaN for an attack run on a subset of the images).
    Threats with fewer than ``min_attacks`` attacks are left out (``min_attacks=2``: only where an ensemble
    says more than the one attack's own number). A spec without a result is refused in one line.
    """
    out: dict[Threat, torch.Tensor] = {}
    for threat, members in group_by_threat(specs).items():
        if len(members) < min_attacks:
            continue
        missing = [s.label for s in members if s.label not in robust]
        if missing:
            raise NrflabError(f"no result for the attack {missing[0]} (have {', '.join(robust) or 'none'})")
        # the minimum of 1.0 / 0.0 per image; NaN (not attacked) propagates through torch.amin
        out[threat] = torch.stack([robust[s.label].cpu().float() for s in members]).amin(0)
    return out

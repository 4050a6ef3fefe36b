"""Lives here: how an input is perturbed: every attack (one file each, registered by name), the eps-ball, AttackSpec.
Never here: what an attack is measured with (robust accuracy, transfer rates: ``nrflab.measure``), training.
To add one: a new file with ``@register_attack("name", norm="l2")`` on an ``Attack`` subclass implementing
``_perturb`` (and ``from_spec`` if it takes more than eps/norm/targeted); import it below.

``atk = PGD(model, norm="l2", eps=0.5)`` then ``x_adv = atk(x, y)``; or ``parse_attack("pgd-l2:eps=0.5").build(model)``.
The base class's ``@final`` entry point enforces the invariants once, for every attack: the result lies in
the eps-ball around ``x`` and in [0,1]; ``x`` is not modified; the model's parameters, buffers (BatchNorm
running statistics) and train/eval mode are the same afterwards; no parameter gradients are computed or left.
Modules: ``base`` (Attack, projection, noise), ``registry`` (register_attack, list_attacks), ``spec``
(AttackSpec, parse_attack), ``fast`` (compiled update, CUDA graphs), ``pgd``, ``fgsm``, ``none``,
``autoattack`` (AutoAttack through ``pyautoattack``: ``autoattack:version=custom,attacks=apgd-ce+apgd-t``).
"""

from __future__ import annotations

# The order of registration is the order of listings and messages: PGD, the fast gradient methods, none,
# AutoAttack (through pyautoattack).
from nrflab.attacks.pgd import PGD  # isort: split

from nrflab.attacks.fgsm import FGSM  # isort: split

from nrflab.attacks.none import NoAttack  # isort: split

from nrflab.attacks.autoattack import AutoAttack  # isort: split

from nrflab.attacks.base import Attack, Norm, check_images, cross_entropy_loss, per_sample_noise, project
from nrflab.attacks.fast import pgd_update
from nrflab.attacks.registry import attack_kind, list_attacks, register_attack
from nrflab.attacks.spec import (
    AttackSpec,
    attack_from_parts,
    default_step_size,
    distinct_labels,
    parse_attack,
    parse_number,
)
from nrflab.core.modules import frozen_model

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AttackSpec",
    "AutoAttack",
    "NoAttack",
    "Norm",
    "attack_from_parts",
    "distinct_labels",
    "attack_kind",
    "check_images",
    "cross_entropy_loss",
    "default_step_size",
    "frozen_model",
    "list_attacks",
    "parse_attack",
    "parse_number",
    "per_sample_noise",
    "pgd_update",
    "project",
    "register_attack",
]

"""Attacks by name: ``@register_attack("pgd-l2", norm="l2")`` on an :class:`Attack` subclass makes
``parse_attack("pgd-l2:eps=0.5")``, ``AttackSpec(kind="pgd-l2")`` and every ``--attack`` flag accept it.

One class may be registered under several names (PGD is ``pgd-linf`` and ``pgd-l2``); the name fixes the norm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from nrflab.attacks.base import NORMS, Attack, Norm
from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry

A = TypeVar("A", bound=type[Attack])

__all__ = [
    "list_attacks",
    "register_attack",
]


@dataclass(frozen=True)
class AttackKind:
    """A registered attack: its name, its class and the norm of its eps-ball."""

    name: str
    attack: type[Attack]
    norm: Norm

    @property
    def iterative(self) -> bool:
        """Whether a spec of it needs ``steps >= 1``."""
        return self.attack.iterative

    @property
    def perturbs(self) -> bool:
        """False for the identity (``none``), which has eps 0 and takes no options."""
        return self.attack.perturbs


_ATTACKS: Registry[AttackKind] = Registry("attack")


def register_attack(name: str, *, norm: Norm) -> Callable[[A], A]:
    """Register an :class:`Attack` subclass under ``name`` with the norm of its eps-ball (``linf`` or ``l2``).

    ``AttackSpec.build`` then makes it through the class's :meth:`Attack.from_spec`. Names are lower case
    (specs are parsed case-insensitively) and contain no ``:`` or ``,`` (the spec grammar's separators).
    """
    if norm not in NORMS:
        raise NrflabError(f"unknown norm {norm!r} for attack {name!r}; choose linf or l2")
    if not isinstance(name, str) or name != name.lower() or any(c in name for c in ":,= "):
        raise NrflabError(f"attack name {name!r} must be lower case without ':', ',', '=' or spaces")

    def make(cls: A) -> AttackKind:
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise NrflabError(f"register_attack({name!r}) decorates an Attack subclass, not {cls!r}")
        return AttackKind(name=name, attack=cls, norm=norm)

    return _ATTACKS.register(name, make)


def attack_kind(name: str) -> AttackKind:
    """The registered attack ``name``; an unknown name raises one line listing the known ones."""
    return _ATTACKS.get(name)


def list_attacks(filter: str | None = None) -> list[str]:
    """Names of the registered attacks in registration order; ``filter`` is a shell pattern (``"pgd-*"``)."""
    return _ATTACKS.names(filter)

"""Attacks by name: ``@register_attack("pgd-l2", norm="l2")`` on an :class:`Attack` subclass makes
``parse_attack("pgd-l2:eps=0.5")``, ``AttackSpec(kind="pgd-l2")`` and every ``--attack`` flag accept it.

One class may be registered under several names (PGD is ``pgd-linf`` and ``pgd-l2``); the name fixes the norm,
unless the registration lets a spec choose it (``norms=("linf", "l2")``: ``autoattack:norm=l2``). A registration
also says which :class:`~nrflab.attacks.AttackSpec` settings a spec of it may set (``options``; PGD's by default)
and the values a text setting may take (``choices``), so a spec refuses in one line what does not apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from nrflab.attacks.base import NORMS, Attack, Norm
from nrflab.core.errors import NrflabError
from nrflab.core.records import Forward
from nrflab.core.registry import Registry

A = TypeVar("A", bound=type[Attack])

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

CLASSIC_OPTIONS: frozenset[str] = frozenset({"eps", "step_size", "steps", "random_start", "restarts", "targeted"})
"""The :class:`~nrflab.attacks.AttackSpec` fields a kind takes unless its registration says otherwise."""


@dataclass(frozen=True)
class AttackKind:
    """A registered attack: its name, its class, the norm of its eps-ball (the default where a spec may choose
    among ``norms``), the spec fields it takes (``options``) and the allowed values of its text fields."""

    name: str
    attack: type[Attack]
    norm: Norm
    norms: tuple[Norm, ...] = ()
    options: frozenset[str] = CLASSIC_OPTIONS
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def choices_of(self, option: str) -> tuple[str, ...]:
        """The values the text setting ``option`` may take (empty: not restricted)."""
        return dict(self.choices).get(option, ())

    #: Whether a spec of it needs ``steps >= 1``.
    iterative = Forward[bool]("attack")
    #: False for the identity (``none``), which has eps 0 and takes no options.
    perturbs = Forward[bool]("attack")


_ATTACKS: Registry[AttackKind] = Registry("attack")


def register_attack(
    name: str,
    *,
    norm: Norm,
    norms: Iterable[Norm] = (),
    options: Iterable[str] | None = None,
    choices: Mapping[str, Iterable[str]] | None = None,
) -> Callable[[A], A]:
    """Register an :class:`Attack` subclass under ``name`` with the norm of its eps-ball (``linf`` or ``l2``).

    ``AttackSpec.build`` then makes it through the class's :meth:`Attack.from_spec`. Names are lower case
    (specs are parsed case-insensitively) and contain no ``:`` or ``,`` (the spec grammar's separators).
    ``norms``: the norms a spec may choose with ``norm=`` (``norm`` is then the default); ``options``: the
    :class:`~nrflab.attacks.AttackSpec` fields a spec of it may set (default :data:`CLASSIC_OPTIONS`);
    ``choices``: the allowed values of text fields (``{"version": ("standard", "custom")}``).
    """
    chosen = tuple(norms)
    if norm not in NORMS or any(n not in NORMS for n in chosen) or (chosen and norm not in chosen):
        raise NrflabError(f"unknown norm {norm!r} for attack {name!r}; choose linf or l2")
    if not isinstance(name, str) or name != name.lower() or any(c in name for c in ":,= "):
        raise NrflabError(f"attack name {name!r} must be lower case without ':', ',', '=' or spaces")

    def make(cls: A) -> AttackKind:
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise NrflabError(f"register_attack({name!r}) decorates an Attack subclass, not {cls!r}")
        return AttackKind(
            name=name,
            attack=cls,
            norm=norm,
            norms=chosen,
            options=CLASSIC_OPTIONS if options is None else frozenset(options),
            choices=tuple((key, tuple(values)) for key, values in (choices or {}).items()),
        )

    return _ATTACKS.register(name, make)


def attack_kind(name: str) -> AttackKind:
    """The registered attack ``name``; an unknown name raises one line listing the known ones."""
    return _ATTACKS.get(name)


def list_attacks(filter: str | None = None) -> list[str]:
    """Names of the registered attacks in registration order; ``filter`` is a shell pattern (``"pgd-*"``)."""
    return _ATTACKS.names(filter)

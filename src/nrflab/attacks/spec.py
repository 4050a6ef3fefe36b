"""The one description of an attack: :class:`AttackSpec`, and its text ``kind:key=value,...``.

``pgd-l2:eps=0.25,step=0.1,steps=10`` on the command line, in configs and in reports; ``AttackSpec(...)`` in
Python. The kind is looked up in the attack registry, so an attack registered with ``@register_attack`` is
accepted here without touching this file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from nrflab.attacks.base import Attack, Norm
from nrflab.attacks.registry import AttackKind, attack_kind
from nrflab.core.errors import NrflabError

__all__: list[str] = []  # nothing to import from here: the room's public names come from its package


@dataclass(frozen=True)
class AttackSpec:
    """A serializable attack description; ``build(model)`` makes the attack."""

    kind: str = "pgd-l2"
    eps: float = 0.25
    step_size: float | None = None
    steps: int = 10
    random_start: bool = False
    restarts: int = 1
    targeted: bool = False

    def __post_init__(self) -> None:
        entry = attack_kind(self.kind)
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise NrflabError(f"eps must be a finite number >= 0, got {self.eps}")
        for name in ("steps", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise NrflabError(f"{name} must be an integer, got {value!r}")
        if entry.iterative and self.steps < 1:
            raise NrflabError(
                f"steps must be >= 1 for {self.kind}, got {self.steps} (use the attack 'none' for clean accuracy)"
            )
        if self.steps < 0:
            raise NrflabError(f"steps must be >= 0, got {self.steps}")
        if self.restarts < 1:
            raise NrflabError(f"restarts must be >= 1, got {self.restarts}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise NrflabError(f"step size must be a finite number > 0, got {self.step_size}")
        if entry.perturbs and self.eps == 0:
            raise NrflabError(f"eps must be > 0 for {self.kind} (use the attack 'none' for clean accuracy)")

    @property
    def entry(self) -> AttackKind:
        """The registered attack this spec names."""
        return attack_kind(self.kind)

    @property
    def norm(self) -> Norm:
        """The norm of the eps-ball, fixed by the kind's registration."""
        return self.entry.norm

    @property
    def label(self) -> str:
        """A short column-friendly name, e.g. ``pgd-l2_0.25``."""
        if not self.entry.perturbs:
            return self.kind
        return f"{self.kind}_{self.eps:g}" + ("_t" if self.targeted else "")

    def build(self, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> Attack:
        """The attack this spec describes, on ``model`` (``kwargs``: loss_fn, mode, keep_buffers, accelerate, ...)."""
        return self.entry.attack.from_spec(self, model, seed=seed, **kwargs)

    def to_string(self) -> str:
        """The spec as text that :func:`parse_attack` reads back to an equal spec."""
        if not self.entry.perturbs:
            return self.kind
        parts = [f"eps={self.eps!r}", f"steps={self.steps}"]
        if self.step_size is not None:
            parts.append(f"step={self.step_size!r}")
        if self.random_start:
            parts.append("random_start=1")
        if self.restarts > 1:
            parts.append(f"restarts={self.restarts}")
        if self.targeted:
            parts.append("targeted=1")
        return f"{self.kind}:{','.join(parts)}"


_SPEC_KEYS = {
    "eps": "eps",
    "step": "step_size",
    "step_size": "step_size",
    "steps": "steps",
    "random_start": "random_start",
    "rs": "random_start",
    "restarts": "restarts",
    "targeted": "targeted",
}


def _option(key: str, value: str, text: str) -> float | int | bool:
    """One ``key=value`` of a spec, typed by the field it sets."""
    field_name = _SPEC_KEYS[key]
    if field_name in ("random_start", "targeted"):
        return value.lower() in ("1", "true", "yes", "on")
    number = _number(value, text)
    if field_name in ("steps", "restarts"):
        if not number.is_integer():
            raise NrflabError(f"{key} must be a whole number, got {value!r} in attack {text!r}")
        return int(number)
    return number


def parse_attack(text: str) -> AttackSpec:
    """Parse ``kind[:key=value,...]``, e.g. ``pgd-linf:eps=8/255,steps=20,step=2/255``."""
    text = text.strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    values: dict[str, float | int | bool] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in _SPEC_KEYS:
            raise NrflabError(f"bad attack option {item!r} in {text!r}; use keys {', '.join(sorted(_SPEC_KEYS))}")
        values[_SPEC_KEYS[key]] = _option(key, value, text)
    if values and not attack_kind(kind).perturbs:
        raise NrflabError(f"the attack {kind!r} takes no options, got {text!r}")
    return AttackSpec(kind=kind, **values)  # type: ignore[arg-type]  # each value typed by _option


def _number(value: str, text: str) -> float:
    """A float, allowing fractions like ``8/255``."""
    if not re.fullmatch(r"[0-9eE.+\-]+(/[0-9eE.+\-]+)?", value.strip()):
        raise NrflabError(f"bad number {value!r} in attack {text!r}")
    try:
        if "/" in value:
            num, den = value.split("/")
            return float(num) / float(den)
        return float(value)
    except (ValueError, ZeroDivisionError):
        raise NrflabError(f"bad number {value!r} in attack {text!r}") from None


def attack_from_parts(
    text: str,
    *,
    eps: float | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    random_start: bool = False,
    restarts: int = 1,
    targeted: bool = False,
) -> AttackSpec:
    """The attack of a command line or a config: a full spec (``kind:key=value,...``) as written, or a bare
    kind completed by ``eps`` (required), ``steps`` (default 10), ``step_size`` and the flags. Separate
    eps/steps/step size next to a full spec are refused rather than silently ignored."""
    spec = parse_attack(text)
    if ":" in text or not spec.entry.perturbs:
        if eps is not None or steps is not None or step_size is not None:
            raise NrflabError(
                f"attack {text!r} is a full spec; give eps/steps/step size inside it, not as separate options"
            )
        return spec
    if eps is None:
        raise NrflabError(f"attack {text!r} needs eps (--eps, or write it as {text}:eps=VALUE)")
    return AttackSpec(
        kind=spec.kind,
        eps=eps,
        steps=steps if steps is not None else 10,
        step_size=step_size,
        random_start=random_start,
        restarts=restarts,
        targeted=targeted,
    )

"""The one description of an attack: :class:`AttackSpec`, and its text ``kind:key=value,...``.

``pgd-l2:eps=0.25,step=0.1,steps=10`` or ``autoattack:version=custom,attacks=apgd-ce+apgd-t,norm=l2,eps=0.5`` on
the command line, in configs and in reports; ``AttackSpec(...)`` in Python. Which keys a kind takes is part of
its registration; any other key is refused in one line. The kind is looked up in the attack registry, so an attack registered with ``@register_attack`` is
accepted here without touching this file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Union

from torch import nn

from nrflab.attacks.base import Attack, Norm
from nrflab.attacks.registry import AttackKind, attack_kind
from nrflab.core.errors import NrflabError

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


_KEYS = {"step_size": "step", "norm_option": "norm"}
"""Text keys whose field has another name (the rest are spelled as their field)."""


def _key(field_name: str) -> str:
    return _KEYS.get(field_name, field_name)


@dataclass(frozen=True)
class AttackSpec:
    """A serializable attack description; ``build(model)`` makes the attack.

    Which fields apply depends on the kind (its registration's ``options``): PGD's ``step_size``, ``steps``,
    ``random_start``, ``restarts`` (None: the kind's own, :attr:`Attack.default_restarts`; a value equal to it
    is stored as None, so equal attacks have equal specs), ``targeted``; AutoAttack's ``restarts`` (a custom
    version's APGD restarts; None: ``pyautoattack``'s), its ``norm_option`` (``norm=l2``: the norm where the
    kind lets a spec choose it; None is the kind's own), ``version`` (None: the kind's first, ``standard``),
    ``attacks`` (a custom version's attacks, in order) and ``seed`` (None: the seed ``build`` is given). A field
    set away from its default on a kind that does not take it is refused in one line.
    """

    kind: str = "pgd-l2"
    eps: float = 0.25
    step_size: float | None = None
    steps: int = 10
    random_start: bool = False
    restarts: int | None = None
    targeted: bool = False
    norm_option: Norm | None = None
    version: str | None = None
    attacks: tuple[str, ...] = ()
    seed: int | None = None
    #: The result key when two attacks of a list would share one (:func:`distinct_labels`); None: the label.
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        entry = attack_kind(self.kind)
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise NrflabError(f"eps must be a finite number >= 0, got {self.eps}")
        for name in ("steps", "restarts"):
            value = getattr(self, name)
            if name == "restarts" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise NrflabError(f"{name} must be an integer, got {value!r}")
        if entry.iterative and self.steps < 1:
            raise NrflabError(
                f"steps must be >= 1 for {self.kind}, got {self.steps} (use the attack 'none' for clean accuracy)"
            )
        if self.steps < 0:
            raise NrflabError(f"steps must be >= 0, got {self.steps}")
        if self.restarts is not None and self.restarts < 1:
            raise NrflabError(f"restarts must be >= 1, got {self.restarts}")
        if self.restarts == entry.attack.default_restarts:
            object.__setattr__(self, "restarts", None)
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise NrflabError(f"step size must be a finite number > 0, got {self.step_size}")
        if entry.perturbs and self.eps == 0:
            raise NrflabError(f"eps must be > 0 for {self.kind} (use the attack 'none' for clean accuracy)")
        self._check_options(entry)

    def _check_options(self, entry: AttackKind) -> None:
        """Refuse fields the kind does not take; check and normalize the kind-specific ones (norm, version,
        attacks, seed) so that equal attacks have equal specs."""
        if self.norm_option is not None and not entry.norms:
            raise NrflabError(f"the norm of {self.kind} is fixed by its name ({entry.norm}); it takes no norm=")
        for f in fields(self):
            if (
                f.name not in ("kind", "eps", "name")
                and f.name not in entry.options
                and getattr(self, f.name) != f.default
            ):
                taken = ", ".join(_key(n) for n in sorted(entry.options)) if entry.perturbs else "nothing"
                raise NrflabError(f"the attack {self.kind} takes no {_key(f.name)} (it takes {taken})")
        if self.norm_option is not None:
            if self.norm_option not in entry.norms:
                raise NrflabError(
                    f"unknown norm {self.norm_option!r} for {self.kind}; choose {' or '.join(entry.norms)}"
                )
            if self.norm_option == entry.norm:
                object.__setattr__(self, "norm_option", None)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise NrflabError(f"seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "attacks", tuple(self.attacks))
        self._check_choices(entry)

    def _check_choices(self, entry: AttackKind) -> None:
        """A version the kind has and attacks it knows; ``attacks`` make a ``custom`` version and only it."""
        versions, known = entry.choices_of("version"), entry.choices_of("attacks")
        if self.version is not None and versions and self.version not in versions:
            raise NrflabError(f"unknown version {self.version!r} of {self.kind}; choose {', '.join(versions)}")
        unknown = [a for a in self.attacks if known and a not in known]
        if unknown:
            raise NrflabError(f"unknown attack {unknown[0]!r} for {self.kind}; choose from {', '.join(known)}")
        if len(set(self.attacks)) != len(self.attacks):
            raise NrflabError(f"attacks of {self.kind} repeat a name: {'+'.join(self.attacks)}")
        if self.attacks and self.version is None:
            object.__setattr__(self, "version", "custom")
        if self.version == "custom" and not self.attacks:
            raise NrflabError(f"version=custom of {self.kind} needs attacks=NAME+NAME (from {', '.join(known)})")
        if self.attacks and self.version != "custom":
            raise NrflabError(f"the {self.version} version of {self.kind} fixes its attacks; use version=custom")
        if versions and self.version == versions[0]:
            object.__setattr__(self, "version", None)
        if versions and self.restarts is not None and self.version != "custom":
            raise NrflabError(
                f"the {self.version or versions[0]} version of {self.kind} fixes its restarts; restarts= needs "
                "attacks=NAME+NAME (a custom version)"
            )

    @property
    def entry(self) -> AttackKind:
        """The registered attack this spec names."""
        return attack_kind(self.kind)

    @property
    def norm(self) -> Norm:
        """The norm of the eps-ball: the spec's ``norm=`` where the kind takes one, else the kind's own."""
        return self.norm_option or self.entry.norm

    @property
    def label(self) -> str:
        """A short column-friendly name, e.g. ``pgd-l2_0.25`` or ``autoattack-l2-apgd-ce+apgd-t_0.5`` (its
        ``name`` when one was given to tell it from another attack of the same list)."""
        if self.name:
            return self.name
        if not self.entry.perturbs:
            return self.kind
        name = self.kind + (f"-{self.norm_option}" if self.norm_option else "")
        if self.attacks:
            name += "-" + "+".join(self.attacks)
        elif self.version:
            name += f"-{self.version}"
        return f"{name}_{self.eps:g}" + ("_t" if self.targeted else "")

    def build(self, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> Attack:
        """The attack this spec describes, on ``model`` (``kwargs``: loss_fn, mode, keep_buffers, accelerate, ...)."""
        return self.entry.attack.from_spec(self, model, seed=seed, **kwargs)

    def to_string(self) -> str:
        """The spec as text that :func:`parse_attack` reads back to an equal spec."""
        entry = self.entry
        if not entry.perturbs:
            return self.kind
        parts = [f"eps={self.eps!r}"]
        if "steps" in entry.options:
            parts.append(f"steps={self.steps}")
        if self.step_size is not None:
            parts.append(f"step={self.step_size!r}")
        if self.random_start:
            parts.append("random_start=1")
        if self.restarts is not None:
            parts.append(f"restarts={self.restarts}")
        if self.targeted:
            parts.append("targeted=1")
        if self.norm_option:
            parts.append(f"norm={self.norm_option}")
        if self.version:
            parts.append(f"version={self.version}")
        if self.attacks:
            parts.append(f"attacks={'+'.join(self.attacks)}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
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
    "norm": "norm_option",
    "version": "version",
    "attacks": "attacks",
    "seed": "seed",
}

Option = Union[float, int, bool, str, tuple[str, ...]]


def _option(key: str, value: str, text: str) -> Option:
    """One ``key=value`` of a spec, typed by the field it sets."""
    field_name = _SPEC_KEYS[key]
    if field_name in ("random_start", "targeted"):
        return value.lower() in ("1", "true", "yes", "on")
    if field_name in ("norm_option", "version"):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", value.strip()):
            raise NrflabError(f"bad {key} {value!r} in attack {text!r}")
        return value.strip().lower()
    if field_name == "attacks":
        return tuple(a.strip().lower() for a in value.split("+"))
    number = parse_number(value, what=f"in attack {text!r}")
    if field_name in ("steps", "restarts", "seed"):
        if not number.is_integer():
            raise NrflabError(f"{key} must be a whole number, got {value!r} in attack {text!r}")
        return int(number)
    return number


def parse_attack(text: str) -> AttackSpec:
    """Parse ``kind[:key=value,...]``, e.g. ``pgd-linf:eps=8/255,steps=20,step=2/255`` or
    ``autoattack:version=custom,attacks=apgd-ce+apgd-t,norm=l2,eps=0.5,seed=0``."""
    text = text.strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    entry = attack_kind(kind)
    values: dict[str, Option] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in _SPEC_KEYS:
            raise NrflabError(f"bad attack option {item!r} in {text!r}; use keys {', '.join(sorted(_SPEC_KEYS))}")
        if key == "norm" and entry.perturbs and not entry.norms:
            raise NrflabError(
                f"the norm of {kind} is fixed by its name ({entry.norm}); it takes no norm=, got {text!r}"
            )
        if entry.perturbs and _SPEC_KEYS[key] not in entry.options and key != "eps":
            taken = ", ".join(_key(n) for n in sorted(entry.options))
            raise NrflabError(f"the attack {kind} takes no {key} (it takes {taken}), got {text!r}")
        values[_SPEC_KEYS[key]] = _option(key, value, text)
    if values and not entry.perturbs:
        raise NrflabError(f"the attack {kind!r} takes no options, got {text!r}")
    return AttackSpec(kind=kind, **values)  # type: ignore[arg-type]  # each value typed by _option


_NUMBER = re.compile(r"[0-9eE.+\-]+(/[0-9eE.+\-]+)?")


def parse_number(value: str, *, what: str) -> float:
    """A float written as ``0.25``, ``1e-3`` or a fraction ``8/255``: the one number syntax of attack specs,
    of every numeric command-line flag (``--eps 8/255``) and of ``--mean``/``--std``. ``what`` names where
    the text came from in the one-line error (``--eps``, ``in attack 'pgd-l2:eps=x'``)."""
    text = str(value).strip()
    if text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        return float(text)  # a number all the same: what takes it says that it must be finite, in its own words
    if not _NUMBER.fullmatch(text):
        raise NrflabError(f"bad number {value!r} {what} (a number such as 0.25, 1e-3 or 8/255)")
    try:
        num, _, den = text.partition("/")
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise NrflabError(f"bad number {value!r} {what} (a number such as 0.25, 1e-3 or 8/255)") from None


def default_step_size(*, eps: float, steps: int) -> float:
    """The step of an iterative attack when none is given: ``2.5 * eps / steps`` (Madry et al.), so that
    ``steps`` steps can cross the ball and back; the rule of every command (evaluate, transfer, build-dataset)."""
    return 2.5 * eps / max(steps, 1)


def attack_from_parts(
    text: str,
    *,
    eps: float | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    random_start: bool = False,
    restarts: int | None = None,
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
    given = {
        "steps": steps,
        "step_size": step_size,
        "random_start": random_start,
        "restarts": restarts not in (None, 1),
        "targeted": targeted,
    }
    for name, value in given.items():
        if value not in (None, False) and name not in spec.entry.options:
            raise NrflabError(f"the attack {spec.kind} takes no {_key(name)} (write its settings as {text}:key=value)")
    return AttackSpec(
        kind=spec.kind,
        eps=eps,
        steps=steps if steps is not None else 10,
        step_size=step_size,
        random_start=random_start,
        restarts=restarts,
        targeted=targeted,
    )


def distinct_labels(specs: list[AttackSpec]) -> list[AttackSpec]:
    """The specs with one result key each: where several share a label (PGD-10 and PGD-100 at one eps), each
    of them is named by what sets it apart (``pgd-l2_1_steps100``, ``_restarts3``, ``_random-start``,
    ``_step0.1``), so no result replaces another. Equal specs given twice are kept once."""
    unique = list(dict.fromkeys(specs))
    by_label: dict[str, list[AttackSpec]] = {}
    for spec in unique:
        by_label.setdefault(spec.label, []).append(spec)
    out = []
    for spec in unique:
        group = by_label[spec.label]
        if len(group) == 1:
            out.append(spec)
            continue
        differs = [
            f.name
            for f in fields(spec)
            if f.name not in ("kind", "eps", "name") and len({getattr(g, f.name) for g in group}) > 1
        ]
        defaults = {f.name: f.default for f in fields(spec)}
        shown = [f for f in differs if f == "steps" or getattr(spec, f) != defaults[f]]
        suffix = "".join(_suffix(f, getattr(spec, f)) for f in shown or differs) or f"_{group.index(spec) + 1}"
        out.append(replace(spec, name=spec.label + suffix))
    return out


def _suffix(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"_{'' if value else 'no-'}{_key(name).replace('_', '-')}"
    return f"_{_key(name)}{value if not isinstance(value, tuple) else '+'.join(value)}"

"""What a feature dataset is: its kind, the paper's attack per kind, and the typed build settings.

Every field of :class:`BuildSettings` determines the built images, so a resumed build must match it
exactly (its digest is stored in every shard).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from typing import Any, Optional, cast

from nrflab.attacks import AttackSpec, default_step_size
from nrflab.core.errors import NrflabError
from nrflab.core.records import record
from nrflab.core.validation import check_seed

BUILD_KINDS = ("d_r", "d_nr", "d_rand", "d_det", "conflicting")
INVERSION_KINDS = ("d_r", "d_nr")
LABEL_POLICIES = ("target", "reference", "prediction")
DTYPES = ("uint8", "float16", "float32")


def _build_attack(*, steps: int, eps: float, step_size: float) -> AttackSpec:
    """Every build's attack: targeted PGD-L2 without random start (toward a class, or descending the distance
    to a reference representation for the inversions)."""
    return AttackSpec(kind="pgd-l2", eps=eps, steps=steps, step_size=step_size, targeted=True)


#: The paper's / Ilyas et al.'s settings (CIFAR-10 scale).
KIND_DEFAULTS: dict[str, AttackSpec] = {
    "d_r": _build_attack(steps=1000, eps=1000.0, step_size=0.1),
    "d_nr": _build_attack(steps=1000, eps=1000.0, step_size=0.1),
    "d_rand": _build_attack(steps=100, eps=0.5, step_size=0.1),
    "d_det": _build_attack(steps=100, eps=0.5, step_size=0.1),
    "conflicting": _build_attack(steps=100, eps=0.5, step_size=0.1),
}

#: A radius at least this large is "unbounded" (the inversions' 1000): it gives the step no scale to follow.
UNBOUNDED_EPS = 1000.0


def default_build_step(kind: str, *, eps: float, steps: int) -> float:
    """The step of a build whose step size is not given: the paper's step for the paper's radius and steps,
    else evaluate's rule (:func:`nrflab.attacks.default_step_size`, ``2.5 * eps / steps``), so a smaller
    ``--eps`` or more ``--steps`` does not keep a step made for other ones. An unbounded radius
    (>= :data:`UNBOUNDED_EPS`, the inversions) keeps the paper's step: there is no ball to cross."""
    paper = KIND_DEFAULTS[kind]
    if (eps == paper.eps and steps == paper.steps) or eps >= UNBOUNDED_EPS:
        return cast(float, paper.step_size)
    return default_step_size(eps=eps, steps=steps)


KIND_DESCRIPTIONS = {
    "d_r": "robust features: representation inversion on an adversarially trained source",
    "d_nr": "non-robust features: representation inversion on a standard source",
    "d_rand": "non-robust features only: targeted PGD-L2 toward a uniformly random class, labelled with it",
    "d_det": "non-robust features only: targeted PGD-L2 toward (y + 1) mod C, labelled with it",
    "conflicting": "robust features of y (a D_R set) plus non-robust features of (y + 1) mod C, labelled y + 1",
}

LABEL_POLICY_DOC = {
    "target": "the class the construction aims at: t for the targeted builders, the reference image's label "
    "for D_R/D_NR (Ilyas et al.)",
    "reference": "the original label of the image the sample is built from (y; for D_R/D_NR the same as target)",
    "prediction": "the source model's prediction on the stored image (the official code stores the source "
    "output for D_R/D_NR and trains on its argmax)",
}


@record
class BuildSettings:
    """Everything that determines a built dataset's content (compared when a build is resumed). A computed
    record: what users type are :func:`make_settings`'s keywords (the ``build-dataset`` flags), which resolve
    the kind's defaults and the attack into it."""

    kind: str
    attack: AttackSpec
    seed: int = 0
    label_policy: str = "target"
    shard_size: int = 1000
    dtype: str = "uint8"
    fake_relu: bool = False
    layer: Optional[str] = None
    limit: Optional[int] = None

    def to_dict(self) -> dict[str, object]:
        """The settings as a card stores them and the digest hashes them: the attack as its steps, eps and step
        size (the layout of every card, so builds made before :class:`AttackSpec` resume and compare)."""
        rest = {k: v for k, v in asdict(self).items() if k not in ("kind", "attack")}
        a = self.attack
        return {"kind": self.kind, "steps": a.steps, "eps": a.eps, "step_size": a.step_size, **rest}

    def with_(self, **changes: Any) -> BuildSettings:
        """A validated copy with some fields changed."""
        unknown = set(changes) - set(self.to_dict())
        if unknown:
            raise NrflabError(f"unknown build setting(s) {', '.join(sorted(unknown))}")
        return make_settings(**{**self.to_dict(), **changes})

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def make_settings(
    kind: str,
    *,
    steps: int | None = None,
    eps: float | None = None,
    step_size: float | None = None,
    seed: int = 0,
    label_policy: str = "target",
    shard_size: int = 1000,
    dtype: str = "uint8",
    fake_relu: bool = False,
    layer: str | None = None,
    limit: int | None = None,
) -> BuildSettings:
    """Validated settings: the kind's paper defaults for whatever is not given; the step, when not given,
    follows :func:`default_build_step` (the resolved step is stored in the card, so a resumed build keeps it)."""
    kind = str(kind).lower()
    if kind not in BUILD_KINDS:
        raise NrflabError(f"unknown dataset kind {kind!r}; choose one of {', '.join(BUILD_KINDS)}")
    d = KIND_DEFAULTS[kind]
    # Typed ``object``: callers (YAML, CLI) may pass floats such as ``3.0`` despite the annotations.
    counts: tuple[tuple[str, object], ...] = (("steps", steps), ("shard size", shard_size), ("limit", limit))
    for name, value in counts:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            if not (isinstance(value, float) and value.is_integer()):
                raise NrflabError(f"{name} must be an integer, got {value!r}")
    n_steps, radius = int(d.steps if steps is None else steps), float(d.eps if eps is None else eps)
    seed = check_seed(seed)
    if n_steps < 1:
        raise NrflabError(f"steps must be >= 1, got {n_steps}")
    if not (radius > 0 and math.isfinite(radius)):
        raise NrflabError(f"eps must be a finite number > 0, got {radius}")
    step = default_build_step(kind, eps=radius, steps=n_steps) if step_size is None else float(step_size)
    if not (step > 0 and math.isfinite(step)):
        raise NrflabError(f"step size must be a finite number > 0, got {step}")
    s = BuildSettings(
        kind=kind,
        attack=_build_attack(steps=n_steps, eps=radius, step_size=step),
        seed=seed,
        label_policy=str(label_policy).lower(),
        shard_size=int(shard_size),
        dtype=str(dtype).lower(),
        fake_relu=bool(fake_relu),
        layer=layer,
        limit=None if limit is None else int(limit),
    )
    if s.label_policy not in LABEL_POLICIES:
        raise NrflabError(f"unknown label policy {label_policy!r}; choose one of {', '.join(LABEL_POLICIES)}")
    if s.dtype not in DTYPES:
        raise NrflabError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if s.shard_size < 1:
        raise NrflabError(f"shard size must be >= 1, got {s.shard_size}")
    if s.limit is not None and s.limit < 1:
        raise NrflabError(f"limit must be >= 1, got {s.limit}")
    if kind not in INVERSION_KINDS and (s.fake_relu or s.layer):
        raise NrflabError(f"fake_relu and layer apply to the inversions (d_r, d_nr), not {kind}")
    if s.fake_relu and s.layer:
        raise NrflabError("fake_relu needs the model's own .features; it cannot be combined with layer")
    return s


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

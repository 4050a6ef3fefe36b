"""Gradient-masking sanity checks for robustness numbers (the practice of AutoAttack and RobustBench).

A robust accuracy measured with a gradient attack can overstate robustness when the model hides its
gradients (non-differentiable steps such as rounding, saturating outputs, randomness) or when the attack
is too weak. Five cheap checks, each a typed :class:`SanityCheck` with pass/flag and its numbers:

* **eps monotone** -- robust accuracy must not rise with the radius (clean, then eps x 0.5, 1, 2);
* **unbounded** -- with an effectively unbounded radius (Linf 1, L2 the diagonal of the image cube) and
  enough steps, a gradient attack must reach ~0 % accuracy;
* **restarts** -- a random-start attack with restarts must not be much stronger than the plain one (if it
  is, the plain number overstates robustness);
* **transfer** -- adversarial examples crafted on a surrogate (e.g. the model's no-BN twin) must not fool
  the model more than its own white-box attack does;
* **stronger attack** -- AutoAttack (APGD-CE + APGD-DLR, the same norm and eps) must not lower robust accuracy
  by more than the tolerance: if it does, the number comes from too weak an attack (not masking, but just as
  untrustworthy).

A flag does not prove masking; it says this number cannot be trusted as it stands. Thresholds allow one
image of noise (two for restarts and transfer, or 5 percentage points, whichever is larger).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import cast

import torch
from torch import nn
from typing_extensions import TypedDict, Unpack

from nrflab.attacks import PGD, Attack, AttackSpec, Norm, default_step_size
from nrflab.core.columns import metric_label, robust_key
from nrflab.core.errors import NrflabError
from nrflab.core.fmt import eps as fmt_eps
from nrflab.core.modules import model_device
from nrflab.measure.predict import predict

CheckStatus = str  # "pass" | "flag" | "skip"


@dataclass(frozen=True)
class SanityCheck:
    """One check: its name, the question it asks, pass (True), flag (False) or skipped (None), and numbers."""

    name: str
    question: str
    passed: bool | None
    summary: str
    numbers: Mapping[str, float]

    @property
    def status(self) -> CheckStatus:
        return "skip" if self.passed is None else ("pass" if self.passed else "flag")

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "question": self.question,
            "status": self.status,
            "summary": self.summary,
            "numbers": dict(self.numbers),
        }


@dataclass(frozen=True)
class SanityReport:
    """The checks of one robustness number (one attack) on a subset of images."""

    attack: str
    spec: str
    num_samples: int
    checks: tuple[SanityCheck, ...]

    @property
    def flags(self) -> list[SanityCheck]:
        return [c for c in self.checks if c.passed is False]

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict[str, object]:
        return {
            "attack": self.attack,
            "spec": self.spec,
            "num_samples": self.num_samples,
            "flagged": self.flagged,
            "checks": [c.to_dict() for c in self.checks],
        }


class CheckOptions(TypedDict, total=False):
    """The keywords every check takes alike: ``seed`` of its attacks and ``batch_size`` (defaults in
    :class:`_Attacking`)."""

    seed: int
    batch_size: int


@dataclass(frozen=True)
class _Attacking:
    """How a check runs its attacks: :class:`CheckOptions` with its defaults filled in."""

    seed: int = 0
    batch_size: int = 256


def _accuracy_under(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    make_attack: Callable[[nn.Module], Attack | None],
    batch_size: int,
    evaluate_on: nn.Module | None = None,
) -> float:
    """Accuracy of ``evaluate_on`` (default: ``model``) on examples crafted on ``model``."""
    target = evaluate_on if evaluate_on is not None else model
    device = model_device(model)
    attack = make_attack(model)
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        adv = attack(xb, yb) if attack is not None else xb
        correct += int((predict(target, adv, batch_size=batch_size) == yb).sum())
    return correct / max(1, x.shape[0])


def _one_image(n: int) -> float:
    return 1.0 / max(1, n)


def _slack(tolerance: float, n: int) -> float:
    """How far a stronger attack may beat the checked one: ``tolerance`` or two images of ``n``."""
    return max(tolerance, 2 * _one_image(n)) + 1e-9


def _judged(name: str, question: str, text: str, numbers: Mapping[str, float], flag: str | None) -> SanityCheck:
    """A check that ran: passed with ``text``, or flagged with ``flag`` (the text and what it means)."""
    return SanityCheck(name, question, flag is None, text if flag is None else flag, numbers)


def _plain_or(
    plain_accuracy: float | None,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: AttackSpec,
    run: _Attacking,
) -> float:
    """``plain_accuracy`` if already measured, else the accuracy under ``spec`` on these images."""
    if plain_accuracy is not None:
        return plain_accuracy
    return _accuracy_under(model, x, y, lambda m: spec.build(m, seed=run.seed), run.batch_size)


def check_eps_monotone(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    spec: AttackSpec,
    factors: Sequence[float] = (0.5, 1.0, 2.0),
    **options: Unpack[CheckOptions],
) -> SanityCheck:
    """Robust accuracy at eps 0 (clean) and ``spec.eps * f`` for each factor must not rise (one image of slack)."""
    question = "does robust accuracy fall (weakly) as eps grows?"
    if spec.kind == "none":
        return SanityCheck("eps monotone", question, None, "not an attack", {})
    run = _Attacking(**options)
    n = int(y.shape[0])
    eps_values = [0.0] + [spec.eps * f for f in sorted(factors)]
    accs = []
    for e in eps_values:
        if e == 0.0:
            accs.append(_accuracy_under(model, x, y, lambda m: None, run.batch_size))
        else:
            scaled = replace(spec, eps=e, step_size=None if spec.step_size is None else spec.step_size * e / spec.eps)
            accs.append(_accuracy_under(model, x, y, partial(scaled.build, seed=run.seed), run.batch_size))
    slack = _one_image(n) + 1e-9
    rises = [(eps_values[i], eps_values[i + 1]) for i in range(len(accs) - 1) if accs[i + 1] > accs[i] + slack]
    chain = " >= ".join(f"{100 * a:.1f} % ({fmt_eps(e)})" for e, a in zip(eps_values, accs))
    numbers = {f"acc@eps={e:g}": a for e, a in zip(eps_values, accs)}
    flag = None
    if rises:
        lo, hi = rises[0]
        flag = f"accuracy rises from eps {fmt_eps(lo)} to {fmt_eps(hi)}: {chain} -- the attack is unreliable here"
    return _judged("eps monotone", question, chain, numbers, flag)


def unbounded_eps(norm: str, x: torch.Tensor) -> float:
    """A radius that covers the whole image cube: 1 (Linf) or its diagonal sqrt(C*H*W) (L2)."""
    return 1.0 if norm == "linf" else math.sqrt(float(x[0].numel()))


def check_unbounded(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    steps: int = 20,
    threshold: float = 0.02,
    **options: Unpack[CheckOptions],
) -> SanityCheck:
    """An (effectively) unbounded PGD with ``steps`` steps must leave at most ``threshold`` (or one image) correct."""
    question = "does an unbounded attack reach ~0 % accuracy?"
    run = _Attacking(**options)
    n = int(y.shape[0])
    eps = unbounded_eps(norm, x)
    step = default_step_size(eps=eps, steps=steps)
    acc = _accuracy_under(
        model,
        x,
        y,
        lambda m: PGD(m, norm=cast(Norm, norm), eps=eps, step_size=step, steps=steps, seed=run.seed),
        run.batch_size,
    )
    limit = max(threshold, _one_image(n)) + 1e-9
    numbers = {"accuracy": acc, "eps": eps, "steps": float(steps)}
    text = f"{100 * acc:.1f} % still correct after {steps} PGD-{norm} steps with eps {fmt_eps(eps)}"
    flag = f"{text} (expected ~0 %): gradients are masked or the attack is too weak" if acc > limit else None
    return _judged("unbounded", question, text, numbers, flag)


def check_restarts(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    spec: AttackSpec,
    restarts: int = 2,
    tolerance: float = 0.05,
    plain_accuracy: float | None = None,
    **options: Unpack[CheckOptions],
) -> SanityCheck:
    """The attack with random start and ``restarts`` restarts must not beat the plain one by more than
    ``tolerance`` (or two images). ``plain_accuracy``: the plain attack's accuracy if already measured
    (same images, same seed)."""
    question = "is a random-start/restart attack not much stronger than the plain one?"
    if not spec.kind.startswith("pgd"):
        return SanityCheck("restarts", question, None, f"not applicable to the single-step attack {spec.kind}", {})
    run = _Attacking(**options)
    n = int(y.shape[0])
    stronger = replace(spec, random_start=True, restarts=max(restarts, 2 * (spec.restarts or 1)))
    plain = _plain_or(plain_accuracy, model, x, y, spec, run)
    strong = _accuracy_under(model, x, y, lambda m: stronger.build(m, seed=run.seed + 1), run.batch_size)
    numbers = {"plain": plain, "restarts": strong, "num_restarts": float(stronger.restarts or 1)}
    gap = plain - strong
    text = f"{100 * plain:.1f} % plain vs {100 * strong:.1f} % with random start x{stronger.restarts}"
    flag = (
        f"{text}: the plain attack overstates robustness by {100 * gap:.1f} pp" if gap > _slack(tolerance, n) else None
    )
    return _judged("restarts", question, text, numbers, flag)


def check_transfer(
    model: nn.Module,
    surrogate: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    spec: AttackSpec,
    tolerance: float = 0.05,
    surrogate_name: str = "surrogate",
    **options: Unpack[CheckOptions],
) -> SanityCheck:
    """Examples crafted on ``surrogate`` must not fool ``model`` more than its own white-box attack
    (``tolerance`` or two images of slack). Skipped without a surrogate."""
    question = "is transfer from a surrogate not stronger than the white-box attack?"
    if surrogate is None:
        return SanityCheck(
            "transfer", question, None, "no surrogate given (e.g. the model's no-BN twin: --surrogate REF)", {}
        )
    if spec.kind == "none":
        return SanityCheck("transfer", question, None, "not an attack", {})
    run = _Attacking(**options)
    n = int(y.shape[0])
    whitebox = _accuracy_under(model, x, y, lambda m: spec.build(m, seed=run.seed), run.batch_size)
    transferred = _accuracy_under(
        surrogate, x, y, lambda m: spec.build(m, seed=run.seed), run.batch_size, evaluate_on=model
    )
    numbers = {"whitebox": whitebox, "transfer": transferred}
    text = f"{100 * whitebox:.1f} % white-box vs {100 * transferred:.1f} % under transfer from {surrogate_name}"
    flag = (
        f"{text}: a black-box attack beats the white-box one, so gradients mislead it"
        if whitebox - transferred > _slack(tolerance, n)
        else None
    )
    return _judged("transfer", question, text, numbers, flag)


#: The stronger attack of the sanity block: AutoAttack's APGD-CE and APGD-DLR at the checked attack's norm and eps.
STRONGER = "autoattack:version=custom,attacks=apgd-ce+apgd-dlr,norm={norm},eps={eps!r}"


def check_stronger(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    spec: AttackSpec,
    tolerance: float = 0.05,
    plain_accuracy: float | None = None,
    **options: Unpack[CheckOptions],
) -> SanityCheck:
    """AutoAttack (APGD-CE + APGD-DLR) at the same norm and eps must not beat ``spec`` by more than
    ``tolerance`` (or two images): otherwise ``spec`` is too weak to report. ``plain_accuracy``: the
    attack's accuracy if already measured on these images."""
    from nrflab.attacks import parse_attack

    question = "does a stronger attack (AutoAttack APGD-CE + APGD-DLR) not lower robust accuracy much?"
    if spec.kind == "autoattack":
        return SanityCheck("stronger attack", question, None, "the attack is AutoAttack already", {})
    strong_spec = parse_attack(STRONGER.format(norm=spec.norm, eps=spec.eps))
    run = _Attacking(**options)
    n = int(y.shape[0])
    plain = _plain_or(plain_accuracy, model, x, y, spec, run)
    strong = _accuracy_under(model, x, y, lambda m: strong_spec.build(m, seed=run.seed), run.batch_size)
    numbers = {"attack": plain, "autoattack": strong}
    text = f"{100 * plain:.1f} % under the attack vs {100 * strong:.1f} % under AutoAttack (APGD-CE + APGD-DLR)"
    gap = plain - strong
    flag = (
        f"{text}: the attack is too weak and overstates robustness by {100 * gap:.1f} pp"
        if gap > _slack(tolerance, n)
        else None
    )
    return _judged("stronger attack", question, text, numbers, flag)


def sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    spec: AttackSpec,
    surrogate: nn.Module | None = None,
    surrogate_name: str = "surrogate",
    factors: Sequence[float] = (0.5, 1.0, 2.0),
    unbounded_steps: int = 20,
    restarts: int = 2,
    **options: Unpack[CheckOptions],
) -> SanityReport:
    """All five checks for one attack on the images ``x, y`` (keep them few: these are extra attacks).

    Cost with the defaults: the attack at eps x 0.5, 1 and 2, one unbounded PGD of ``unbounded_steps``
    steps, ``restarts`` random-start runs, AutoAttack's APGD-CE and APGD-DLR and, with a surrogate, one more
    attack -- about 7 attacks of ``spec.steps`` steps plus AutoAttack on the subset. The model is not changed (every attack freezes and restores it).
    """
    if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise NrflabError(f"sanity checks need images and as many labels, got {x.shape[0]} and {y.shape[0]}")
    if spec.kind == "none":
        checks: tuple[SanityCheck, ...] = ()
    else:
        monotone = check_eps_monotone(model, x, y, spec=spec, factors=factors, **options)
        plain = monotone.numbers.get(f"acc@eps={spec.eps:g}") if 1.0 in factors else None
        checks = (
            monotone,
            check_unbounded(model, x, y, norm=spec.norm, steps=unbounded_steps, **options),
            check_restarts(model, x, y, spec=spec, restarts=restarts, plain_accuracy=plain, **options),
            check_transfer(model, surrogate, x, y, spec=spec, surrogate_name=surrogate_name, **options),
            check_stronger(model, x, y, spec=spec, plain_accuracy=plain, **options),
        )
    return SanityReport(attack=spec.label, spec=spec.to_string(), num_samples=int(y.shape[0]), checks=checks)


def format_sanity(reports: Sequence[SanityReport]) -> list[str]:
    """The "sanity" block: one header per robustness number, one line per check, and a verdict line."""
    lines = []
    for r in reports:
        if not r.checks:
            continue
        metric = metric_label(robust_key(r.attack))
        lines.append(f"sanity (gradient masking) of {metric} on {r.num_samples} images:")
        for c in r.checks:
            lines.append(f"  {c.status.upper():<5} {c.name}: {c.summary}")
        if r.flagged:
            lines.append(
                f"  => {metric} cannot be trusted as it stands "
                f"({len(r.flags)} flag{'s' if len(r.flags) > 1 else ''}: {', '.join(c.name for c in r.flags)})"
            )
        else:
            lines.append(f"  => no sign of gradient masking for {metric}")
    return lines


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

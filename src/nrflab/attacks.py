"""Attacks: ``atk = PGD(model, norm="l2", eps=0.5)`` then ``x_adv = atk(x, y)``.

A shared base class enforces the invariants once, for every attack: the result lies in the eps-ball
around ``x`` and in [0,1]; ``x`` is not modified; the model's parameters, buffers (BatchNorm running
statistics) and train/eval mode are the same afterwards; no parameter gradients are computed or left.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.core import accel
from nrflab.core.errors import NrflabError
from nrflab.core.modules import ModelMode, frozen_model

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss_fn(model, x, y) -> per-sample loss (shape [B])``; untargeted attacks ascend it, targeted
attacks descend it. ``y`` is whatever the loss needs (labels, target representations, ...)."""

Norm = Literal["linf", "l2"]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of the model's logits: the default attack loss."""
    return F.cross_entropy(model(x), y, reduction="none")


def per_sample_noise(
    x: torch.Tensor, seed: int, kind: Literal["normal", "uniform"] = "normal", salt: int = 0
) -> torch.Tensor:
    """Noise shaped like ``x``, drawn per sample from a generator keyed by (seed, salt, sample content).

    Keying on content rather than batch position makes random starts and LIGS noise independent of
    batch size and order: the same image always gets the same draw for a given seed.
    """
    flat = x.detach().to("cpu", torch.float32).contiguous().reshape(x.shape[0], -1).numpy()
    out = torch.empty(x.shape, dtype=torch.float32)
    gen = torch.Generator()
    for i in range(x.shape[0]):
        digest = hashlib.blake2b(flat[i].tobytes(), digest_size=8, key=f"{seed}:{salt}".encode()).digest()
        gen.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
        if kind == "normal":
            out[i] = torch.randn(x.shape[1:], generator=gen)
        else:
            out[i] = torch.rand(x.shape[1:], generator=gen)
    return out.to(device=x.device, dtype=x.dtype)


def project(delta: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """Project perturbations onto the eps-ball of the given norm (per sample)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1)
    n = cast(torch.Tensor, flat.norm(p=2, dim=1)).clamp_min(1e-12)  # Tensor.norm is typed Any
    factor = (eps / n).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.ndim - 1)))


def _normalized_step(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    n = cast(torch.Tensor, grad.flatten(1).norm(p=2, dim=1)).clamp_min(1e-12)
    return grad / n.view(-1, *([1] * (grad.ndim - 1)))


def enforce_ball(x: torch.Tensor, x_adv: torch.Tensor, *, norm: Norm, eps: float) -> torch.Tensor:
    """``x_adv`` moved into the eps-ball around ``x`` (projection) and into [0,1] (clamp)."""
    if eps == math.inf:
        return x_adv.clamp(0.0, 1.0)
    delta = project(x_adv - x, norm, eps)
    return (x + delta).clamp(0.0, 1.0)


def pgd_update(
    x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, *, norm: Norm, step_size: float, eps: float
) -> torch.Tensor:
    """One PGD update: a normalized step along ``grad``, then projection onto the eps-ball and [0,1].

    Written as one function so that it can be compiled into one fused kernel (a dozen launches of small
    element-wise and reduction kernels otherwise weigh as much as a small model's own pass). Eagerly it
    is exactly the unfused sequence.
    """
    x_adv = x_adv + step_size * _normalized_step(grad, norm)
    return enforce_ball(x, x_adv, norm=norm, eps=eps)


_COMPILED_PGD_UPDATE = accel.CompiledFunction(pgd_update)
""":func:`pgd_update` compiled (on its first call); the eager function if compilation fails."""


def check_images(x: torch.Tensor) -> None:
    """Refuse anything but floating-point images in [0,1] (NaN included), in one clear line."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise NrflabError("x must be a floating-point tensor of images in [0,1]")
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if not (lo >= 0.0 and hi <= 1.0):  # written so that NaN fails too
            raise NrflabError(
                f"inputs must lie in [0,1] (got [{lo:.3g}, {hi:.3g}]); put normalization inside the model"
            )


def _check_shapes(x: torch.Tensor, y: torch.Tensor) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise NrflabError("x must be a floating-point tensor of images in [0,1]")
    if torch.is_tensor(y) and y.shape[0] != x.shape[0]:
        raise NrflabError(f"{x.shape[0]} inputs but {y.shape[0]} labels")


class Attack(ABC):
    """Base class: validates inputs, freezes the model, enforces the eps-ball and [0,1] on the result.

    Subclasses implement ``_perturb(x, y) -> x_adv``; they may assume a frozen model in ``mode``.
    """

    name: str = "attack"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        loss_fn: LossFn | None = None,
        mode: ModelMode = "eval",
        keep_buffers: bool = True,
        seed: int = 0,
    ):
        if not isinstance(model, nn.Module):
            raise NrflabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if norm not in ("linf", "l2"):
            raise NrflabError(f"unknown norm {norm!r}; choose linf or l2")
        if not (eps >= 0 and math.isfinite(eps) or eps == math.inf):
            raise NrflabError(f"eps must be >= 0, got {eps}")
        if mode not in ("eval", "train"):
            raise NrflabError(f"mode must be 'eval' or 'train', got {mode!r}")
        self.model = model
        self.eps = float(eps)
        self.norm: Norm = norm
        self.targeted = bool(targeted)
        self.loss_fn: LossFn = loss_fn or cross_entropy_loss
        self.custom_loss = loss_fn is not None
        self.mode: ModelMode = mode
        self.keep_buffers = keep_buffers
        self.seed = int(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for ``x``; ``y`` are true labels (untargeted) or targets (targeted)."""
        return self.apply(x, y)

    def apply(self, x: torch.Tensor, y: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:
        """The same as calling the attack. ``check_inputs=False`` skips the check that ``x`` lies in
        [0,1] (its one host-device synchronization), for callers that checked their images once with
        :func:`check_images` (training and evaluation loops); every other invariant is still enforced."""
        if check_inputs:
            self._check_inputs(x, y)
        else:
            _check_shapes(x, y)
        x = x.detach()
        with frozen_model(self.model, self.mode, self.keep_buffers):
            x_adv = self._perturb(x.clone(), y.detach() if torch.is_tensor(y) else y)
        return self._enforce(x, x_adv.detach())

    def _check_inputs(self, x: torch.Tensor, y: torch.Tensor) -> None:
        check_images(x)
        _check_shapes(x, y)

    def _enforce(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """The invariant every attack guarantees: inside the eps-ball around x and inside [0,1]."""
        return enforce_ball(x, x_adv, norm=self.norm, eps=self.eps)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample value the attack maximizes (the loss, negated for targeted attacks)."""
        loss = self.loss_fn(self.model, x, y)
        return -loss if self.targeted else loss

    def input_gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed objective with respect to ``x`` only, and the per-sample objective."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            obj = self.objective(x, y)
            (grad,) = torch.autograd.grad(obj.sum(), x)
        return grad, obj.detach()

    @abstractmethod
    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm={self.norm}, eps={self.eps:g}, targeted={self.targeted})"


class PGD(Attack):
    """Projected gradient descent (Madry et al.), L2 or Linf, as the paper's code runs it.

    Each step moves by ``step_size`` along sign(grad) (Linf) or grad/||grad||_2 (L2), projects onto the
    eps-ball and clamps to [0,1]. The last iterate is returned, as in the official code; with
    ``restarts > 1`` each restart (from a fresh random start) competes per sample and the worst case
    wins: misclassified (or on target) first, then the highest loss.

    Speed without other results: ``accelerate`` (default: on for CUDA inputs, off on CPU) runs the
    per-step update (step, projection, clamp) as one compiled kernel; ``cuda_graphs`` (default: with
    ``accelerate``, for eval-mode attacks with the built-in loss; ``True`` also allows a custom loss
    whose only inputs are ``x`` and ``y``) captures one whole step -- forward, input gradient, update --
    as a CUDA graph per input shape and replays it, so a small model is not bound by kernel launches.
    The graph replays the eager kernels (the same examples). The compiled update is bit-exact for Linf
    (a step of +-step_size is exact however it is fused); for L2 it sums the norm in another order, so
    one step differs from the eager one in the last bit (<= 1e-6), and over many steps that difference
    feeds back through the model's gradients (~1e-7 per pixel after 10 steps of a small CNN, ~3e-5 for
    ResNet-18, measured on a CPU: the size of the difference between two GPUs' own kernels);
    ``accelerate=False`` gives the eager examples exactly (``tests/test_accel.py``). A graph
    replays kernels only: the model's forward must be a function of its input and its own tensors
    (Python-side state and forward hooks take effect when the graph is captured, not when it is
    replayed); a graph is captured again when the model's parameters or buffers are reallocated.
    ``cuda_graphs=False`` turns graphs off for models that need Python at every call.
    """

    name = "pgd"
    _MAX_GRAPHS = 4

    def __init__(
        self,
        model: nn.Module,
        *,
        norm: Norm = "linf",
        eps: float = 8 / 255,
        step_size: float | None = None,
        steps: int = 10,
        random_start: bool = False,
        restarts: int = 1,
        targeted: bool = False,
        loss_fn: LossFn | None = None,
        mode: ModelMode = "eval",
        keep_buffers: bool = True,
        seed: int = 0,
        accelerate: bool | None = None,
        cuda_graphs: bool | None = None,
    ):
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            targeted=targeted,
            loss_fn=loss_fn,
            mode=mode,
            keep_buffers=keep_buffers,
            seed=seed,
        )
        if isinstance(steps, bool) or int(steps) != steps:
            raise NrflabError(f"steps must be an integer, got {steps}")
        if isinstance(restarts, bool) or int(restarts) != restarts:
            raise NrflabError(f"restarts must be an integer, got {restarts}")
        if int(steps) < 0:
            raise NrflabError(f"steps must be >= 0, got {steps}")
        if int(restarts) < 1:
            raise NrflabError(f"restarts must be >= 1, got {restarts}")
        if step_size is None:
            step_size = 2.5 * self.eps / max(int(steps), 1)
        if not (step_size >= 0 and math.isfinite(step_size)):
            raise NrflabError(f"step_size must be a finite number >= 0, got {step_size}")
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.random_start = bool(random_start)
        self.restarts = int(restarts)
        if accelerate not in (None, True, False) or cuda_graphs not in (None, True, False):
            raise NrflabError("accelerate and cuda_graphs must be True, False or None (the device's default)")
        self.accelerate = accelerate
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[object, ...], _GraphedPGD] = {}
        self._graphs_failed = False

    def _random_start(self, x: torch.Tensor, restart: int) -> torch.Tensor:
        if self.norm == "linf":
            delta = (per_sample_noise(x, self.seed, "uniform", salt=restart) * 2 - 1) * self.eps
        else:
            # Uniform in the L2 ball: a Gaussian direction, radius eps * u^(1/d).
            direction = _normalized_step(per_sample_noise(x, self.seed, "normal", salt=restart), "l2")
            u = per_sample_noise(x, self.seed, "uniform", salt=10_000 + restart).flatten(1)[:, :1]
            radius = u ** (1.0 / x[0].numel()) * self.eps
            delta = direction * radius.view(-1, *([1] * (x.ndim - 1)))
        return (x + delta).clamp(0.0, 1.0)

    def _accelerated(self, x: torch.Tensor) -> bool:
        return accel.default_accelerate(x.device) if self.accelerate is None else self.accelerate

    def _update_fn(self, x: torch.Tensor) -> Callable[..., torch.Tensor]:
        return _COMPILED_PGD_UPDATE if self._accelerated(x) else pgd_update

    def _graphable(self, x: torch.Tensor, y: Any) -> bool:
        """Whether a CUDA graph of the step may stand in for the eager loop: CUDA, eval mode (no
        buffer updates), at least two steps, a tensor ``y`` on the same device, no autocast."""
        wanted = (self._accelerated(x) and not self.custom_loss) if self.cuda_graphs is None else self.cuda_graphs
        return (
            wanted
            and not self._graphs_failed
            and x.is_cuda
            and self.mode == "eval"
            and self.steps >= 2
            and torch.is_tensor(y)
            and y.device == x.device
            and not torch.is_autocast_enabled("cuda")
        )

    def _graph_for(self, x: torch.Tensor, y: torch.Tensor) -> _GraphedPGD | None:
        key = (
            tuple(x.shape),
            x.stride(),
            x.dtype,
            str(x.device),
            tuple(y.shape),
            y.dtype,
            self.norm,
            self.eps,
            self.step_size,
            self.targeted,
            id(self.loss_fn),
            self._accelerated(x),
            accel.module_signature(self.model),
        )
        graph = self._graphs.get(key)
        if graph is None:
            try:
                graph = _GraphedPGD(self, x, y, self._update_fn(x))
            except Exception as exc:  # a step that cannot be captured runs eagerly
                self._graphs_failed = True
                accel.log.warning(
                    "CUDA graph capture of the PGD step failed (%s: %s); running it eagerly",
                    type(exc).__name__,
                    str(exc).splitlines()[0][:160] if str(exc) else "",
                )
                return None
            if len(self._graphs) >= self._MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = graph
        return graph

    def _run(self, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        if self.steps and self._graphable(x, y):
            graph = self._graph_for(x, y)
            if graph is not None:
                return graph.run(x, y, x_adv, self.steps)
        update = self._update_fn(x)
        for _ in range(self.steps):
            grad, _ = self.input_gradient(x_adv, y)
            x_adv = update(x_adv, grad, x, norm=self.norm, step_size=self.step_size, eps=self.eps)
        return x_adv

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best: torch.Tensor | None = None
        best_score: torch.Tensor | None = None
        for r in range(self.restarts):
            start = self._random_start(x, r) if self.random_start else x.clone()
            x_adv = self._run(x, y, start)
            if self.restarts == 1:
                return x_adv
            score = self._score(x_adv, y)
            if best is None or best_score is None:
                best, best_score = x_adv, score
            else:
                better = score > best_score
                best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), x_adv, best)
                best_score = torch.maximum(best_score, score)
        assert best is not None  # restarts >= 1 (checked in __init__)
        return best

    @torch.no_grad()
    def _score(self, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Worst case first: success (misclassified / on target) dominates, then the objective."""
        if self.custom_loss:
            return self.objective(x_adv, y)
        logits: torch.Tensor = self.model(x_adv)
        loss = F.cross_entropy(logits, y, reduction="none")
        obj = -loss if self.targeted else loss
        pred = logits.argmax(1)
        success = (pred == y) if self.targeted else (pred != y)
        # The objective (a cross-entropy) is finite; a large offset ranks success above any loss.
        return obj.clamp(-1e6, 1e6) + success.float() * 1e7


class _GraphedPGD:
    """One captured PGD step on static buffers (``x``, ``y``, the iterate), replayed ``steps`` times."""

    def __init__(self, attack: PGD, x: torch.Tensor, y: torch.Tensor, update: Callable[..., torch.Tensor]):
        self.x, self.y, self.x_adv = x.clone(), y.clone(), x.clone()

        def step() -> None:
            grad, _ = attack.input_gradient(self.x_adv, self.y)
            self.x_adv.copy_(
                update(self.x_adv, grad, self.x, norm=attack.norm, step_size=attack.step_size, eps=attack.eps)
            )

        self.captured = accel.CapturedStep(step, x.device)

    def run(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
        self.x.copy_(x)
        self.y.copy_(y)
        self.x_adv.copy_(start)
        for _ in range(steps):
            self.captured.replay()
        return self.x_adv.clone()


class FGSM(Attack):
    """Fast gradient (sign) method: one step of size eps; ``norm="l2"`` gives the L2 fast gradient method."""

    name = "fgsm"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 8 / 255,
        norm: Norm = "linf",
        targeted: bool = False,
        loss_fn: LossFn | None = None,
        mode: ModelMode = "eval",
        keep_buffers: bool = True,
        seed: int = 0,
    ):
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            targeted=targeted,
            loss_fn=loss_fn,
            mode=mode,
            keep_buffers=keep_buffers,
            seed=seed,
        )

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        grad, _ = self.input_gradient(x, y)
        step = _normalized_step(grad, self.norm)
        # Pixels without gradient stay put (eps=inf would otherwise give 0 * inf = NaN).
        return torch.where(step == 0, x, x + self.eps * step)


class NoAttack(Attack):
    """The identity: returns the clean images (a baseline row next to real attacks)."""

    name = "none"

    def __init__(self, model: nn.Module, *, seed: int = 0, mode: ModelMode = "eval", keep_buffers: bool = True):
        super().__init__(model, eps=0.0, norm="linf", mode=mode, keep_buffers=keep_buffers, seed=seed)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x


# ---------------------------------------------------------------------------------------------
# Attack specs: "pgd-l2:eps=0.25,step=0.1,steps=10" for the CLI, configs and reports.

ATTACK_KINDS = ("pgd-linf", "pgd-l2", "fgsm", "fgm-l2", "none")


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
        if self.kind not in ATTACK_KINDS:
            raise NrflabError(f"unknown attack {self.kind!r}; choose one of {', '.join(ATTACK_KINDS)}")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise NrflabError(f"eps must be a finite number >= 0, got {self.eps}")
        for name in ("steps", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise NrflabError(f"{name} must be an integer, got {value!r}")
        if self.kind.startswith("pgd") and self.steps < 1:
            raise NrflabError(
                f"steps must be >= 1 for {self.kind}, got {self.steps} (use the attack 'none' for clean accuracy)"
            )
        if self.steps < 0:
            raise NrflabError(f"steps must be >= 0, got {self.steps}")
        if self.restarts < 1:
            raise NrflabError(f"restarts must be >= 1, got {self.restarts}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise NrflabError(f"step size must be a finite number > 0, got {self.step_size}")
        if self.kind != "none" and self.eps == 0:
            raise NrflabError(f"eps must be > 0 for {self.kind} (use the attack 'none' for clean accuracy)")

    @property
    def norm(self) -> Norm:
        return "l2" if self.kind in ("pgd-l2", "fgm-l2") else "linf"

    @property
    def label(self) -> str:
        """A short column-friendly name, e.g. ``pgd-l2_0.25``."""
        if self.kind == "none":
            return "none"
        return f"{self.kind}_{self.eps:g}" + ("_t" if self.targeted else "")

    def build(self, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> Attack:
        """The attack this spec describes, on ``model``."""
        if self.kind.startswith("pgd"):
            return PGD(
                model,
                norm=self.norm,
                eps=self.eps,
                step_size=self.step_size,
                steps=self.steps,
                random_start=self.random_start,
                restarts=self.restarts,
                targeted=self.targeted,
                seed=seed,
                **kwargs,
            )
        if self.kind == "none":
            return NoAttack(model, seed=seed, **kwargs)
        return FGSM(model, eps=self.eps, norm=self.norm, targeted=self.targeted, seed=seed, **kwargs)

    def to_string(self) -> str:
        """The spec as text that :func:`parse_attack` reads back to an equal spec."""
        if self.kind == "none":
            return "none"
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


def parse_attack(text: str) -> AttackSpec:
    """Parse ``kind[:key=value,...]``, e.g. ``pgd-linf:eps=8/255,steps=20,step=2/255``."""
    text = text.strip()
    kind, _, rest = text.partition(":")
    values: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in _SPEC_KEYS:
            raise NrflabError(f"bad attack option {item!r} in {text!r}; use keys {', '.join(sorted(_SPEC_KEYS))}")
        field_name = _SPEC_KEYS[key]
        if field_name in ("random_start", "targeted"):
            values[field_name] = value.lower() in ("1", "true", "yes", "on")
        elif field_name in ("steps", "restarts"):
            number = _number(value, text)
            if not number.is_integer():
                raise NrflabError(f"{key} must be a whole number, got {value!r} in attack {text!r}")
            values[field_name] = int(number)
        else:
            values[field_name] = _number(value, text)
    if kind.lower() == "none" and values:
        raise NrflabError(f"the attack 'none' takes no options, got {text!r}")
    return AttackSpec(kind=kind.lower(), **values)


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
    if ":" in text or spec.kind == "none":
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


__all__ = [
    "ATTACK_KINDS",
    "Attack",
    "AttackSpec",
    "attack_from_parts",
    "FGSM",
    "LossFn",
    "NoAttack",
    "PGD",
    "check_images",
    "cross_entropy_loss",
    "enforce_ball",
    "frozen_model",
    "parse_attack",
    "per_sample_noise",
    "pgd_update",
    "project",
]

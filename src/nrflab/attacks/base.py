"""The attack base class and the geometry every attack shares: the eps-ball, [0,1], per-sample noise.

:class:`Attack` owns the entry point (``attack(x, y)`` and :meth:`Attack.apply`), marked ``@final``: it
validates the inputs, freezes the model, hands a copy of ``x`` to the subclass's :meth:`Attack._perturb`, and
moves whatever comes back into the eps-ball around ``x`` and into [0,1]. So the invariants hold for every
attack, built in or registered by a user, however its ``_perturb`` behaves: the result lies in the eps-ball
and in [0,1]; ``x`` is not modified; the model's parameters, buffers (BatchNorm running statistics) and
train/eval mode are the same afterwards; no parameter gradients are computed or left.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast, final

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.core.errors import NrflabError
from nrflab.core.modules import ModelMode, frozen_model

if TYPE_CHECKING:
    from nrflab.attacks.spec import AttackSpec

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss_fn(model, x, y) -> per-sample loss (shape [B])``; untargeted attacks ascend it, targeted
attacks descend it. ``y`` is whatever the loss needs (labels, target representations, ...)."""

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


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


def normalized_step(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit size in ``norm``: sign(grad) (Linf) or grad/||grad||_2 (L2)."""
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

    Subclasses implement ``_perturb(x, y) -> x_adv``; they may assume a frozen model in ``mode`` and may
    modify the ``x`` they are given (a copy). To make one available by name (``parse_attack``, ``--attack``),
    decorate it with :func:`nrflab.attacks.register_attack`; if its constructor takes more than the base's
    keywords, override :meth:`from_spec`.
    """

    name: str = "attack"
    iterative: ClassVar[bool] = False
    """Whether the attack takes steps (a spec of it then needs ``steps >= 1``)."""
    perturbs: ClassVar[bool] = True
    """False for the identity (``none``): a spec of it has eps 0 and takes no options."""
    default_restarts: ClassVar[int | None] = 1
    """The restarts of a spec that names none (None: the attack's own choice, e.g. AutoAttack's version)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a subclass that replaces the entry point (``@final`` for type checkers, enforced here at
        run time): the invariants hold for every attack only if every attack goes through :meth:`apply`."""
        super().__init_subclass__(**kwargs)
        for name in ("__call__", "apply"):
            if name in vars(cls):
                raise TypeError(
                    f"{cls.__name__} overrides Attack.{name}; implement _perturb instead (the entry point "
                    "enforces the eps-ball and [0,1] for every attack)"
                )

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
        if not isinstance(model, nn.Module):
            raise NrflabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if norm not in NORMS:
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

    @classmethod
    def from_spec(cls, spec: AttackSpec, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> Attack:
        """The attack ``spec`` describes, on ``model`` (``kwargs``: loss_fn, mode, keep_buffers, ...).

        The base passes eps, norm and targeted; an attack with more settings (steps, restarts) overrides this.
        """
        return cls(model, eps=spec.eps, norm=spec.norm, targeted=spec.targeted, seed=seed, **kwargs)

    @final
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for ``x``; ``y`` are true labels (untargeted) or targets (targeted)."""
        return self.apply(x, y)

    @final
    def apply(self, x: torch.Tensor, y: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:
        """The same as calling the attack. ``check_inputs=False`` skips the check that ``x`` lies in
        [0,1] (its one host-device synchronization), for callers that checked their images once with
        :func:`check_images` (training and evaluation loops); every other invariant is still enforced."""
        if check_inputs:
            check_images(x)
        _check_shapes(x, y)
        x = x.detach()
        with frozen_model(self.model, self.mode, self.keep_buffers):
            x_adv = self._perturb(x.clone(), y.detach() if torch.is_tensor(y) else y)
        if not torch.is_tensor(x_adv) or x_adv.shape != x.shape:
            got = tuple(x_adv.shape) if torch.is_tensor(x_adv) else type(x_adv).__name__
            raise NrflabError(f"attack {self!r} returned {got} for inputs of shape {tuple(x.shape)}")
        return enforce_ball(x, x_adv.detach(), norm=self.norm, eps=self.eps)

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
    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack itself: adversarial examples for (a copy of) ``x``; the caller enforces the ball."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm={self.norm}, eps={self.eps:g}, targeted={self.targeted})"

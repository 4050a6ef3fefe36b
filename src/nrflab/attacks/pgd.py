"""Projected gradient descent, L2 and Linf: ``pgd-l2`` and ``pgd-linf``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.attacks.base import Attack, LossFn, Norm, normalized_step, per_sample_noise
from nrflab.attacks.fast import GraphedStep, Step, compiled_pgd_update, pgd_update
from nrflab.attacks.registry import register_attack
from nrflab.attacks.spec import default_step_size
from nrflab.core import accel
from nrflab.core.errors import NrflabError
from nrflab.core.modules import ModelMode

if TYPE_CHECKING:
    from nrflab.attacks.spec import AttackSpec

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


def _whole_number(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise NrflabError(f"{name} must be an integer, got {value}")
    if int(value) < minimum:
        raise NrflabError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


@register_attack("pgd-l2", norm="l2")
@register_attack("pgd-linf", norm="linf")
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
    iterative: ClassVar[bool] = True
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
        self.steps = _whole_number("steps", steps, 0)
        self.restarts = _whole_number("restarts", restarts, 1)
        step_size = default_step_size(eps=self.eps, steps=self.steps) if step_size is None else step_size
        if not (step_size >= 0 and math.isfinite(step_size)):
            raise NrflabError(f"step_size must be a finite number >= 0, got {step_size}")
        self.step_size = float(step_size)
        self.random_start = bool(random_start)
        if accelerate not in (None, True, False) or cuda_graphs not in (None, True, False):
            raise NrflabError("accelerate and cuda_graphs must be True, False or None (the device's default)")
        self.accelerate = accelerate
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[object, ...], GraphedStep] = {}
        self._graphs_failed = False

    @classmethod
    def from_spec(cls, spec: AttackSpec, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> PGD:
        """The PGD ``spec`` describes: its norm, eps, step size, steps, random start, restarts and target."""
        return cls(
            model,
            norm=spec.norm,
            eps=spec.eps,
            step_size=spec.step_size,
            steps=spec.steps,
            random_start=spec.random_start,
            restarts=spec.restarts or 1,
            targeted=spec.targeted,
            seed=seed,
            **kwargs,
        )

    def _random_start(self, x: torch.Tensor, restart: int) -> torch.Tensor:
        if self.norm == "linf":
            delta = (per_sample_noise(x, self.seed, "uniform", salt=restart) * 2 - 1) * self.eps
        else:
            # Uniform in the L2 ball: a Gaussian direction, radius eps * u^(1/d).
            direction = normalized_step(per_sample_noise(x, self.seed, "normal", salt=restart), "l2")
            u = per_sample_noise(x, self.seed, "uniform", salt=10_000 + restart).flatten(1)[:, :1]
            radius = u ** (1.0 / x[0].numel()) * self.eps
            delta = direction * radius.view(-1, *([1] * (x.ndim - 1)))
        return (x + delta).clamp(0.0, 1.0)

    def _accelerated(self, x: torch.Tensor) -> bool:
        return accel.default_accelerate(x.device) if self.accelerate is None else self.accelerate

    def _step(self, x: torch.Tensor) -> Step:
        """One iteration ``(x_adv, y, x) -> x_adv``: the input gradient, then the (compiled) update."""
        update = compiled_pgd_update if self._accelerated(x) else pgd_update

        def step(x_adv: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            grad, _ = self.input_gradient(x_adv, y)
            return update(x_adv, grad, x, norm=self.norm, step_size=self.step_size, eps=self.eps)

        return step

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

    def _graph_key(self, x: torch.Tensor, y: torch.Tensor) -> tuple[object, ...]:
        """Everything a captured step depends on: shapes and layout, the attack's numbers, the model's tensors."""
        return (
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

    def _graph_for(self, x: torch.Tensor, y: torch.Tensor) -> GraphedStep | None:
        key = self._graph_key(x, y)
        graph = self._graphs.get(key)
        if graph is None:
            try:
                graph = GraphedStep(self._step(x), x, y)
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
        step = self._step(x)
        for _ in range(self.steps):
            x_adv = step(x_adv, y, x)
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

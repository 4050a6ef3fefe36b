"""AutoAttack (Croce & Hein, 2020) as the attack kind ``autoattack``, run by ``pyautoattack`` itself.

``autoattack`` is the standard version (APGD-CE, APGD-T, FAB-T, Square) in Linf;
``autoattack:version=custom,attacks=apgd-ce+apgd-t,norm=l2,eps=0.5,seed=0`` chooses the version (the ones
``pyautoattack`` has), a custom version's attacks (the names it knows, run in the order given), the norm
(``linf``, the default, or ``l2``: one registered name, the norm comes from the spec), a custom version's APGD
restarts (``restarts=1``, as the standard version runs APGD-CE; default ``pyautoattack``'s, 5) and the seed
(default: the seed ``AttackSpec.build`` is given, so an experiment's seed reaches it). The versions and attack names
are read from ``pyautoattack`` at import, never copied.

What nrflab adds around the reference call, and nothing else: the ``@final`` entry point (inputs in [0,1],
the result in the eps-ball and [0,1], the model's parameters, buffers and mode restored); fp32 (autocast off,
fp32 inputs; a model with other parameter dtypes is refused in one line); the caller's random number
generators and trace function are left as they were (``pyautoattack`` reseeds torch's global generator and
clears ``sys.settrace``); its log (one line per batch and attack) goes to the ``nrflab.attacks.autoattack``
logger at INFO, its warnings as warnings -- the progress the ``nrflab`` command prints.

Resuming: ``spec.build(model, seed=seed, state_dir=run_dir / "autoattack-state")`` (or ``AutoAttack(...,
state_dir=...)``) keeps one state file per call (a batch of images) in that directory, named by a digest of the
images, labels, model weights and settings, and written after each of the version's attacks. A run stopped and
started again skips the finished batches and, inside a batch, the finished attacks, and returns the same
adversarial examples as an uninterrupted run: each attack runs on the images still robust after the previous
ones, exactly as inside one ``run_standard_evaluation`` call. (``pyautoattack``'s own ``state_path`` stores only
robust flags, so a restored run returns clean images for the points broken before the restart, and it resumes
inside an attack on a re-batched remainder; neither gives the uninterrupted result.) Known limit: a custom
order that runs ``fab`` after ``fab-t`` resumed between the two runs ``fab`` with its own restarts, not the one
``fab-t`` leaves behind inside one call.

Without ``state_dir`` the attack is the direct call, on the images of the call:
``pyautoattack.AutoAttack(model, attacks=..., device=x.device, eps=eps, norm=..., seed=seed, version=...)
.run_standard_evaluation(x, y, batch_size=batch_size)``, with ``.apgd.n_restarts = restarts`` set in between
when a spec names restarts (``tests/test_autoattack.py`` checks image by image).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import pyautoattack
import torch
from pyautoattack.autoattack import AttackName
from torch import nn

from nrflab.attacks.base import Attack, Norm
from nrflab.attacks.registry import register_attack
from nrflab.core.errors import NrflabError
from nrflab.core.logs import get_logger
from nrflab.core.modules import ModelMode

if TYPE_CHECKING:
    from nrflab.attacks.spec import AttackSpec

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

log = get_logger("attacks.autoattack")

AUTOATTACK_ATTACKS: tuple[str, ...] = tuple(get_args(AttackName))
"""The attacks ``pyautoattack`` knows (a custom version's ``attacks=``), as it names them."""

_VERSIONS: tuple[str, ...] = tuple(
    get_args(inspect.signature(pyautoattack.AutoAttack.__init__).parameters["version"].annotation)
)
AUTOATTACK_VERSIONS: tuple[str, ...] = ("standard", *(v for v in _VERSIONS if v != "standard"))
"""The versions ``pyautoattack`` has, the default (``standard``) first."""

_REFERENCE_NORMS = {"linf": "Linf", "l2": "L2"}
_STATE_FORMAT = 1


@register_attack(
    "autoattack",
    norm="linf",
    norms=("linf", "l2"),
    options=("eps", "norm_option", "version", "attacks", "restarts", "seed"),
    choices={"version": AUTOATTACK_VERSIONS, "attacks": AUTOATTACK_ATTACKS},
)
class AutoAttack(Attack):
    """AutoAttack through ``pyautoattack`` (see the module docstring for what nrflab adds and resuming).

    ``version``: one of :data:`AUTOATTACK_VERSIONS`; ``attacks``: a custom version's attacks (from
    :data:`AUTOATTACK_ATTACKS`); ``restarts``: the restarts of a custom version's APGD-CE and APGD-DLR (None:
    ``pyautoattack``'s, 5; the standard version runs APGD-CE with 1); ``batch_size``: ``pyautoattack``'s batch size within one call (its default,
    250; the random starts are drawn per batch, so it is part of what the result depends on);
    ``state_dir``: where the resumable state files go (None: no state, the plain direct call).
    """

    name = "autoattack"
    default_restarts = None

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 8 / 255,
        norm: Norm = "linf",
        version: str = "standard",
        attacks: tuple[str, ...] | None = None,
        restarts: int | None = None,
        seed: int = 0,
        batch_size: int = 250,
        state_dir: str | os.PathLike[str] | None = None,
        mode: ModelMode = "eval",
        keep_buffers: bool = True,
    ):
        super().__init__(model, eps=eps, norm=norm, mode=mode, keep_buffers=keep_buffers, seed=seed)
        if version not in AUTOATTACK_VERSIONS:
            raise NrflabError(f"unknown AutoAttack version {version!r}; choose {', '.join(AUTOATTACK_VERSIONS)}")
        if (version == "custom") != bool(attacks):
            raise NrflabError("AutoAttack takes attacks with version='custom' and only then")
        unknown = [a for a in attacks or () if a not in AUTOATTACK_ATTACKS]
        if unknown:
            raise NrflabError(f"unknown AutoAttack attack {unknown[0]!r}; choose from {', '.join(AUTOATTACK_ATTACKS)}")
        if restarts is not None and (isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1):
            raise NrflabError(f"restarts must be an integer >= 1, got {restarts!r}")
        if restarts is not None and version != "custom":
            raise NrflabError(f"the {version} version of AutoAttack fixes its restarts; restarts= needs version=custom")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise NrflabError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.version = version
        self.attacks = tuple(attacks) if attacks else None
        self.restarts = restarts
        self.batch_size = batch_size
        self.state_dir = None if state_dir is None else Path(state_dir)

    @classmethod
    def from_spec(cls, spec: AttackSpec, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> AutoAttack:
        """The AutoAttack ``spec`` describes; ``kwargs``: ``state_dir``, ``batch_size``, ``mode``, ``keep_buffers``.

        A ``loss_fn`` is refused: AutoAttack's attacks use their own losses (cross-entropy, DLR)."""
        if kwargs.get("loss_fn") is not None:
            raise NrflabError("autoattack uses its own losses (cross-entropy, DLR) and takes no loss_fn")
        kwargs.pop("loss_fn", None)
        return cls(
            model,
            eps=spec.eps,
            norm=spec.norm,
            version=spec.version or AUTOATTACK_VERSIONS[0],
            attacks=spec.attacks or None,
            restarts=spec.restarts,
            seed=spec.seed if spec.seed is not None else seed,
            **kwargs,
        )

    def reference(self, device: torch.device) -> Any:
        """The ``pyautoattack.AutoAttack`` object this attack runs (untyped: pyautoattack has no annotations)."""
        reference = pyautoattack.AutoAttack(
            self.model,
            attacks=list(self.attacks) if self.attacks else None,
            device=device,
            eps=self.eps,
            norm=_REFERENCE_NORMS[self.norm],
            seed=self.seed,
            version=self.version,
        )
        if self.restarts is not None:
            reference.apgd.n_restarts = self.restarts
        return reference

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_fp32(self.model)
        x32 = x.float()
        x_adv: torch.Tensor
        with _isolated(x.device), _routed_log():
            reference = self.reference(x.device)
            if self.state_dir is None:
                x_adv, _ = reference.run_standard_evaluation(x32, y, batch_size=self.batch_size)
            else:
                x_adv = self._resumable(reference, x32, y)
        return x_adv.to(x.dtype)

    def _resumable(self, reference: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attacks one by one, each on the images still robust, with the state saved after each."""
        assert self.state_dir is not None
        path = self.state_dir / f"autoattack-{self._digest(x, y)}.pt"
        done, x_adv, robust = _load_state(path, x)
        names: list[str] = list(reference.attacks_to_run)
        if done:
            log.info("autoattack: resuming from %s (%s done)", path, ", ".join(done))
        for name in names:
            if name in done:
                continue
            idx = robust.nonzero().flatten()
            if idx.numel():
                reference.attacks_to_run = [name]
                sub = idx.to(x.device)
                adv, pred = reference.run_standard_evaluation(x[sub], y[sub], batch_size=self.batch_size)
                broken = (pred != y[sub]).cpu()
                x_adv[idx[broken]] = adv[broken.to(adv.device)].detach().cpu()
                robust[idx[broken]] = False
            done.append(name)
            _save_state(path, done=done, x_adv=x_adv, robust=robust)
            log.info("autoattack: %s done, %d of %d images robust", name, int(robust.sum()), robust.numel())
        return x_adv.to(x.device)

    def _digest(self, x: torch.Tensor, y: torch.Tensor) -> str:
        """What the result depends on: images, labels, the model's tensors, the settings."""
        h = hashlib.blake2b(digest_size=12)
        # restarts only when named, so the state files of specs without it keep their names
        restarts: tuple[object, ...] = () if self.restarts is None else (self.restarts,)
        settings = (self.eps, self.norm, self.version, self.attacks, self.seed, self.batch_size, self.mode, *restarts)
        h.update(repr(settings).encode())
        for t in (x, y, *self.model.state_dict().values()):
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        which = "+".join(self.attacks) if self.attacks else self.version
        which += f", restarts={self.restarts}" if self.restarts is not None else ""
        return f"AutoAttack({which}, norm={self.norm}, eps={self.eps:g}, seed={self.seed})"


def _check_fp32(model: nn.Module) -> None:
    """AutoAttack runs in fp32: refuse, in one line, a model whose floating tensors are not float32."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point() and t.dtype != torch.float32:
            raise NrflabError(f"autoattack runs in fp32; the model has {t.dtype} tensors (call model.float())")


@contextlib.contextmanager
def _isolated(device: torch.device) -> Iterator[None]:
    """fp32 (autocast off); the caller's random generators and trace function restored afterwards."""
    trace = sys.gettrace()
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    try:
        with torch.random.fork_rng(devices=devices), torch.autocast(device.type, enabled=False):
            yield
    finally:
        sys.settrace(trace)


class _Forward(logging.Handler):
    """Re-emits ``pyautoattack``'s records on nrflab's logger: its debug lines (progress) at INFO."""

    def emit(self, record: logging.LogRecord) -> None:
        level = logging.INFO if record.levelno < logging.WARNING else record.levelno
        log.log(level, "autoattack: %s", record.getMessage())


@contextlib.contextmanager
def _routed_log() -> Iterator[None]:
    """Within the block, the ``auto-attack`` logger's records go to nrflab's logger and nowhere else."""
    source = logging.getLogger("auto-attack")
    handler = _Forward(logging.DEBUG)
    saved = (source.level, source.propagate)
    source.addHandler(handler)
    source.setLevel(logging.DEBUG if log.isEnabledFor(logging.INFO) else logging.WARNING)
    source.propagate = False
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.setLevel(saved[0])
        source.propagate = saved[1]


def _load_state(path: Path, x: torch.Tensor) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The attacks done, the adversarial examples so far (on the CPU) and the robust flags; a fresh start
    when there is no state file. A file that cannot be read is refused in one line."""
    if not path.exists():
        return [], x.detach().cpu().clone(), torch.ones(x.shape[0], dtype=torch.bool)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        done = [str(a) for a in state["done"]]
        x_adv, robust = state["x_adv"], state["robust"]
        ok = state["format"] == _STATE_FORMAT and x_adv.shape == x.shape and robust.shape == (x.shape[0],)
    except Exception as exc:
        raise NrflabError(
            f"cannot read the AutoAttack state {path} ({type(exc).__name__}); delete it to start over"
        ) from None
    if not ok:
        raise NrflabError(f"the AutoAttack state {path} does not fit these images; delete it to start over")
    return done, x_adv, robust


def _save_state(path: Path, *, done: list[str], x_adv: torch.Tensor, robust: torch.Tensor) -> None:
    """Write the state atomically (a temporary file, then a rename), so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": _STATE_FORMAT, "done": done, "x_adv": x_adv, "robust": robust}, tmp)
    os.replace(tmp, path)

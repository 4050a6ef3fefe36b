"""The trainer: one model, recorded every epoch (clean accuracy, robust accuracy, LIGS, probes),
resumable after a kill, one writer per run directory, and never losing an earlier run.

Order of work in :meth:`Trainer.run`: everything is resolved and checked first (config, dataset, device,
model with a dry forward, evaluation set, attacks); only then is the run directory locked and claimed.
``overwrite`` moves the old run aside and deletes it once the new run has committed its first epoch (the
old run comes back if the new one fails before). ``resume`` continues only the same run: its recorded
config must match field for field (placement fields -- device, data root -- excepted).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from nrflab.attacks import Attack, check_images, frozen_model
from nrflab.core import accel
from nrflab.core.columns import CLEAN, LIGS, RHO, SHIFTED, robust_key
from nrflab.core.errors import NrflabError
from nrflab.core.validation import resolve_device
from nrflab.data import DatasetBundle, ImageTensorDataset, load_dataset
from nrflab.data.base import to_float
from nrflab.measure.metrics import dataset_tensors
from nrflab.measure.reliance import RelianceProbe
from nrflab.models import NrfModel, create_model
from nrflab.runs.rundir import RunDir, RunStatus, Stash, check_output_path, locked
from nrflab.training import runstate
from nrflab.training.augment import augment_batch
from nrflab.training.config import TrainConfig
from nrflab.training.evaluation import EvalSet, evaluate_epoch, probe_columns, run_probes
from nrflab.training.runstate import Row, Rows
from nrflab.training.schedule import epoch_generator, lr_at, make_optimizer

log = logging.getLogger("nrflab.training")


@dataclass(frozen=True)
class TensorData:
    """A dataset held as tensors (uint8 or float) on the training device."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_dataset(cls, data: torch.utils.data.Dataset[Any], device: torch.device) -> TensorData:
        if isinstance(data, ImageTensorDataset):
            return cls(data.images.to(device), data.labels.to(device))
        x, y = dataset_tensors(data)
        return cls(x.to(device), y.to(device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.images[idx]), self.labels[idx]


@dataclass
class TrainResult:
    """What a finished (or stopped) training returns."""

    run_dir: Path
    model: NrfModel
    history: Rows
    config: TrainConfig


class NonFiniteLoss(NrflabError):
    """Training diverged (NaN/Inf loss)."""


def check_input_fits(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """A dry forward on two blank images, so an arch/norm that cannot take this input size fails with
    one clear line (e.g. InstanceNorm on a 1x1 feature map of 8x8 digits) instead of mid-training."""
    try:
        with torch.no_grad(), frozen_model(model, "train", keep_buffers=True):  # BN statistics restored
            model(torch.zeros(2, *input_shape))
    except (RuntimeError, ValueError) as exc:
        cfg = getattr(model, "config", None)
        what = f"{cfg.arch} with norm {cfg.norm!r}" if cfg is not None else "the model"
        raise NrflabError(
            f"{what} cannot take inputs of shape {tuple(input_shape)}: {str(exc).splitlines()[0][:120]}"
        ) from None


def compile_setting(cfg: TrainConfig) -> bool | str | None:
    """The config's ``compile`` field (torch.compile of the model for the training steps), if it has one."""
    return getattr(cfg, "compile", None)


class Trainer:
    """Trains one model, recording the framework's metrics every epoch; resumable and atomic."""

    def __init__(
        self, cfg: TrainConfig, out_dir: str | Path, *, bundle: DatasetBundle | None = None, progress: bool = True
    ):
        self.cfg = cfg
        self.run_dir = RunDir(out_dir)
        self.out = self.run_dir.path
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.bundle = bundle or load_dataset(cfg.dataset, root=cfg.data_root)
        self.probes = list(self.bundle.probes)
        if self.bundle.reliance_views is not None:
            self.probes.append(RelianceProbe(self.bundle.reliance_views))
        self.specs = cfg.attack_specs()
        if cfg.channels_last and len(self.bundle.input_shape) != 3:
            raise NrflabError("channels_last needs image inputs (C, H, W)")
        accel.resolve_compile_mode(compile_setting(cfg))  # a bad mode fails here, before any work
        self._step_model: Any = None  # what the training step calls: the model, or its compiled version
        self._adv_attack: Attack | None = None

    # -- setup ------------------------------------------------------------------------------
    def _build_model(self) -> NrfModel:
        b = self.bundle
        model = create_model(
            self.cfg.arch,
            self.cfg.norm,
            b.num_classes,
            b.in_channels,
            width=self.cfg.width,
            mean=b.mean,
            std=b.std,
            init=self.cfg.init,
            input_shape=b.input_shape,
            seed=self.cfg.seed,
        )
        check_input_fits(model, b.input_shape)
        model = model.to(self.device)
        if self.cfg.channels_last:
            # Module.to accepts memory_format at run time; torch's overloads for it omit the keyword.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def _write_config(self, model: NrfModel) -> None:
        compile_mode = accel.resolve_compile_mode(compile_setting(self.cfg)) or "none"
        resolved = runstate.resolved_config(self.cfg, self.bundle, self.device, model, compile_mode=compile_mode)
        runstate.write_config(self.run_dir, resolved)

    def _save(
        self, model: NrfModel, opt: torch.optim.Optimizer, epoch: int, history: Rows, probe_history: Rows
    ) -> None:
        runstate.save_epoch(
            self.run_dir,
            self.cfg,
            self.probes,
            model=model,
            opt=opt,
            epoch=epoch,
            history=history,
            probe_history=probe_history,
        )

    # -- the loop ---------------------------------------------------------------------------
    def _adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        spec = self.cfg.adversarial()
        assert spec is not None  # called only for adversarial training
        mode = self.cfg.attack_mode
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        attack = self._adv_attack
        if attack is None or attack.model is not model:
            # Built once per run (its captured CUDA graphs are reused every step); only the seed changes.
            attack = self._adv_attack = spec.build(model, mode=mode, keep_buffers=(mode == "eval"), seed=seed)
        attack.seed = seed
        # The training images were checked once (run): no per-step host sync for the [0,1] check.
        if spec.targeted:
            draw = torch.randint(0, self.bundle.num_classes, (y.shape[0],), generator=gen)
            (target,) = accel.to_device_async([draw], y.device)
            return attack.apply(x, target, check_inputs=False)
        return attack.apply(x, y, check_inputs=False)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.cfg.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(
        self, model: nn.Module, data: TensorData, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch: augmented, in the model's memory layout, attacked under adversarial training."""
        cfg = self.cfg
        x, y = data.batch(idx)
        if cfg.augment:
            x = augment_batch(x, gen, flip=cfg.flip)
        if cfg.channels_last:  # before the attack too: the model's layout for every pass
            x = x.contiguous(memory_format=torch.channels_last)
        if cfg.adv_train != "none":
            x = self._adversarial(model, x, y, gen)
            model.train()
        return x, y

    def _train_epoch(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        data: TensorData,
        epoch: int,
        probe_history: Rows,
    ) -> dict[str, float]:
        cfg = self.cfg
        gen = epoch_generator(cfg.seed, epoch)
        (perm,) = accel.to_device_async([torch.randperm(len(data), generator=gen)], data.labels.device)
        forward = self._step_model if self._step_model is not None else model
        mark_step = getattr(forward, "mark_step", None)
        steps = math.ceil(len(data) / cfg.batch_size)
        probing = bool(cfg.probe_every and self.probes and epoch < cfg.probe_epochs)
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
            unit="batch",
            dynamic_ncols=True,
        )
        lr = cfg.lr
        for step in bar:
            x, y = self._batch(model, data, perm[step * cfg.batch_size : (step + 1) * cfg.batch_size], gen)
            lr = lr_at(cfg, epoch, step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            if mark_step is not None:
                mark_step()
            with self._autocast():
                logits = forward(x)
                loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            global_step = epoch * steps + step + 1
            if probing and global_step % cfg.probe_every == 0:
                seen = epoch * len(data) + min((step + 1) * cfg.batch_size, len(data))
                probe_history.append(
                    {"epoch": epoch + (step + 1) / steps, "step": global_step, "samples": seen}
                    | run_probes(model, self.probes)
                )
        train_loss = float(loss_sum) / len(data)
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(
                f"training diverged at epoch {epoch + 1} (loss {train_loss}); the last good checkpoint "
                f"(epoch {epoch}) is kept in {self.out}; try a lower --lr"
            )
        return {"train_loss": train_loss, "train_acc": float(correct) / len(data), "lr": lr}

    def run(self, *, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train (or continue) the run; see the module docstring for what is checked before the disk is touched."""
        cfg = self.cfg
        check_output_path(self.out, what="run directory", allow_run=True)
        torch.manual_seed(cfg.seed)
        model = self._build_model()
        opt = make_optimizer(cfg, model)
        train = TensorData.from_dataset(self.bundle.train, self.device)
        if cfg.adv_train != "none" and train.images.is_floating_point():
            check_images(train.images)  # once here, not in every adversarial step
        eval_set = EvalSet.from_bundle(self.bundle, cfg, self.device)
        self._step_model = accel.training_model(model, compile_setting(cfg))
        with locked(self.out, what="run directory"):
            from_checkpoint, stash = runstate.claim(self.run_dir, cfg, resume=resume, overwrite=overwrite)
            try:
                history, probe_history = self._loop(model, opt, train, eval_set, from_checkpoint, stash)
            except BaseException:
                if stash is not None:
                    stash.restore()
                raise
        model.eval()
        return TrainResult(self.out, model, history, cfg)

    def _loop(
        self,
        model: NrfModel,
        opt: torch.optim.Optimizer,
        train: TensorData,
        eval_set: EvalSet,
        from_checkpoint: bool,
        stash: Stash | None,
    ) -> tuple[Rows, Rows]:
        cfg = self.cfg
        history: Rows = []
        probe_history: Rows = []
        start = 0
        if from_checkpoint:
            start, history, probe_history = runstate.restore_epoch(
                self.run_dir, model=model, opt=opt, device=self.device
            )
            log.info("resuming %s after epoch %d/%d", self.out, start, cfg.epochs)
        self._write_config(model)
        t_run = time.perf_counter() - (history[-1]["wall_time"] if history else 0.0)
        if not history:
            t0 = time.perf_counter()
            row = {
                "epoch": 0,
                "lr": lr_at(cfg, 0, 0, 1),
                "train_loss": math.nan,
                "train_acc": math.nan,
                **evaluate_epoch(model, cfg, eval_set, self.bundle.num_classes, self.probes),
            }
            row.update(epoch_time=0.0, eval_time=time.perf_counter() - t0, wall_time=time.perf_counter() - t_run)
            history.append(row)
            if cfg.probe_every and self.probes:
                probe_history.append(
                    {
                        "epoch": 0.0,
                        "step": 0,
                        "samples": 0,
                        **{k: row[k] for k in probe_columns(self.probes) if k in row},
                    }
                )
            self._save(model, opt, 0, history, probe_history)
            if stash is not None:
                stash.commit()
            log.info(self.summary(row))
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            stats = self._train_epoch(model, opt, train, epoch, probe_history)
            t1 = time.perf_counter()
            row = {
                "epoch": epoch + 1,
                **stats,
                **evaluate_epoch(model, cfg, eval_set, self.bundle.num_classes, self.probes),
            }
            row.update(epoch_time=t1 - t0, eval_time=time.perf_counter() - t1, wall_time=time.perf_counter() - t_run)
            history.append(row)
            self._save(model, opt, epoch + 1, history, probe_history)
            log.info(self.summary(row))
        return history, probe_history

    def summary(self, row: Row) -> str:
        """The one-line per-epoch summary."""
        parts = [f"[{self.cfg.arch}/{self.cfg.norm}] epoch {int(row['epoch']):>3}/{self.cfg.epochs}"]
        if math.isfinite(row.get("train_loss", math.nan)):
            parts.append(f"loss {row['train_loss']:.3f}")
        parts.append(f"clean {100 * row[CLEAN]:.1f}%")
        for spec in self.specs:
            parts.append(f"{spec.label} {100 * row[robust_key(spec.label)]:.1f}%")
        if SHIFTED in row:
            parts.append(f"y+1 {100 * row[SHIFTED]:.1f}%")
        if LIGS in row:
            parts.append(f"LIGS {row[LIGS]:.3f}")
        if RHO in row:
            parts.append(f"rho {row[RHO]:+.2f}")
        parts.append(f"{row['epoch_time'] + row['eval_time']:.1f}s")
        return "  ".join(parts)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    bundle: DatasetBundle | None = None,
) -> TrainResult:
    """Train one model as ``cfg`` says, writing the run directory ``out_dir``."""
    return Trainer(cfg, out_dir, bundle=bundle, progress=progress).run(resume=resume, overwrite=overwrite)


def train_or_reuse(
    cfg: TrainConfig, out_dir: str | Path, *, progress: bool = True, bundle: DatasetBundle | None = None
) -> Path:
    """Reuse a finished run of this recipe, resume an interrupted one, or train a new one.

    A run recorded with another recipe is refused in one line naming the differing fields, never
    silently reused.
    """
    run = RunDir(out_dir)
    diff = run.differences(cfg)
    if diff:
        raise NrflabError(
            f"{run.path} holds a run of another recipe ({'; '.join(diff[:4])}); "
            "delete it or choose another output directory"
        )
    if run.is_finished_with(cfg):
        log.info("reusing finished run %s", run.path)
        return run.path
    train(cfg, run.path, resume=run.is_run(), progress=progress, bundle=bundle)
    return run.path


# -- reading runs back (thin wrappers kept for callers that hold a path) -------------------------
def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a run's metrics.csv as floats (empty cells become NaN)."""
    return RunDir(run_dir).read_metrics()


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's recorded config."""
    return RunDir(run_dir).read_config()


def run_status(run_dir: str | Path) -> RunStatus | None:
    """The run's last committed epoch, or None."""
    return RunDir(run_dir).status()


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

"""Training with per-epoch robustness records: clean accuracy, robust accuracy, LIGS, every epoch.

A run directory holds ``config.json``/``config.yaml`` (the full resolved config), ``metrics.csv`` (one
row per epoch, epoch 0 = before training), ``model.safetensors`` (+ ``model.json``) and
``checkpoint.safetensors`` (model, optimizer, scheduler and history in one file, written atomically,
so a kill at any moment leaves the previous epoch intact and ``resume`` continues from it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .attacks import PGD, AttackSpec, parse_attack
from .checkpoint import (
    atomic_save_tensors,
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_metadata,
    read_yaml_mapping,
    save_model,
)
from .data import DatasetBundle, ImageTensorDataset, load_dataset
from .errors import NrflabError
from .metrics import dataset_tensors, ligs_per_sample
from .models import NrfModel, create_model
from .presets import PAPER_EVAL_ATTACKS, PRESETS, preset_for

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"
ADV_TRAIN_KINDS = ("none", "targeted-l2", "pgd-linf", "pgd-l2")


class TrainConfig(BaseModel):
    """One training run. Defaults are the paper's CIFAR recipe; a dataset preset adjusts the fields the
    user did not set (recorded in ``preset``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: str = "cifar10"
    data_root: Optional[str] = None
    arch: str = "resnet18"
    norm: str = "bn"
    width: float = Field(1.0, gt=0)
    init: str = "auto"
    epochs: int = Field(150, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["multistep", "onecycle", "cosine", "constant"] = "multistep"
    milestones: list[int] = Field(default_factory=lambda: [50, 100])
    gamma: float = Field(0.1, gt=0)
    augment: bool = True
    flip: bool = True
    seed: int = 1337
    device: str = "auto"
    eval_attacks: list[str] = Field(default_factory=lambda: list(PAPER_EVAL_ATTACKS))
    ligs: bool = True
    ligs_sigma: float = Field(0.01, ge=0)
    eval_size: Optional[int] = Field(None, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    eval_shifted_labels: bool = False
    adv_train: Literal["none", "targeted-l2", "pgd-linf", "pgd-l2"] = "none"
    adv_eps: Optional[float] = Field(None, ge=0)
    adv_steps: Optional[int] = Field(None, ge=1)
    adv_step_size: Optional[float] = Field(None, gt=0)
    attack_mode: Literal["eval", "train"] = "eval"
    keep_checkpoints: int = Field(0, ge=0)
    channels_last: bool = False
    preset: Optional[str] = None

    @field_validator("eval_attacks")
    @classmethod
    def _check_attacks(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_attack(text)
        return v

    @field_validator("milestones")
    @classmethod
    def _check_milestones(cls, v: list[int]) -> list[int]:
        if sorted(v) != list(v) or any(m < 1 for m in v):
            raise ValueError("milestones must be increasing epochs >= 1")
        return v

    def attack_specs(self) -> list[AttackSpec]:
        return [parse_attack(t) for t in self.eval_attacks]

    def adversarial_settings(self) -> tuple[float, int, float]:
        """(eps, steps, step size) of adversarial training, with the paper's/Madry's defaults."""
        if self.adv_train == "targeted-l2":
            eps, steps, step = 0.5, 7, 0.1
        elif self.adv_train == "pgd-l2":
            eps, steps, step = 0.5, 7, 0.1
        else:
            eps, steps, step = 8 / 255, 7, 2 / 255
        eps = self.adv_eps if self.adv_eps is not None else eps
        steps = self.adv_steps if self.adv_steps is not None else steps
        step = self.adv_step_size if self.adv_step_size is not None else (step if self.adv_eps is None else 2.5 * eps / steps)
        return eps, steps, step


def validation_message(exc: ValidationError) -> str:
    """One line from a pydantic error: the first problem, with its field."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "config"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"invalid config: {where}: {msg}"


def make_config(base_dataset: str | None = None, **fields: Any) -> TrainConfig:
    """Build a TrainConfig: paper defaults, then the dataset's preset, then the given fields."""
    try:
        user = TrainConfig(**fields)
    except ValidationError as exc:
        raise NrflabError(validation_message(exc)) from None
    preset = user.preset or preset_for(user.dataset, base_dataset)
    if preset not in PRESETS:
        raise NrflabError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    merged = {**PRESETS[preset], **user.model_dump(exclude_unset=True), "preset": preset}
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        raise NrflabError(validation_message(exc)) from None


def load_config_file(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML/JSON recipe; explicit overrides win."""
    data = read_yaml_mapping(path, "config file")
    data.pop("resolved", None)
    return make_config(**{**data, **overrides})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise NrflabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NrflabError("device 'cuda' requested but no CUDA GPU is available")
    return dev


# ---------------------------------------------------------------------------------------------
# Data on the device, batches, augmentation


@dataclass
class TensorData:
    """A dataset held as tensors (uint8 or float) on the training device."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_dataset(cls, data: torch.utils.data.Dataset, device: torch.device) -> "TensorData":
        if isinstance(data, ImageTensorDataset):
            return cls(data.images.to(device), data.labels.to(device))
        x, y = dataset_tensors(data)
        return cls(x.to(device), y.to(device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x, self.labels[idx]


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding and (optionally) horizontal flip, batched on the device."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if flip:
        mask = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        out = torch.where(mask.view(-1, 1, 1, 1), out.flip(3), out)
    return out


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, stream): resumed runs replay exactly."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % (2**63))


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate at (0-based) ``epoch`` and ``step`` within it: a pure function of the config,
    so a resumed run needs no scheduler state."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    total = max(cfg.epochs * steps_per_epoch, 1)
    t = (epoch * steps_per_epoch + step) / total
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    # one-cycle: linear warm-up to lr over the first 30 %, cosine down to lr/1e4 (PyTorch's defaults)
    start, floor = cfg.lr / 25, cfg.lr / 1e4
    if t < 0.3:
        return start + (cfg.lr - start) * t / 0.3
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * (t - 0.3) / 0.7))


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class EvalSet:
    x: torch.Tensor
    y: torch.Tensor


def evaluate_epoch(
    model: nn.Module, cfg: TrainConfig, data: EvalSet, num_classes: int
) -> dict[str, float]:
    """Clean accuracy, robust accuracy per attack, LIGS and logit similarity on the evaluation set."""
    row: dict[str, float] = {}
    specs = cfg.attack_specs()
    correct = 0
    robust = {s.label: 0 for s in specs}
    shifted = 0
    bs = cfg.eval_batch_size
    was_training = model.training
    model.eval()
    try:
        for i in range(0, data.y.shape[0], bs):
            x, y = data.x[i : i + bs], data.y[i : i + bs]
            with torch.no_grad():
                pred = model(x).argmax(1)
            correct += int((pred == y).sum())
            shifted += int((pred == (y + 1) % num_classes).sum())
            for spec in specs:
                x_adv = spec.build(model, seed=cfg.seed)(x, y)
                with torch.no_grad():
                    robust[spec.label] += int((model(x_adv).argmax(1) == y).sum())
        n = data.y.shape[0]
        row["clean_acc"] = correct / n
        if cfg.eval_shifted_labels:
            row["shifted_acc"] = shifted / n
        for label, c in robust.items():
            row[f"robust_acc[{label}]"] = c / n
        if cfg.ligs:
            res = ligs_per_sample(model, data.x, data.y, sigma=cfg.ligs_sigma, seed=cfg.seed, batch_size=bs)
            row["ligs"] = res.ligs
            row["logit_sim"] = res.logit_sim
    finally:
        model.train(was_training)
    return row


# ---------------------------------------------------------------------------------------------
# The run directory


def metrics_columns(cfg: TrainConfig) -> list[str]:
    cols = ["epoch", "lr", "train_loss", "train_acc", "clean_acc"]
    if cfg.eval_shifted_labels:
        cols.append("shifted_acc")
    cols += [f"robust_acc[{s.label}]" for s in cfg.attack_specs()]
    if cfg.ligs:
        cols += ["ligs", "logit_sim"]
    cols += ["epoch_time", "eval_time", "wall_time"]
    return cols


def write_metrics_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a run's metrics.csv as floats (empty cells become NaN)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise NrflabError(f"no {METRICS_FILE} in {run_dir}; is it an nrflab run directory?")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        out.append({k: (float(v) if v not in ("", None) else math.nan) for k, v in r.items()})
    return out


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    from .checkpoint import read_json

    return read_json(Path(run_dir) / CONFIG_FILE, "run config")


def config_differences(run_dir: str | Path, cfg: TrainConfig) -> list[str]:
    """Fields in which ``cfg`` differs from the run's recorded config (epochs and device may differ)."""
    old = read_run_config(run_dir)
    return [k for k, v in cfg.model_dump().items() if k not in ("epochs", "device") and old.get(k) != v]


def run_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The metadata of a run's last complete epoch, or None if it has no checkpoint yet."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    meta = read_metadata(path)
    return {"epoch": int(meta.get("epoch", -1)), "epochs": int(meta.get("epochs", -1)),
            "finished": meta.get("finished") == "1"}


@dataclass
class TrainResult:
    run_dir: Path
    model: NrfModel
    history: list[dict[str, Any]]
    config: TrainConfig


def check_input_fits(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """A dry forward on two blank images, so an arch/norm that cannot take this input size fails with
    one clear line (e.g. InstanceNorm on a 1x1 feature map of 8x8 digits) instead of mid-training."""
    from .attacks import frozen_model

    try:
        with torch.no_grad(), frozen_model(model, "train", keep_buffers=True):  # BN statistics restored
            model(torch.zeros(2, *input_shape))
    except (RuntimeError, ValueError) as exc:
        cfg = getattr(model, "config", None)
        what = f"{cfg.arch} with norm {cfg.norm!r}" if cfg is not None else "the model"
        raise NrflabError(f"{what} cannot take inputs of shape {tuple(input_shape)}: "
                          f"{str(exc).splitlines()[0][:120]}") from None


class NonFiniteLoss(NrflabError):
    """Training diverged (NaN/Inf loss)."""


class Trainer:
    """Trains one model, recording the framework's metrics every epoch; resumable and atomic."""

    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | Path,
        bundle: DatasetBundle | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = print,
    ):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.progress = progress
        self.log = log or (lambda s: None)
        self.device = resolve_device(cfg.device)
        self.bundle = bundle or load_dataset(cfg.dataset, root=cfg.data_root)
        self.specs = cfg.attack_specs()

    # -- setup ------------------------------------------------------------------------------
    def _build_model(self) -> NrfModel:
        b = self.bundle
        model = create_model(
            self.cfg.arch, self.cfg.norm, b.num_classes, b.in_channels, width=self.cfg.width,
            mean=b.mean, std=b.std, init=self.cfg.init, input_shape=b.input_shape, seed=self.cfg.seed,
        )
        check_input_fits(model, b.input_shape)
        model = model.to(self.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _eval_set(self) -> EvalSet:
        x, y = dataset_tensors(self.bundle.test)
        if self.cfg.eval_size is not None and self.cfg.eval_size < y.shape[0]:
            # A fixed, seeded subset: the same images every epoch and across twins.
            idx = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(self.cfg.seed))[: self.cfg.eval_size]
            x, y = x[idx.sort().values], y[idx.sort().values]
        return EvalSet(x.to(self.device), y.to(self.device))

    def _prepare_dir(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        status = None
        if self.out.exists() and not self.out.is_dir():
            raise NrflabError(f"output path {self.out} exists and is not a directory")
        if (self.out / CHECKPOINT_FILE).exists():
            status = run_status(self.out)
            if overwrite:
                for name in (CHECKPOINT_FILE, METRICS_FILE):
                    (self.out / name).unlink(missing_ok=True)
                return None
            if not resume:
                what = "a finished run" if status and status["finished"] else "an unfinished run"
                raise NrflabError(f"{self.out} already holds {what}; pass --resume to continue it or --overwrite to start again")
            changed = config_differences(self.out, self.cfg)
            if changed:
                raise NrflabError(f"cannot resume {self.out}: its config differs in {', '.join(changed)}")
        elif resume and self.out.exists() and any(self.out.iterdir()):
            raise NrflabError(f"cannot resume {self.out}: no {CHECKPOINT_FILE} there")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NrflabError(f"cannot create output directory {self.out}: {exc.strerror}") from None
        return status

    def _write_config(self, model: NrfModel) -> None:
        cfg = self.cfg.model_dump()
        b = self.bundle
        resolved = {
            **cfg,
            "resolved": {
                "dataset": {"name": b.name, "num_classes": b.num_classes, "input_shape": list(b.input_shape),
                            "mean": list(b.mean), "std": list(b.std), "train_size": len(b.train),
                            "test_size": len(b.test), **({"info": b.info} if b.info else {})},
                "device": str(self.device),
                "torch": str(torch.__version__),
                "model": model.config.to_dict(),
                "adversarial_training": dict(zip(("eps", "steps", "step_size"), self.cfg.adversarial_settings()))
                if self.cfg.adv_train != "none" else None,
            },
        }
        atomic_write_json(self.out / CONFIG_FILE, resolved)
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), sort_keys=False))

    # -- checkpointing ----------------------------------------------------------------------
    def _save(self, model: nn.Module, opt: torch.optim.Optimizer, epoch: int, history: list[dict]) -> None:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        opt_state = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, st in opt_state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v) and v.ndim > 0:
                    tensors[f"optim.{pid}.{k}"] = v
                else:
                    scalars.setdefault(str(pid), {})[k] = float(v) if torch.is_tensor(v) else v
        finished = epoch >= self.cfg.epochs
        meta = {
            "epoch": str(epoch),
            "epochs": str(self.cfg.epochs),
            "finished": "1" if finished else "0",
            "history": json.dumps(history),
            "optim_scalars": json.dumps(scalars),
            "optim_groups": json.dumps(opt_state["param_groups"]),
            "nrflab_model_config": json.dumps(model.config.to_dict()),  # type: ignore[union-attr]
        }
        save_model(model, self.out / "model.safetensors", {"epoch": str(epoch)})
        if self.cfg.keep_checkpoints and epoch % self.cfg.keep_checkpoints == 0:
            save_model(model, self.out / "checkpoints" / f"epoch_{epoch:04d}.safetensors", {"epoch": str(epoch)})
        write_metrics_csv(self.out / METRICS_FILE, history, metrics_columns(self.cfg))
        # The checkpoint goes last: it commits the epoch, so "finished" implies every other file is written.
        atomic_save_tensors(self.out / CHECKPOINT_FILE, tensors, meta)

    def _restore(self, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list[dict]]:
        path = self.out / CHECKPOINT_FILE
        tensors = load_tensors(path, "run checkpoint")
        meta = read_metadata(path)
        model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(model_sd)
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v.to(self.device)
        for pid, st in json.loads(meta["optim_scalars"]).items():
            for name, v in st.items():
                state.setdefault(int(pid), {})[name] = torch.tensor(v) if name == "step" else v
        opt.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
        return int(meta["epoch"]), json.loads(meta["history"])

    # -- the loop ---------------------------------------------------------------------------
    def _adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        eps, steps, step = self.cfg.adversarial_settings()
        mode = self.cfg.attack_mode
        targeted = self.cfg.adv_train == "targeted-l2"
        norm = "linf" if self.cfg.adv_train == "pgd-linf" else "l2"
        attack = PGD(model, norm=norm, eps=eps, step_size=step, steps=steps, random_start=not targeted,
                     targeted=targeted, mode=mode, keep_buffers=(mode == "eval"),
                     seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        if targeted:
            target = torch.randint(0, self.bundle.num_classes, (y.shape[0],), generator=gen).to(y.device)
            return attack(x, target)
        return attack(x, y)

    def _train_epoch(self, model: nn.Module, opt: torch.optim.Optimizer, data: TensorData, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        gen = epoch_generator(cfg.seed, epoch)
        perm = torch.randperm(len(data), generator=gen).to(data.labels.device)
        steps = math.ceil(len(data) / cfg.batch_size)
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not self.progress,
                   unit="batch", dynamic_ncols=True)
        for step in bar:
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = data.batch(idx)
            if cfg.augment:
                x = augment_batch(x, gen, flip=cfg.flip)
            if cfg.adv_train != "none":
                x = self._adversarial(model, x, y, gen)
                model.train()
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = lr_at(cfg, epoch, step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
        train_loss = float(loss_sum) / len(data)
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(
                f"training diverged at epoch {epoch + 1} (loss {train_loss}); the last good checkpoint "
                f"(epoch {epoch}) is kept in {self.out}; try a lower --lr"
            )
        return {"train_loss": train_loss, "train_acc": float(correct) / len(data), "lr": lr}

    def run(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        cfg = self.cfg
        self._prepare_dir(resume, overwrite)
        torch.manual_seed(cfg.seed)
        model = self._build_model()
        opt = make_optimizer(cfg, model)
        train = TensorData.from_dataset(self.bundle.train, self.device)
        eval_set = self._eval_set()
        history: list[dict[str, Any]] = []
        start = 0
        if resume and (self.out / CHECKPOINT_FILE).exists():
            start, history = self._restore(model, opt)
            self.log(f"resuming {self.out} after epoch {start}/{cfg.epochs}")
        self._write_config(model)
        t_run = time.perf_counter() - (history[-1]["wall_time"] if history else 0.0)
        if not history:
            t0 = time.perf_counter()
            row = {"epoch": 0, "lr": lr_at(cfg, 0, 0, 1), "train_loss": math.nan, "train_acc": math.nan,
                   **evaluate_epoch(model, cfg, eval_set, self.bundle.num_classes)}
            row.update(epoch_time=0.0, eval_time=time.perf_counter() - t0, wall_time=time.perf_counter() - t_run)
            history.append(row)
            self._save(model, opt, 0, history)
            self.log(self.summary(row))
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            stats = self._train_epoch(model, opt, train, epoch)
            t1 = time.perf_counter()
            row = {"epoch": epoch + 1, **stats, **evaluate_epoch(model, cfg, eval_set, self.bundle.num_classes)}
            row.update(epoch_time=t1 - t0, eval_time=time.perf_counter() - t1, wall_time=time.perf_counter() - t_run)
            history.append(row)
            self._save(model, opt, epoch + 1, history)
            self.log(self.summary(row))
        model.eval()
        return TrainResult(self.out, model, history, cfg)

    def summary(self, row: dict[str, Any]) -> str:
        """The one-line per-epoch summary."""
        parts = [f"[{self.cfg.arch}/{self.cfg.norm}] epoch {int(row['epoch']):>3}/{self.cfg.epochs}"]
        if math.isfinite(row.get("train_loss", math.nan)):
            parts.append(f"loss {row['train_loss']:.3f}")
        parts.append(f"clean {100 * row['clean_acc']:.1f}%")
        for spec in self.specs:
            parts.append(f"{spec.label} {100 * row[f'robust_acc[{spec.label}]']:.1f}%")
        if "shifted_acc" in row:
            parts.append(f"y+1 {100 * row['shifted_acc']:.1f}%")
        if "ligs" in row:
            parts.append(f"LIGS {row['ligs']:.3f}")
        parts.append(f"{row['epoch_time'] + row['eval_time']:.1f}s")
        return "  ".join(parts)


def train_or_reuse(cfg: TrainConfig, out_dir: str | Path, progress: bool = True,
                   log: Callable[[str], None] | None = print, bundle: DatasetBundle | None = None) -> Path:
    """Reuse a finished run of this recipe, resume an interrupted one, or train a new one.

    A run recorded with another recipe is refused by the trainer in one line, never silently reused.
    """
    out_dir = Path(out_dir)
    status = run_status(out_dir)
    if status and status["finished"] and status["epoch"] >= cfg.epochs and not config_differences(out_dir, cfg):
        if log:
            log(f"reusing finished run {out_dir}")
        return out_dir
    train(cfg, out_dir, resume=status is not None, progress=progress, log=log, bundle=bundle)
    return out_dir


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, overwrite: bool = False,
          progress: bool = True, log: Callable[[str], None] | None = print,
          bundle: DatasetBundle | None = None) -> TrainResult:
    """Train one model as ``cfg`` says, writing the run directory ``out_dir``."""
    return Trainer(cfg, out_dir, bundle=bundle, progress=progress, log=log).run(resume=resume, overwrite=overwrite)


__all__ = [
    "ADV_TRAIN_KINDS",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "augment_batch",
    "load_config_file",
    "lr_at",
    "make_config",
    "read_metrics",
    "read_run_config",
    "run_status",
    "train",
    "train_or_reuse",
]

"""Feature datasets of Ilyas et al. and of the paper: D_R, D_NR, D_rand, D_det and the conflicting set.

``build_dataset(kind, source, dataset, out)`` writes a dataset directory (safetensors shards plus a
``dataset.json`` card) that ``load_dataset(out)`` reads like any other dataset. Every builder is one
``nrflab.attacks.PGD`` run: the inversions (D_R, D_NR) descend ``||rep(z) - rep(x_ref)||_2`` from a
different random training image, the targeted builders descend the cross-entropy toward a target class.

Building is sharded and resumable: all randomness of shard ``s`` comes from ``(seed, s)`` only, each
shard is written atomically, so a killed build resumed with ``resume=True`` equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .attacks import PGD
from .checkpoint import atomic_save_tensors, atomic_write_json, read_json, read_metadata, resolve_checkpoint
from .data import DatasetBundle, load_dataset
from .data.built import CARD_FILE, CARD_FORMAT, read_card, shard_name
from .errors import NrflabError
from .metrics import dataset_tensors, model_device
from .training import resolve_device

BUILD_KINDS = ("d_r", "d_nr", "d_rand", "d_det", "conflicting")
INVERSION_KINDS = ("d_r", "d_nr")
TARGETED_KINDS = ("d_rand", "d_det", "conflicting")
LABEL_POLICIES = ("target", "reference", "prediction")
DTYPES = ("uint8", "float16", "float32")

#: The paper's / Ilyas et al.'s settings (CIFAR-10 scale): (steps, eps, step size).
KIND_DEFAULTS: dict[str, tuple[int, float, float]] = {
    "d_r": (1000, 1000.0, 0.1),
    "d_nr": (1000, 1000.0, 0.1),
    "d_rand": (100, 0.5, 0.1),
    "d_det": (100, 0.5, 0.1),
    "conflicting": (100, 0.5, 0.1),
}

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

ShardCallback = Callable[[int, int], None]
"""``on_shard(shard_index, num_shards)``, called after each shard is written."""


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines a built dataset's content (compared when a build is resumed)."""

    kind: str
    steps: int
    eps: float
    step_size: float
    seed: int = 0
    label_policy: str = "target"
    shard_size: int = 1000
    dtype: str = "uint8"
    fake_relu: bool = False
    layer: Optional[str] = None
    limit: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def make_settings(
    kind: str,
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
    """Validated settings: the kind's paper defaults for whatever is not given."""
    kind = str(kind).lower()
    if kind not in BUILD_KINDS:
        raise NrflabError(f"unknown dataset kind {kind!r}; choose one of {', '.join(BUILD_KINDS)}")
    d_steps, d_eps, d_step = KIND_DEFAULTS[kind]
    s = BuildSettings(
        kind=kind,
        steps=int(d_steps if steps is None else steps),
        eps=float(d_eps if eps is None else eps),
        step_size=float(d_step if step_size is None else step_size),
        seed=int(seed),
        label_policy=str(label_policy).lower(),
        shard_size=int(shard_size),
        dtype=str(dtype).lower(),
        fake_relu=bool(fake_relu),
        layer=layer,
        limit=None if limit is None else int(limit),
    )
    if s.steps < 1:
        raise NrflabError(f"steps must be >= 1, got {s.steps}")
    if not (s.eps > 0 and math.isfinite(s.eps)):
        raise NrflabError(f"eps must be a finite number > 0, got {s.eps}")
    if not (s.step_size > 0 and math.isfinite(s.step_size)):
        raise NrflabError(f"step size must be a finite number > 0, got {s.step_size}")
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


# ---------------------------------------------------------------------------------------------
# Source model and representation


@dataclass
class Source:
    """A source model with what the card records about it."""

    model: nn.Module
    info: dict


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_source(source: str | os.PathLike | nn.Module, device: torch.device) -> Source:
    """A checkpoint file, a run directory, or an ``nn.Module`` in eval mode; adversarial training is read
    from the run's config.json when there is one."""
    if isinstance(source, nn.Module):
        cfg = getattr(source, "config", None)
        info = {"path": None, "sha256": None, "module": type(source).__name__,
                "model_config": cfg.to_dict() if hasattr(cfg, "to_dict") else None,
                "adversarially_trained": None, "run_config": None}
        return Source(source.to(device).eval(), info)
    from .checkpoint import load_model

    path = resolve_checkpoint(source)
    model = load_model(path, device)
    run_cfg = None
    cfg_file = path.parent / "config.json"
    if cfg_file.is_file():
        full = read_json(cfg_file, "run config")
        run_cfg = {k: full.get(k) for k in ("dataset", "arch", "norm", "width", "epochs", "seed", "adv_train",
                                            "adv_eps", "adv_steps", "adv_step_size")}
    adv = None if run_cfg is None else run_cfg.get("adv_train", "none") != "none"
    info = {"path": str(path), "sha256": sha256_file(path), "module": type(model).__name__,
            "model_config": model.config.to_dict(), "adversarially_trained": adv, "run_config": run_cfg}
    return Source(model, info)


class Representation:
    """``rep(x)``: the model's penultimate representation (``.features``), or the flattened output of a
    named layer captured by a forward hook (for user modules without ``.features``)."""

    def __init__(self, model: nn.Module, layer: str | None = None, fake_relu: bool = False):
        self.model = model
        self.layer = layer
        self.fake_relu = fake_relu
        self._captured: torch.Tensor | None = None
        if layer is not None:
            modules = dict(model.named_modules())
            if layer not in modules:
                names = ", ".join(n for n in list(modules)[1:12] if n)
                raise NrflabError(f"the model has no layer {layer!r} (layers: {names}, ...)")
            modules[layer].register_forward_hook(self._hook)
        elif not callable(getattr(model, "features", None)):
            raise NrflabError("the source model has no .features(x); give the name of the layer whose output "
                              "is the representation (layer=...)")

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._captured = output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model.features(x, fake_relu=self.fake_relu).flatten(1)
        self._captured = None
        self.model(x)
        if self._captured is None:
            raise NrflabError(f"layer {self.layer!r} was not called in the model's forward pass")
        return self._captured.flatten(1)

    def distance_loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample ``||rep(x) - target||_2``: the PGD loss of the inversions (descended, targeted)."""
        return (self(x) - target).flatten(1).norm(dim=1)


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class BuildInputs:
    """The images a build starts from, their labels and where they come from."""

    images: torch.Tensor  # uint8 or float, N x C x H x W (the whole pool, for random inversion starts)
    labels: torch.Tensor
    source_indices: torch.Tensor  # index into the base dataset's training set
    count: int  # how many samples are built (the first ``count``)
    bundle_info: dict
    base_info: dict | None = None


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def prepare_inputs(settings: BuildSettings, dataset: str | None, data_root: str | None,
                   base: str | os.PathLike | None) -> tuple[BuildInputs, DatasetBundle]:
    """Load the base dataset (or, for the conflicting set, the D_R set given as ``base``)."""
    if settings.kind == "conflicting":
        if base is None:
            raise NrflabError("the conflicting set starts from a D_R set: give its directory with --base")
        from .data.built import load_built_arrays

        card = read_card(base)
        if card["kind"] != "d_r":
            raise NrflabError(f"--base {base} is a {card['kind']} set; the conflicting set needs a d_r set")
        base_name = card["base_dataset"]["name"]
        if dataset is not None and str(dataset).lower() != base_name:
            raise NrflabError(f"--base {base} was built from {base_name!r}, not from {dataset!r}")
        bundle = load_dataset(base_name, root=card["base_dataset"]["root"])
        arrays = load_built_arrays(base)
        root = card["base_dataset"]["root"]
        images, labels, idx = arrays["images"], arrays["labels"], arrays["source_indices"]
        base_info = {"path": str(Path(base).resolve()), "kind": card["kind"], "num_images": card["num_images"],
                     "card_sha256": sha256_file(Path(base) / CARD_FILE), "label_policy": card["label_policy"]}
    else:
        if base is not None:
            raise NrflabError("--base is only for the conflicting set")
        if dataset is None:
            raise NrflabError("give the base dataset (--dataset)")
        bundle = load_dataset(dataset, root=data_root)
        if bundle.info.get("base_dataset"):
            raise NrflabError(f"{dataset} is itself a built dataset; build from a base dataset such as mnist5k")
        images, labels = _train_tensors(bundle)
        idx = torch.arange(labels.shape[0])
        root, base_info = data_root, None
    n = labels.shape[0] if settings.limit is None else min(settings.limit, labels.shape[0])
    info = {"name": bundle.name, "root": None if root is None else str(root), "num_classes": bundle.num_classes,
            "input_shape": list(bundle.input_shape), "mean": list(bundle.mean), "std": list(bundle.std),
            "train_size": len(bundle.train)}
    return BuildInputs(images, labels.long(), idx.long(), n, info, base_info), bundle


def _train_tensors(bundle: DatasetBundle) -> tuple[torch.Tensor, torch.Tensor]:
    train = bundle.train
    if hasattr(train, "images") and hasattr(train, "labels"):
        return train.images, train.labels
    return dataset_tensors(train)


def check_fits(model: nn.Module, bundle: DatasetBundle, sample: torch.Tensor) -> None:
    """Refuse a source model whose classes or input shape do not match the dataset."""
    cfg = getattr(model, "config", None)
    shape = tuple(getattr(cfg, "input_shape", None) or ())
    channels = getattr(cfg, "in_channels", bundle.input_shape[0])
    if cfg is not None and (cfg.num_classes != bundle.num_classes or channels != bundle.input_shape[0]
                            or (shape and shape != tuple(bundle.input_shape))):
        raise NrflabError(
            f"the source model ({cfg.num_classes} classes, input {shape or 'any'}) does not fit dataset "
            f"{bundle.name!r} ({bundle.num_classes} classes, input {tuple(bundle.input_shape)})")
    with torch.no_grad():
        try:
            out = model(sample)
        except RuntimeError as exc:
            raise NrflabError(f"the source model cannot take {bundle.name!r} images "
                              f"{tuple(bundle.input_shape)}: {str(exc).splitlines()[0][:120]}") from None
    if out.ndim != 2 or out.shape[1] != bundle.num_classes:
        raise NrflabError(f"the source model outputs {tuple(out.shape[1:])} values per image; dataset "
                          f"{bundle.name!r} has {bundle.num_classes} classes")


# ---------------------------------------------------------------------------------------------
# One shard


def shard_generator(seed: int, shard: int) -> torch.Generator:
    """The only randomness of a shard: a generator keyed by (seed, shard index)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(shard)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def quantize(x: torch.Tensor, dtype: str) -> torch.Tensor:
    """Images as stored: uint8 rounds to the nearest 1/255; float16/float32 keep more of the perturbation."""
    if dtype == "uint8":
        return (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.clamp(0, 1).to(torch.float16 if dtype == "float16" else torch.float32)


class ShardBuilder:
    """Builds shards: one PGD run per batch, then the stored images' labels and sanity counts."""

    def __init__(self, settings: BuildSettings, model: nn.Module, inputs: BuildInputs, num_classes: int,
                 batch_size: int):
        self.s = settings
        self.model = model
        self.inputs = inputs
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.device = model_device(model)
        self.rep = Representation(model, settings.layer, settings.fake_relu) if settings.kind in INVERSION_KINDS else None
        loss = self.rep.distance_loss if self.rep is not None else None
        self.attack = PGD(model, norm="l2", eps=settings.eps, step_size=settings.step_size, steps=settings.steps,
                          targeted=True, loss_fn=loss, seed=settings.seed)

    def plan(self, shard: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the built samples, per-sample draw): start images for inversions, targets otherwise."""
        s, n_pool = self.s, self.inputs.labels.shape[0]
        lo, hi = shard * s.shard_size, min((shard + 1) * s.shard_size, self.inputs.count)
        idx = torch.arange(lo, hi)
        gen = shard_generator(s.seed, shard)
        y = self.inputs.labels[idx]
        if s.kind in INVERSION_KINDS:
            if n_pool < 2:
                raise NrflabError("the inversions need at least two training images (a different start image)")
            start = torch.randint(0, n_pool - 1, (len(idx),), generator=gen)
            return idx, start + (start >= idx).long()  # a different image than the reference
        if s.kind == "d_rand":
            return idx, torch.randint(0, self.num_classes, (len(idx),), generator=gen)
        return idx, (y + 1) % self.num_classes

    def build(self, shard: int, bar: tqdm | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        idx, draw = self.plan(shard)
        out: dict[str, list[torch.Tensor]] = {"images": [], "labels": [], "orig_labels": [], "targets": [],
                                               "source_indices": []}
        if self.rep is not None:
            out["start_indices"] = []
        stats = {"n": 0, "label_agreement": 0, "on_target": 0, "on_original": 0, "dist_before": 0.0,
                 "dist_after": 0.0, "ref_norm": 0.0}
        for b in range(0, len(idx), self.batch_size):
            bi, bd = idx[b : b + self.batch_size], draw[b : b + self.batch_size]
            y = self.inputs.labels[bi]
            x = _as_float(self.inputs.images[bi]).to(self.device)
            if self.rep is not None:
                start = _as_float(self.inputs.images[bd]).to(self.device)
                with torch.no_grad():
                    target_rep = self.rep(x)
                x_new = self.attack(start, target_rep)
                stored = quantize(x_new, self.s.dtype)
                with torch.no_grad():
                    before = (self.rep(start) - target_rep).norm(dim=1)
                    after = (self.rep(_as_float(stored)) - target_rep).norm(dim=1)
                stats["dist_before"] += float(before.sum())
                stats["dist_after"] += float(after.sum())
                stats["ref_norm"] += float(target_rep.norm(dim=1).sum())
                target = y
                out["start_indices"].append(self.inputs.source_indices[bd])
            else:
                target = bd
                stored = quantize(self.attack(x, target.to(self.device)), self.s.dtype)
            with torch.no_grad():
                pred = self.model(_as_float(stored)).argmax(1).cpu()
            labels = {"target": target, "reference": y, "prediction": pred}[self.s.label_policy]
            stats["n"] += len(bi)
            stats["label_agreement"] += int((pred == labels).sum())
            stats["on_target"] += int((pred == target).sum())
            stats["on_original"] += int((pred == y).sum())
            out["images"].append(stored.cpu())
            out["labels"].append(labels)
            out["orig_labels"].append(y)
            out["targets"].append(target)
            out["source_indices"].append(self.inputs.source_indices[bi])
            if bar is not None:
                bar.update(len(bi))
        tensors = {k: torch.cat(v) for k, v in out.items()}
        return {k: (v if k == "images" else v.long()) for k, v in tensors.items()}, stats


# ---------------------------------------------------------------------------------------------
# The build


@dataclass
class BuildResult:
    out_dir: Path
    card: dict
    built_shards: list[int] = field(default_factory=list)


def _identity(settings: BuildSettings, inputs: BuildInputs, source: Source) -> dict:
    """What a resumed build must match."""
    return {"settings": settings.to_dict(), "base_dataset": inputs.bundle_info["name"],
            "source_sha256": source.info["sha256"], "base_set": (inputs.base_info or {}).get("card_sha256")}


def _prepare_out(out: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NrflabError(f"output path {out} exists and is not a directory")
    card_path = out / CARD_FILE
    if out.is_dir() and any(out.iterdir()):
        if overwrite:
            for p in list(out.glob("shard_*.safetensors")) + [card_path]:
                p.unlink(missing_ok=True)
        elif not card_path.exists():
            raise NrflabError(f"{out} is not empty and holds no built dataset; choose an empty directory or "
                              "pass --overwrite")
        elif not resume:
            raise NrflabError(f"{out} already holds a built dataset; pass --resume to continue it or "
                              "--overwrite to build again")
        else:
            old = read_json(card_path, "dataset card").get("identity", {})
            changed = sorted(k for k in set(old) | set(identity) if k != "settings" and old.get(k) != identity.get(k))
            changed += sorted(f"settings.{k}" for k in identity["settings"]
                              if old.get("settings", {}).get(k) != identity["settings"][k])
            if changed:
                raise NrflabError(f"cannot resume {out}: it was built with different {', '.join(changed)}; "
                                  "pass --overwrite to build again")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NrflabError(f"cannot create output directory {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise NrflabError(f"output directory {out} is not writable")


def _existing_shard_stats(path: Path, digest: str, expected: int) -> dict | None:
    """The stats of a complete shard from this build, or None (missing, corrupt, other settings)."""
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
    except NrflabError:
        return None
    if meta.get("settings_digest") != digest or int(meta.get("num_images", -1)) != expected:
        return None
    return json.loads(meta["stats"])


def _summarize(kind: str, stats: list[dict]) -> dict:
    n = sum(s["n"] for s in stats)
    agg = {k: sum(s[k] for s in stats) for k in stats[0]} if stats else {}
    out = {"num_images": n, "source_acc_vs_stored_labels": agg["label_agreement"] / n,
           "source_acc_vs_original_labels": agg["on_original"] / n}
    if kind in INVERSION_KINDS:
        out.update(mean_rep_distance_before=agg["dist_before"] / n, mean_rep_distance_after=agg["dist_after"] / n,
                   mean_rep_norm=agg["ref_norm"] / n,
                   relative_rep_distance_after=agg["dist_after"] / max(agg["dist_before"], 1e-12))
    else:
        out["attack_success_rate"] = agg["on_target"] / n
    return out


def build_dataset(
    kind: str,
    source: str | os.PathLike | nn.Module,
    dataset: str | None,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    base: str | os.PathLike | None = None,
    steps: int | None = None,
    eps: float | None = None,
    step_size: float | None = None,
    seed: int = 0,
    label_policy: str = "target",
    shard_size: int = 1000,
    dtype: Literal["uint8", "float16", "float32"] = "uint8",
    fake_relu: bool = False,
    layer: str | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_shard: ShardCallback | None = None,
    log: Callable[[str], None] | None = print,
) -> BuildResult:
    """Build a feature dataset of ``kind`` from ``source`` (checkpoint, run dir or module) into ``out``.

    ``dataset`` is the base dataset's name (for ``conflicting`` it may be None: the base D_R set's);
    steps/eps/step_size default to the paper's settings of the kind (``KIND_DEFAULTS``). ``layer`` names
    the representation layer of a module without ``.features`` (captured by a forward hook).
    """
    log = log or (lambda s: None)
    settings = make_settings(kind, steps, eps, step_size, seed, label_policy, shard_size, dtype, fake_relu,
                             layer, limit)
    if batch_size < 1:
        raise NrflabError(f"batch size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    inputs, bundle = prepare_inputs(settings, dataset, None if data_root is None else str(data_root), base)
    src = load_source(source, dev)
    check_fits(src.model, bundle, _as_float(inputs.images[:2]).to(dev))
    if settings.kind == "d_r" and src.info["adversarially_trained"] is False:
        log("warning: building d_r from a source that was not adversarially trained (its run config says so)")
    out = Path(out)
    identity = _identity(settings, inputs, src)
    _prepare_out(out, identity, resume, overwrite)
    num_shards = math.ceil(inputs.count / settings.shard_size)
    card = {
        "format": CARD_FORMAT,
        "format_version": 1,
        "kind": settings.kind,
        "description": KIND_DESCRIPTIONS[settings.kind],
        "complete": False,
        "num_images": inputs.count,
        "num_shards": num_shards,
        "shard_size": settings.shard_size,
        "shards": [shard_name(i) for i in range(num_shards)],
        "dtype": settings.dtype,
        "quantization": "images rounded to the nearest 1/255 (part of a small perturbation may be lost); "
        "sanity numbers are measured on the stored images" if settings.dtype == "uint8" else
        f"images stored as {settings.dtype}",
        "label_policy": settings.label_policy,
        "label_policy_doc": LABEL_POLICY_DOC[settings.label_policy],
        "base_dataset": inputs.bundle_info,
        "base_set": inputs.base_info,
        "source": src.info,
        "settings": {**settings.to_dict(), "norm": "l2", "targeted": True, "random_start": False,
                     "clamp": [0.0, 1.0], "batch_size": batch_size,
                     "objective": "||rep(z) - rep(x_ref)||_2 from a different random training image"
                     if settings.kind in INVERSION_KINDS else "cross-entropy toward the target class"},
        "seeds": {"seed": settings.seed, "per_shard": "torch.Generator seeded by SeedSequence([seed, shard])"},
        "tensors": {"images": "N x C x H x W", "labels": "training labels (label policy)",
                    "orig_labels": "the original label y", "targets": "the class aimed at",
                    "source_indices": "index in the base dataset's training set",
                    **({"start_indices": "training image the inversion started from"}
                       if settings.kind in INVERSION_KINDS else {})},
        "identity": identity,
        "nrflab_version": __version__,
        "torch_version": str(torch.__version__),
        "sanity": None,
    }
    atomic_write_json(out / CARD_FILE, card)
    builder = ShardBuilder(settings, src.model, inputs, bundle.num_classes, batch_size)
    digest = settings.digest()
    all_stats: list[dict | None] = [None] * num_shards
    built: list[int] = []
    if resume:
        for i in range(num_shards):
            all_stats[i] = _existing_shard_stats(out / shard_name(i), digest, _shard_len(settings, inputs.count, i))
    done = sum(_shard_len(settings, inputs.count, i) for i in range(num_shards) if all_stats[i] is not None)
    if done:
        log(f"resuming {out}: {sum(s is not None for s in all_stats)}/{num_shards} shards already built")
    with tqdm(total=inputs.count, initial=done, desc=f"build {settings.kind}", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for i in range(num_shards):
            if all_stats[i] is not None:
                continue
            tensors, stats = builder.build(i, bar)
            meta = {"settings_digest": digest, "shard": str(i), "num_images": str(tensors["labels"].shape[0]),
                    "stats": json.dumps(stats)}
            atomic_save_tensors(out / shard_name(i), tensors, meta)
            all_stats[i] = stats
            built.append(i)
            if on_shard is not None:
                on_shard(i, num_shards)
    card["sanity"] = _summarize(settings.kind, [s for s in all_stats if s is not None])
    card["complete"] = True
    atomic_write_json(out / CARD_FILE, card)
    log(f"built {settings.kind}: {inputs.count} images in {num_shards} shard(s) at {out}; "
        + ", ".join(f"{k} {v:.3f}" for k, v in card["sanity"].items() if isinstance(v, float)))
    return BuildResult(out, card, built)


def _shard_len(settings: BuildSettings, count: int, shard: int) -> int:
    return min(settings.shard_size, count - shard * settings.shard_size)


__all__ = [
    "BUILD_KINDS",
    "BuildResult",
    "BuildSettings",
    "KIND_DEFAULTS",
    "LABEL_POLICIES",
    "Representation",
    "build_dataset",
    "load_source",
    "make_settings",
    "quantize",
    "shard_generator",
]

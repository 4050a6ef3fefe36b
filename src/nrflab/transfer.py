"""Transferability of adversarial examples between models, and the paper's transfer boosts.

``transfer_matrix`` crafts adversarial examples once per source model (cached as safetensors in the
output directory) and evaluates every target on them. Two numbers per (source, target) pair:

* **target accuracy**: the target's accuracy (against the true labels) on all transferred examples;
* **transfer success**: among the *eligible* examples -- those the source classifies correctly when
  clean and the attack fools on the source (untargeted: source prediction != label; targeted: source
  predicts the target class), and that the target classifies correctly when clean -- the fraction the
  target gets wrong (untargeted) or assigns to the target class (targeted).

The boosts (paper claim 6: robust features transfer better): take the source's no-BN twin
(``find_no_bn_twin``), an early-stopped checkpoint of the source (``EarlyStop``), or both.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from .attacks import Attack, AttackSpec, frozen_model, parse_attack
from .checkpoint import MODEL_FILE, load_model, load_model_config, load_tensors, read_metadata
from .io import atomic_save_tensors, atomic_write_json, atomic_write_text, read_json
from .stats import Z95, mean_ci, wilson
from .data import DatasetBundle
from .errors import NrflabError
from .metrics import dataset_tensors
from .rundir import RunDir
from .training import read_metrics, read_run_config

CONFIG_FILE = RunDir.CONFIG

TargetPolicy = Literal["next", "random"]
BOOSTS = ("none", "no-bn-twin", "early-stop", "both")

DEFINITIONS = {
    "target_accuracy": "the target's accuracy (true labels) on all adversarial examples crafted on the source",
    "eligible": "examples the source classifies correctly when clean, that fool the source after the attack "
                "(untargeted: source prediction != true label; targeted: source predicts the target class), "
                "and that the target classifies correctly when clean",
    "transfer_success": "among eligible examples, the fraction on which the target is fooled too (untargeted: "
                        "target prediction != true label; targeted: target predicts the target class)",
    "whitebox_success": "among examples the source classifies correctly when clean, the fraction the attack "
                        "fools on the source itself",
    "target_policy": "targeted attacks aim at (y+1) mod C ('next') or at a class drawn uniformly from the C-1 "
                     "wrong classes with the run's seed ('random')",
    "ci": "95 % Wilson intervals for proportions; for group averages over seeds, a t-interval across models",
    "self_pairs": "a model is its own target when both come from the same run directory or file (e.g. an "
                  "early-stopped checkpoint and the final model of one run); such pairs are in the matrix "
                  "but left out of averages unless include_self=True",
}


# ---------------------------------------------------------------------------------------------
# Models: run directories, checkpoints of any kept epoch, or user modules


@dataclass
class NamedModel:
    """A user ``nn.Module`` entering a transfer matrix under ``name`` (and a grouping key)."""

    name: str
    module: nn.Module
    group: str | None = None


@dataclass
class ModelRef:
    """A resolved source or target: where its weights are, its name, group and provenance."""

    name: str
    group: str
    origin: str
    path: Path | None = None
    epoch: int | None = None
    run_dir: Path | None = None
    module: nn.Module | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        if self.module is not None:
            return self.module.to(device)
        assert self.path is not None
        return load_model(self.path, device)

    @property
    def fingerprint(self) -> str:
        """A content hash of the weights: cached results are reused only for the same weights."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=12)
            if self.module is not None:
                h.update(type(self.module).__name__.encode())
                for k, v in self.module.state_dict().items():
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
            else:
                h.update(Path(self.path).read_bytes())  # type: ignore[arg-type]
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "origin": self.origin,
                "path": str(self.path) if self.path else None, "epoch": self.epoch,
                "run_dir": str(self.run_dir) if self.run_dir else None}


ModelLike = Union[str, Path, NamedModel, ModelRef]
GroupKeys = Sequence[str]


def checkpoint_of_epoch(run_dir: str | Path, epoch: int) -> Path:
    """The model file of epoch ``epoch`` of a run (a kept checkpoint, or the final model for the last epoch)."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / f"epoch_{int(epoch):04d}.safetensors"
    if path.is_file():
        return path
    final = run_dir / MODEL_FILE
    if final.is_file() and read_metadata(final).get("epoch") == str(int(epoch)):
        return final
    kept = kept_epochs(run_dir)
    have = ", ".join(map(str, kept)) if kept else "none (train with --keep-checkpoints N)"
    raise NrflabError(f"epoch {epoch} of {run_dir} was not kept; kept epochs: {have}")


def kept_epochs(run_dir: str | Path) -> list[int]:
    """Epochs of a run whose model was kept under ``checkpoints/``."""
    folder = Path(run_dir) / "checkpoints"
    found = (re.fullmatch(r"epoch_(\d+)\.safetensors", p.name) for p in folder.glob("epoch_*.safetensors"))
    return sorted(int(m.group(1)) for m in found if m)


def _run_group(run_dir: Path, keys: GroupKeys) -> str:
    try:
        cfg = read_run_config(run_dir)
    except NrflabError:
        return run_dir.name
    return "/".join(str(cfg.get(k)) for k in keys)


def _file_group(path: Path, keys: GroupKeys) -> str:
    cfg = load_model_config(path).to_dict()
    return "/".join(str(cfg.get(k, "?")) for k in keys)


def parse_model_spec(text: str) -> tuple[Path, int | None]:
    """``PATH`` or ``PATH@epoch=K`` -> (path, epoch)."""
    path, sep, rest = str(text).partition("@")
    if not sep:
        return Path(path), None
    m = re.fullmatch(r"(?:epoch=)?(\d+)", rest.strip())
    if not m:
        raise NrflabError(f"bad model spec {text!r}; use RUN_DIR or RUN_DIR@epoch=K")
    return Path(path), int(m.group(1))


def resolve_model(spec: ModelLike, epoch: int | None = None, group_keys: GroupKeys = ("arch", "norm")) -> ModelRef:
    """A ModelRef from a run directory (``run_dir@epoch=K`` for a kept checkpoint), a model file, or a NamedModel.

    ``epoch`` applies to run directories without an explicit ``@epoch``; the group is the run's config
    values at ``group_keys`` (e.g. ``smallcnn/bn``), with ``@eK`` appended for a chosen epoch.
    """
    if isinstance(spec, ModelRef):
        return spec
    if isinstance(spec, NamedModel):
        if not isinstance(spec.module, nn.Module):
            raise NrflabError(f"model {spec.name!r} is not a torch.nn.Module")
        return ModelRef(spec.name, spec.group or spec.name, f"module:{spec.name}", module=spec.module)
    if isinstance(spec, nn.Module):
        raise NrflabError("give a user module as NamedModel(name, module) so it has a name")
    path, at = parse_model_spec(str(spec))
    chosen = at if at is not None else epoch
    if path.is_dir():
        if not (path / MODEL_FILE).is_file() and not (path / CONFIG_FILE).is_file():
            raise NrflabError(f"{path} is not an nrflab run directory (no {MODEL_FILE})")
        group = _run_group(path, group_keys)
        if chosen is None:
            file = path / MODEL_FILE
            if not file.is_file():
                raise NrflabError(f"run {path} has no {MODEL_FILE} yet")
            return ModelRef(path.name, group, str(path.resolve()), file, _file_epoch(file), path)
        file = checkpoint_of_epoch(path, chosen)
        return ModelRef(f"{path.name}@e{chosen}", f"{group}@e{chosen}", str(path.resolve()), file, chosen, path)
    if not path.is_file():
        raise NrflabError(f"model not found: {path}")
    if chosen is not None:
        raise NrflabError(f"@epoch needs a run directory, not the file {path}")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    is_run = (run_dir / CONFIG_FILE).is_file()
    ep = _file_epoch(path)
    name = f"{run_dir.name}@e{ep}" if is_run and path.parent.name == "checkpoints" else path.stem
    group = _run_group(run_dir, group_keys) if is_run else _file_group(path, group_keys)
    origin = str(run_dir.resolve()) if is_run else str(path.resolve())
    return ModelRef(name, group, origin, path, ep, run_dir if is_run else None)


def _file_epoch(path: Path) -> int | None:
    value = read_metadata(path).get("epoch")
    return int(value) if value is not None and value.isdigit() else None


# ---------------------------------------------------------------------------------------------
# Boosts: the no-BN twin, early-stopped checkpoints


TWIN_IGNORED = {"norm", "init", "device", "data_root", "keep_checkpoints", "eval_attacks", "ligs", "ligs_sigma",
                "eval_size", "eval_batch_size", "eval_shifted_labels", "channels_last", "resolved"}
"""Config keys a no-BN twin may differ in; every other key (arch, width, seed, the recipe) must match."""


def find_no_bn_twin(run_dir: str | Path, candidates: Iterable[str | Path]) -> Path:
    """The run among ``candidates`` (run dirs, or folders holding run dirs) identical to ``run_dir`` but norm 'none'.

    A run that already has norm 'none' is its own twin.
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if cfg.get("norm") == "none":
        return run_dir
    mine = {k: v for k, v in cfg.items() if k not in TWIN_IGNORED}
    found = []
    for cand in _candidate_runs(candidates):
        other = read_run_config(cand)
        if other.get("norm") == "none" and {k: v for k, v in other.items() if k not in TWIN_IGNORED} == mine:
            found.append(cand)
    found = sorted({p.resolve(): p for p in found}.values())
    if not found:
        raise NrflabError(f"no no-BN twin of {run_dir} (same arch, width, seed and recipe with norm 'none') "
                          "among the candidate runs; give it explicitly")
    if len(found) > 1:
        raise NrflabError(f"several no-BN twins of {run_dir}: {', '.join(map(str, found))}; give one explicitly")
    return found[0]


def _candidate_runs(candidates: Iterable[str | Path]) -> list[Path]:
    runs = []
    for c in map(Path, candidates):
        if (c / CONFIG_FILE).is_file():
            runs.append(c)
        elif c.is_dir():
            runs.extend(p.parent for p in sorted(c.glob(f"*/{CONFIG_FILE}")))
    return runs


@dataclass(frozen=True)
class EarlyStop:
    """How to pick an early-stopped source checkpoint among a run's kept epochs.

    ``epoch=K``: epoch K. ``frac=X``: the earliest kept epoch whose clean accuracy reaches X times the
    final clean accuracy. ``ligs=F``: the kept epoch with the highest LIGS among those with clean
    accuracy >= F (needs a run trained with LIGS on). Epoch 0 (the untrained model) is never chosen
    by a criterion.
    """

    kind: Literal["epoch", "frac", "ligs"] = "frac"
    value: float = 0.9

    @classmethod
    def parse(cls, text: str) -> "EarlyStop":
        key, sep, value = str(text).partition("=")
        if not sep or key.strip() not in ("epoch", "frac", "ligs"):
            raise NrflabError(f"bad early-stop rule {text!r}; use epoch=K, frac=X (e.g. 0.9) or ligs=FLOOR (e.g. 0.9)")
        try:
            v = float(value)
        except ValueError:
            raise NrflabError(f"bad early-stop value in {text!r}") from None
        if key.strip() != "epoch" and not 0 < v <= 1:
            raise NrflabError(f"early-stop {key.strip()} must be in (0, 1], got {v}")
        return cls(key.strip(), v)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}={int(self.value) if self.kind == 'epoch' else self.value:g}"

    def select(self, run_dir: str | Path) -> int:
        """The chosen epoch of ``run_dir`` (only kept epochs count)."""
        run_dir = Path(run_dir)
        if self.kind == "epoch":
            checkpoint_of_epoch(run_dir, int(self.value))
            return int(self.value)
        kept = set(kept_epochs(run_dir))
        rows = [r for r in read_metrics(run_dir) if int(r["epoch"]) in kept and int(r["epoch"]) > 0]
        if not rows:
            raise NrflabError(f"run {run_dir} kept no checkpoints after epoch 0; train it with --keep-checkpoints N")
        if self.kind == "frac":
            final = read_metrics(run_dir)[-1]["clean_acc"]
            ok = [r for r in rows if r["clean_acc"] >= self.value * final]
            if not ok:
                raise NrflabError(f"no kept epoch of {run_dir} reaches {self.value:g} of its final clean accuracy")
            return int(min(ok, key=lambda r: r["epoch"])["epoch"])
        if not all("ligs" in r and math.isfinite(r["ligs"]) for r in rows):
            raise NrflabError(f"run {run_dir} recorded no LIGS (trained with --no-ligs); use epoch= or frac=")
        ok = [r for r in rows if r["clean_acc"] >= self.value]
        if not ok:
            raise NrflabError(f"no kept epoch of {run_dir} has clean accuracy >= {self.value:g}")
        return int(max(ok, key=lambda r: (r["ligs"], -r["epoch"]))["epoch"])


@dataclass
class Variant:
    """A source as the attacker would use it under one boost: which model, derived from which given source."""

    boost: str
    base: str
    ref: ModelRef


def boost_variants(
    sources: Sequence[ModelRef],
    boost: str = "none",
    candidates: Iterable[str | Path] = (),
    early_stop: EarlyStop = EarlyStop(),
    twins: dict[str, str | Path] | None = None,
    group_keys: GroupKeys = ("arch", "norm"),
) -> list[Variant]:
    """The source variants to compare: always the given source ('none'), plus the boosted ones.

    ``no-bn-twin``: the twin run (from ``twins[source name]`` or found among ``candidates``);
    ``early-stop``: the source's checkpoint chosen by ``early_stop``; ``both``: all four combinations.
    """
    if boost not in BOOSTS:
        raise NrflabError(f"unknown boost {boost!r}; choose one of {', '.join(BOOSTS)}")
    candidates = list(candidates)
    out = []
    for src in sources:
        out.append(Variant("none", src.name, src))
        if boost == "none":
            continue
        if src.run_dir is None:
            raise NrflabError(f"boost {boost!r} needs sources that are run directories; {src.name} is not")
        twin_dir = None
        if boost in ("no-bn-twin", "both"):
            given = (twins or {}).get(src.name)
            twin_dir = Path(given) if given else find_no_bn_twin(src.run_dir, candidates)
            at_epoch = src.epoch if src.path != src.run_dir / MODEL_FILE else None
            out.append(Variant("no-bn-twin", src.name, resolve_model(twin_dir, at_epoch, group_keys)))
        if boost in ("early-stop", "both"):
            out.append(Variant("early-stop", src.name, _early(src.run_dir, early_stop, group_keys)))
        if boost == "both":
            assert twin_dir is not None
            out.append(Variant("both", src.name, _early(twin_dir, early_stop, group_keys)))
    return out


def _early(run_dir: Path, rule: EarlyStop, keys: GroupKeys) -> ModelRef:
    epoch = rule.select(run_dir)
    ref = resolve_model(f"{run_dir}@epoch={epoch}", None, keys)
    return replace(ref, group=_run_group(run_dir, keys) + "@early")


# ---------------------------------------------------------------------------------------------
# The matrix


AttackLike = Union[str, AttackSpec, Callable[[nn.Module], Attack]]


@dataclass
class TransferSettings:
    """Everything that determines the cached numbers, besides the models' weights."""

    attack: str
    targeted: bool
    target_policy: str
    seed: int
    num_samples: int
    data: str

    def diff(self, other: dict[str, Any]) -> list[str]:
        return [k for k, v in asdict(self).items() if other.get(k) != v]


@dataclass
class TransferResult:
    """The matrix: per-source and per-target facts, and one record per (source, target) pair."""

    settings: TransferSettings
    sources: list[dict[str, Any]]
    targets: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    include_self: bool = False
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))

    def pair(self, source: str, target: str) -> dict[str, Any]:
        for p in self.pairs:
            if p["source"] == source and p["target"] == target:
                return p
        raise KeyError((source, target))

    def matrix(self, metric: str = "transfer_success") -> list[list[float]]:
        """Rows = sources, columns = targets, values of ``metric`` (a pair record key)."""
        return [[self.pair(s["name"], t["name"])[metric] for t in self.targets] for s in self.sources]

    def counted(self, p: dict[str, Any]) -> bool:
        return self.include_self or not p["self"]

    def per_source(self, targets: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Each source's mean transfer success and target accuracy over its (non-self) targets, with CIs."""
        rows = []
        for s in self.sources:
            ps = [p for p in self.pairs if p["source"] == s["name"] and self.counted(p)
                  and (targets is None or p["target"] in targets)]
            succ = mean_ci([p["transfer_success"] for p in ps])
            k, n = sum(p["successes"] for p in ps), sum(p["eligible"] for p in ps)
            rows.append({"source": s["name"], "group": s["group"], "targets": len(ps),
                         "mean_success": succ[0], "ci_across_targets": succ[1:],
                         "pooled_success": k / n if n else math.nan, "pooled_ci": wilson(k, n),
                         "mean_target_accuracy": mean_ci([p["target_accuracy"] for p in ps])[0]})
        return rows

    def per_source_group(self) -> list[dict[str, Any]]:
        """Per source group: the mean over its sources (seeds) of each source's average over targets, t-CI."""
        rows = []
        by_group: dict[str, list[dict]] = {}
        for r in self.per_source():
            by_group.setdefault(r["group"], []).append(r)
        for g, rs in by_group.items():
            succ = mean_ci([r["mean_success"] for r in rs])
            acc = mean_ci([r["mean_target_accuracy"] for r in rs])
            rows.append({"group": g, "sources": len(rs), "mean_success": succ[0], "ci": succ[1:],
                         "mean_target_accuracy": acc[0], "target_accuracy_ci": acc[1:]})
        return rows

    def group_matrix(self, metric: str = "transfer_success") -> tuple[list[str], list[str], list[list[dict]]]:
        """Source group x target group cells: mean of ``metric`` over (non-self) pairs with a t-CI across them."""
        sg = list(dict.fromkeys(s["group"] for s in self.sources))
        tg = list(dict.fromkeys(t["group"] for t in self.targets))
        cells = []
        for a in sg:
            row = []
            for b in tg:
                vals = [p[metric] for p in self.pairs if p["source_group"] == a and p["target_group"] == b and self.counted(p)]
                m, lo, hi = mean_ci(vals)
                row.append({"mean": m, "ci": (lo, hi), "pairs": len(vals)})
            cells.append(row)
        return sg, tg, cells

    def to_dict(self) -> dict[str, Any]:
        sg, tg, cells = self.group_matrix()
        return {"definitions": self.definitions, "settings": asdict(self.settings), "include_self": self.include_self,
                "sources": self.sources, "targets": self.targets, "pairs": self.pairs,
                "matrices": {"rows": [s["name"] for s in self.sources], "columns": [t["name"] for t in self.targets],
                             "target_accuracy": self.matrix("target_accuracy"),
                             "transfer_success": self.matrix("transfer_success")},
                "per_source": self.per_source(), "per_source_group": self.per_source_group(),
                "group_matrix": {"rows": sg, "columns": tg, "transfer_success": cells}}


def attack_builder(attack: AttackLike, targeted: bool, seed: int, attack_name: str | None) -> tuple[Callable[[nn.Module], Attack], str]:
    """A factory ``model -> Attack`` and a string naming it (for the settings record)."""
    if isinstance(attack, str):
        attack = parse_attack(attack)
    if isinstance(attack, AttackSpec):
        spec = replace(attack, targeted=True) if targeted else attack
        if spec.targeted != targeted:
            raise NrflabError("the attack spec is targeted but targeted=False was asked; pass targeted=True")
        return (lambda m: spec.build(m, seed=seed)), spec.to_string()
    if callable(attack):
        if not attack_name:
            raise NrflabError("an attack factory needs attack_name (it identifies the attack in cached results)")
        return attack, attack_name
    raise NrflabError(f"attack must be a spec string, an AttackSpec or a factory, got {type(attack).__name__}")


def choose_targets(y: torch.Tensor, num_classes: int, policy: TargetPolicy, seed: int) -> torch.Tensor:
    """Target classes for a targeted attack: (y+1) mod C ('next') or a seeded uniform wrong class ('random')."""
    if policy == "next":
        return (y + 1) % num_classes
    if policy == "random":
        shift = torch.randint(1, num_classes, y.shape, generator=torch.Generator().manual_seed(seed))
        return (y + shift) % num_classes
    raise NrflabError(f"unknown target policy {policy!r}; choose next or random")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "model"


def _data_tensors(data: Any, limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples, or a seeded random subset of ``limit`` (in dataset order): test sets are often sorted by class."""
    if isinstance(data, DatasetBundle):
        data = data.test
    x, y = dataset_tensors(data)
    if limit is not None and limit < y.shape[0]:
        idx = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        x, y = x[idx], y[idx]
    return x.float().contiguous(), y.long().contiguous()


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=12)
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    out = []
    with frozen_model(model, "eval"):
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i : i + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out)


def _probe(ref: ModelRef, model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """The model's class count, checking that it accepts inputs shaped like the data."""
    cfg = getattr(model, "config", None)
    shape = getattr(cfg, "input_shape", None)
    if shape and tuple(shape) != tuple(x.shape[1:]):
        raise NrflabError(f"model {ref.name} expects inputs of shape {tuple(shape)}, the data has {tuple(x.shape[1:])}")
    try:
        with torch.no_grad(), frozen_model(model, "eval"):
            logits = model(x[:1].to(device))
    except RuntimeError as exc:
        raise NrflabError(f"model {ref.name} does not accept inputs of shape {tuple(x.shape[1:])} "
                          f"({str(exc).splitlines()[0][:100]})") from None
    if logits.ndim != 2:
        raise NrflabError(f"model {ref.name} returned an output of shape {tuple(logits.shape)}, not (N, classes)")
    return int(logits.shape[1])


class _Cache:
    """Result files under ``out_dir``: adversarial examples per source, numbers per pair, a manifest."""

    def __init__(self, out_dir: Path, settings: TransferSettings, resume: bool, overwrite: bool, log: Callable[[str], None]):
        self.out, self.settings, self.log = out_dir, settings, log
        self.key = hashlib.blake2b(json.dumps(asdict(settings), sort_keys=True).encode(), digest_size=12).hexdigest()
        manifest = out_dir / "transfer_settings.json"
        if manifest.exists() and not overwrite:
            old = read_json(manifest, "transfer settings")
            changed = settings.diff(old)
            if changed:
                raise NrflabError(f"{out_dir} holds transfer results made with other settings (changed: "
                                  f"{', '.join(changed)}); use another output directory or --overwrite")
            if not resume:
                raise NrflabError(f"{out_dir} already holds transfer results; pass --resume to reuse them "
                                  "or --overwrite to recompute")
        elif manifest.exists():
            self.log(f"overwriting the transfer results in {out_dir}")
        self.overwrite = overwrite
        atomic_write_json(manifest, asdict(settings))

    def adv_path(self, ref: ModelRef) -> Path:
        return self.out / "adversarial" / f"{_slug(ref.name)}.safetensors"

    def pair_path(self, src: ModelRef, tgt: ModelRef) -> Path:
        return self.out / "pairs" / f"{_slug(src.name)}__{_slug(tgt.name)}.json"

    def load_adv(self, ref: ModelRef) -> dict[str, torch.Tensor] | None:
        path = self.adv_path(ref)
        if self.overwrite or not path.exists():
            return None
        meta = read_metadata(path)
        if meta.get("settings") != self.key or meta.get("source") != ref.fingerprint:
            self.log(f"source {ref.name} or the settings changed since {path.name} was written: crafting again")
            return None
        return load_tensors(path, "adversarial examples")

    def save_adv(self, ref: ModelRef, tensors: dict[str, torch.Tensor]) -> None:
        atomic_save_tensors(self.adv_path(ref), tensors, {"settings": self.key, "source": ref.fingerprint,
                                                          "source_name": ref.name})

    def load_pair(self, src: ModelRef, tgt: ModelRef) -> dict[str, Any] | None:
        path = self.pair_path(src, tgt)
        if self.overwrite or not path.exists():
            return None
        rec = read_json(path, "pair result")
        if rec.get("_key") != [self.key, src.fingerprint, tgt.fingerprint]:
            self.log(f"{src.name} -> {tgt.name}: a model or the settings changed; evaluating again")
            return None
        return {k: v for k, v in rec.items() if k != "_key"}

    def save_pair(self, src: ModelRef, tgt: ModelRef, rec: dict[str, Any]) -> None:
        atomic_write_json(self.pair_path(src, tgt), {**rec, "_key": [self.key, src.fingerprint, tgt.fingerprint]})


def transfer_matrix(
    sources: Sequence[ModelLike],
    targets: Sequence[ModelLike],
    data: Any,
    attack: AttackLike,
    out_dir: str | Path,
    *,
    targeted: bool = False,
    target_policy: TargetPolicy = "next",
    attack_name: str | None = None,
    source_epoch: int | None = None,
    group_keys: GroupKeys = ("arch", "norm"),
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    include_self: bool = False,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> TransferResult:
    """Craft adversarial examples on each source once and evaluate every target on them.

    ``data``: (x, y) tensors, a Dataset or a DatasetBundle (its test set); ``limit`` takes a subset of that
    many samples drawn with ``seed``.
    ``attack``: a spec (``"pgd-linf:eps=0.1,steps=10"``), an AttackSpec, or a factory ``model -> Attack``
    (then ``attack_name`` identifies it). ``targeted`` aims at classes chosen by ``target_policy``.
    Per pair: target accuracy on all transferred examples, and transfer success on eligible examples
    (see ``DEFINITIONS``). Results are cached under ``out_dir`` (``adversarial/<source>.safetensors``,
    ``pairs/<source>__<target>.json``); with ``resume`` a rerun under the same settings reuses them,
    other settings are refused unless ``overwrite``.
    """
    log = log or (lambda s: None)
    if not sources:
        raise NrflabError("no source models given")
    if not targets:
        raise NrflabError("no target models given")
    src_refs = [resolve_model(s, source_epoch, group_keys) for s in sources]
    tgt_refs = [resolve_model(t, None, group_keys) for t in targets]
    for kind, refs in (("source", src_refs), ("target", tgt_refs)):
        names = [r.name for r in refs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise NrflabError(f"two {kind}s are named {dup[0]!r}; names must be unique")
    dev = torch.device(device)
    x, y = _data_tensors(data, limit, seed)
    make_attack, attack_text = attack_builder(attack, targeted, seed, attack_name)
    settings = TransferSettings(attack_text, targeted, target_policy if targeted else "none", seed, int(y.shape[0]),
                                _digest(x, y))
    out = Path(out_dir)
    cache = _Cache(out, settings, resume, overwrite, log)

    num_classes = _check_models(src_refs, tgt_refs, x, y, dev)
    t = choose_targets(y, num_classes, target_policy, seed) if targeted else y

    adv: dict[str, dict[str, torch.Tensor]] = {}
    source_info = []
    for ref in tqdm(src_refs, desc="crafting on sources", disable=not progress, unit="source"):
        rec = cache.load_adv(ref)
        if rec is None:
            rec = _craft(ref, make_attack, x, y, t, batch_size, dev, progress)
            cache.save_adv(ref, rec)
        adv[ref.name] = rec
        source_info.append({**ref.describe(), **_source_stats(rec, y, t, targeted)})

    target_info, pairs = [], []
    bar = tqdm(total=len(src_refs) * len(tgt_refs), desc="evaluating targets", disable=not progress, unit="pair")
    for tref in tgt_refs:
        model, clean_pred = None, None
        for sref in src_refs:
            rec = cache.load_pair(sref, tref)
            if rec is None:
                if model is None:
                    model = tref.load(dev)
                    clean_pred = _predict(model, x, batch_size, dev)
                adv_pred = _predict(model, adv[sref.name]["x_adv"], batch_size, dev)
                rec = _pair_numbers(adv[sref.name], clean_pred, adv_pred, y, t, targeted)
                rec.update(source=sref.name, target=tref.name, source_group=sref.group, target_group=tref.group,
                           self=sref.origin == tref.origin)
                cache.save_pair(sref, tref, rec)
            pairs.append(rec)
            bar.update(1)
        first = next(p for p in pairs if p["target"] == tref.name)
        target_info.append({**tref.describe(), "clean_accuracy": first["target_clean_accuracy"],
                            "clean_correct": first["target_clean_correct"]})
        del model
    bar.close()
    for s in source_info:
        if s["fooled"] == 0:
            log(f"warning: the attack fooled source {s['name']} on no example; its transfer success is undefined")
    for tinfo in target_info:
        if tinfo["clean_correct"] == 0:
            log(f"warning: target {tinfo['name']} classifies no clean example correctly; it has no eligible examples")
    return TransferResult(settings, source_info, target_info, pairs, include_self)


def _check_models(src: list[ModelRef], tgt: list[ModelRef], x: torch.Tensor, y: torch.Tensor, dev: torch.device) -> int:
    """One class count and input shape for all models and the data; returns the class count."""
    counts: dict[str, int] = {}
    for ref in [*src, *tgt]:
        if ref.name in counts:
            continue
        model = ref.load(dev)
        counts[ref.name] = _probe(ref, model, x, dev)
        del model
    first = next(iter(counts))
    for name, c in counts.items():
        if c != counts[first]:
            raise NrflabError(f"model {name} has {c} classes but {first} has {counts[first]}; "
                              "sources and targets must share the label set")
    c = counts[first]
    if int(y.max()) >= c:
        raise NrflabError(f"the data has label {int(y.max())} but the models have {c} classes")
    return c


def _craft(ref: ModelRef, make_attack: Callable[[nn.Module], Attack], x: torch.Tensor, y: torch.Tensor,
           t: torch.Tensor, batch_size: int, dev: torch.device, progress: bool) -> dict[str, torch.Tensor]:
    model = ref.load(dev)
    atk = make_attack(model)
    xs = []
    for i in tqdm(range(0, x.shape[0], batch_size), desc=f"attack {ref.name}", leave=False, disable=not progress):
        xs.append(atk(x[i : i + batch_size].to(dev), t[i : i + batch_size].to(dev)).cpu())
    x_adv = torch.cat(xs)
    return {"x_adv": x_adv, "y": y.clone(), "t": t.clone(), "source_clean_pred": _predict(model, x, batch_size, dev),
            "source_adv_pred": _predict(model, x_adv, batch_size, dev)}


def _fooled(pred: torch.Tensor, y: torch.Tensor, t: torch.Tensor, targeted: bool) -> torch.Tensor:
    return pred == t if targeted else pred != y


def _source_stats(rec: dict[str, torch.Tensor], y: torch.Tensor, t: torch.Tensor, targeted: bool) -> dict[str, Any]:
    correct = rec["source_clean_pred"] == y
    fooled = correct & _fooled(rec["source_adv_pred"], y, t, targeted)
    n, k = int(correct.sum()), int(fooled.sum())
    return {"clean_accuracy": float(correct.float().mean()), "clean_correct": n, "fooled": k,
            "whitebox_success": k / n if n else math.nan, "whitebox_ci": wilson(k, n),
            "robust_accuracy": float((rec["source_adv_pred"] == y).float().mean())}


def _pair_numbers(rec: dict[str, torch.Tensor], clean_pred: torch.Tensor, adv_pred: torch.Tensor, y: torch.Tensor,
                  t: torch.Tensor, targeted: bool) -> dict[str, Any]:
    src_fooled = (rec["source_clean_pred"] == y) & _fooled(rec["source_adv_pred"], y, t, targeted)
    tgt_correct = clean_pred == y
    eligible = src_fooled & tgt_correct
    success = eligible & _fooled(adv_pred, y, t, targeted)
    n, k, m = int(eligible.sum()), int(success.sum()), int(y.shape[0])
    acc = int((adv_pred == y).sum())
    return {"target_clean_accuracy": float(tgt_correct.float().mean()), "target_clean_correct": int(tgt_correct.sum()),
            "target_accuracy": acc / m, "target_accuracy_ci": list(wilson(acc, m)),
            "eligible": n, "successes": k, "transfer_success": k / n if n else math.nan,
            "transfer_success_ci": list(wilson(k, n))}


# ---------------------------------------------------------------------------------------------
# Boost comparison and outputs


def boost_comparison(result: TransferResult, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """Per given source and boost: mean transfer success over a common target set (no self pairs for any variant)."""
    rows = []
    by_base: dict[str, list[Variant]] = {}
    for v in variants:
        by_base.setdefault(v.base, []).append(v)
    origins = {r["name"]: r["origin"] for r in result.sources}
    for base, vs in by_base.items():
        mine = {origins[v.ref.name] for v in vs}
        common = [tg["name"] for tg in result.targets if tg["origin"] not in mine or result.include_self]
        per = {r["source"]: r for r in result.per_source(common)}
        base_rate = per[vs[0].ref.name]["mean_success"]
        for v in vs:
            r = per[v.ref.name]
            rows.append({"source": base, "boost": v.boost, "model": v.ref.name, "epoch": v.ref.epoch,
                         "targets": r["targets"], "mean_success": r["mean_success"], "pooled_ci": r["pooled_ci"],
                         "gain": r["mean_success"] - base_rate, "mean_target_accuracy": r["mean_target_accuracy"]})
    return rows


def fmt_pct(v: float, digits: int = 1) -> str:
    """A proportion as a percentage number (``n/a`` when undefined), for tables."""
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f}"


def fmt_ci(ci: Sequence[float]) -> str:
    """A confidence interval as ``[lo, hi]`` in percent, or empty when undefined."""
    lo, hi = ci
    return "" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{fmt_pct(lo)}, {fmt_pct(hi)}]"


def summary_markdown(result: TransferResult, boosts: Sequence[dict[str, Any]] = ()) -> str:
    """A short Markdown summary: definitions, the matrix, per-source averages with CIs, boost effects."""
    from .report import markdown_table

    d = result.definitions
    s = result.settings
    lines = [f"Attack `{s.attack}` ({'targeted, ' + s.target_policy if s.targeted else 'untargeted'}), "
             f"{s.num_samples} test images, seed {s.seed}.", "",
             f"- **Target accuracy**: {d['target_accuracy']}.",
             f"- **Eligible examples**: {d['eligible']}.",
             f"- **Transfer success**: {d['transfer_success']}.",
             f"- **Self pairs**: {d['self_pairs']}.", f"- **Intervals**: {d['ci']}.", "",
             "### Sources (white-box)", "",
             markdown_table(["source", "group", "clean acc %", "white-box success %", "95 % CI", "fooled"],
                            [[r["name"], r["group"], fmt_pct(r["clean_accuracy"]), fmt_pct(r["whitebox_success"]),
                              fmt_ci(r["whitebox_ci"]), r["fooled"]] for r in result.sources]), "",
             "### Targets (clean)", "",
             markdown_table(["target", "group", "clean acc %", "clean correct"],
                            [[r["name"], r["group"], fmt_pct(r["clean_accuracy"]), r["clean_correct"]] for r in result.targets]),
             "", "### Transfer success % (rows: sources, columns: targets; * = self pair)", "",
             markdown_table(["source \\ target", *[t["name"] for t in result.targets]],
                            [[sr["name"], *[_cell(result.pair(sr["name"], t["name"])) for t in result.targets]]
                             for sr in result.sources]), "",
             "### Target accuracy % on the transferred examples", "",
             markdown_table(["source \\ target", *[t["name"] for t in result.targets]],
                            [[sr["name"], *[fmt_pct(result.pair(sr["name"], t["name"])["target_accuracy"]) for t in result.targets]]
                             for sr in result.sources]), "",
             "### Per-source average over targets", "",
             markdown_table(["source", "group", "targets", "mean success %", "pooled %", "pooled 95 % CI",
                             "mean target acc %"],
                            [[r["source"], r["group"], r["targets"], fmt_pct(r["mean_success"]), fmt_pct(r["pooled_success"]),
                              fmt_ci(r["pooled_ci"]), fmt_pct(r["mean_target_accuracy"])] for r in result.per_source()]), "",
             "### Per source group (mean over seeds of the per-source average)", "",
             markdown_table(["source group", "sources", "mean success %", "95 % CI (t)", "mean target acc %"],
                            [[r["group"], r["sources"], fmt_pct(r["mean_success"]), fmt_ci(r["ci"]),
                              fmt_pct(r["mean_target_accuracy"])] for r in result.per_source_group()])]
    if boosts:
        lines += ["", "### Boosts (same targets for every variant of a source)", "",
                  markdown_table(["source", "boost", "model used", "targets", "mean success %", "pooled 95 % CI",
                                  "gain (points)"],
                                 [[r["source"], r["boost"], r["model"], r["targets"], fmt_pct(r["mean_success"]),
                                   fmt_ci(r["pooled_ci"]), f"{100 * r['gain']:+.1f}" if math.isfinite(r["gain"]) else "n/a"]
                                  for r in boosts]), "", boost_verdict(boosts)]
    return "\n".join(lines) + "\n"


def _cell(p: dict[str, Any]) -> str:
    return f"{fmt_pct(p['transfer_success'])} ({p['eligible']}){'*' if p['self'] else ''}"


def boost_verdict(boosts: Sequence[dict[str, Any]]) -> str:
    """Which boost helped: the mean gain over sources per boost, and on how many sources it helped."""
    out = []
    for b in dict.fromkeys(r["boost"] for r in boosts if r["boost"] != "none"):
        gains = [r["gain"] for r in boosts if r["boost"] == b and math.isfinite(r["gain"])]
        if not gains:
            continue
        m, lo, hi = mean_ci(gains, proportion=False)
        helped = sum(g > 0 for g in gains)
        word = "helped" if m > 0 else "did not help"
        out.append(f"- **{b}** {word}: mean gain {100 * m:+.1f} points {fmt_ci((lo, hi)).replace('[', '(95 % CI [').replace(']', '])') if math.isfinite(lo) else ''}"
                   f", higher success for {helped}/{len(gains)} sources.")
    return "\n".join(out) if out else "No boost was compared."


def write_outputs(result: TransferResult, out_dir: str | Path, boosts: Sequence[dict[str, Any]] = ()) -> dict[str, Path]:
    """Write transfer.json, pairs.csv, matrix CSVs, the two heat maps (PNG+SVG) and summary.md."""
    from .plots import plot_heatmap

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    record = {**result.to_dict(), "boosts": list(boosts)}
    atomic_write_json(out / "transfer.json", _jsonable(record))
    paths["json"] = out / "transfer.json"
    cols = ["source", "target", "source_group", "target_group", "self", "target_clean_accuracy",
            "target_accuracy", "eligible", "successes", "transfer_success", "transfer_success_ci"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for p in result.pairs:
        w.writerow([_csv(p[c]) for c in cols])
    atomic_write_text(out / "pairs.csv", buf.getvalue())
    paths["pairs_csv"] = out / "pairs.csv"
    rows, colnames = [s["name"] for s in result.sources], [t["name"] for t in result.targets]
    for metric in ("transfer_success", "target_accuracy"):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["source", *colnames])
        for r, vals in zip(rows, result.matrix(metric)):
            w.writerow([r, *[_csv(v) for v in vals]])
        atomic_write_text(out / f"matrix_{metric}.csv", buf.getvalue())
        paths[f"{metric}_csv"] = out / f"matrix_{metric}.csv"
        title = {"transfer_success": "transfer success % (eligible examples)",
                 "target_accuracy": "target accuracy % on transferred examples"}[metric]
        paths[f"{metric}_png"] = plot_heatmap(result.matrix(metric), rows, colnames, out / f"heatmap_{metric}", title=title)[0]
    atomic_write_text(out / "summary.md", "# Transfer\n\n" + summary_markdown(result, boosts))
    paths["summary"] = out / "summary.md"
    return paths


def _csv(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if isinstance(v, (tuple, list)):
        return " ".join(_csv(x) for x in v)
    return str(v)


def _jsonable(obj: Any) -> Any:
    """NaN -> None (strict JSON), tuples -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def run_transfer(
    sources: Sequence[ModelLike],
    targets: Sequence[ModelLike],
    data: Any,
    attack: AttackLike,
    out_dir: str | Path,
    *,
    boost: str = "none",
    early_stop: EarlyStop = EarlyStop(),
    twin_candidates: Iterable[str | Path] = (),
    twins: dict[str, str | Path] | None = None,
    source_epoch: int | None = None,
    group_keys: GroupKeys = ("arch", "norm"),
    **kwargs: Any,
) -> tuple[TransferResult, list[dict[str, Any]], dict[str, Path]]:
    """The matrix for the given sources and their boosted variants, the boost comparison, and the written files."""
    if not sources:
        raise NrflabError("no source models given")
    refs = [resolve_model(s, source_epoch, group_keys) for s in sources]
    candidates = list(twin_candidates) or sorted({r.run_dir.parent for r in refs if r.run_dir is not None})
    variants = boost_variants(refs, boost, candidates, early_stop, twins, group_keys)
    unique = list({v.ref.name: v.ref for v in variants}.values())
    result = transfer_matrix(unique, targets, data, attack, out_dir, group_keys=group_keys, **kwargs)
    boosts = boost_comparison(result, variants) if boost != "none" else []
    return result, boosts, write_outputs(result, out_dir, boosts)


__all__ = [
    "BOOSTS",
    "DEFINITIONS",
    "EarlyStop",
    "ModelRef",
    "NamedModel",
    "TransferResult",
    "Variant",
    "boost_comparison",
    "boost_variants",
    "checkpoint_of_epoch",
    "choose_targets",
    "find_no_bn_twin",
    "kept_epochs",
    "mean_ci",
    "resolve_model",
    "run_transfer",
    "summary_markdown",
    "transfer_matrix",
    "wilson",
    "write_outputs",
]

"""Building a feature dataset into a directory: the card, the shards, resume and overwrite."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from nrflab import __version__
from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_save_tensors, atomic_write_json, read_json, read_metadata
from nrflab.core.logs import get_logger
from nrflab.core.validation import resolve_device
from nrflab.data.built import BuiltLayout
from nrflab.features.builder import BuildInputs, ShardBuilder, prepare_inputs
from nrflab.features.settings import INVERSION_KINDS, KIND_DESCRIPTIONS, LABEL_POLICY_DOC, BuildSettings, make_settings
from nrflab.features.source import Source, load_source
from nrflab.models.inspection import check_model_fits
from nrflab.models.references import ModelOptions
from nrflab.runs.rundir import Stash, check_output_path, locked

log = get_logger("features")

ShardCallback = Callable[[int, int], None]
"""``on_shard(shard_index, num_shards)``, called after each shard is written."""


@dataclass
class BuildResult:
    out_dir: Path
    card: dict[str, Any]  # dataset.json as written: the file's JSON document
    built_shards: list[int] = field(default_factory=list)


class BuildIdentity(TypedDict):
    """What a resumed build must match (the card's ``identity``)."""

    settings: dict[str, object]
    base_dataset: str
    source_weights: str
    base_set: str | None


def _identity(settings: BuildSettings, inputs: BuildInputs, source: Source) -> BuildIdentity:
    """What a resumed build must match."""
    return {
        "settings": settings.to_dict(),
        "base_dataset": inputs.bundle_info["name"],
        "source_weights": source.info["fingerprint"],
        "base_set": inputs.base_info["card_sha256"] if inputs.base_info else None,
    }


def _claim(out: Path, identity: BuildIdentity, resume: bool, overwrite: bool) -> Stash | None:
    """Under the lock: decide whether the directory may be written; move an old build aside for overwrite."""
    card_path = BuiltLayout(out).card
    entries = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    if not entries:
        return None
    if overwrite:
        return Stash.aside(out)
    if not card_path.exists():
        raise NrflabError(
            f"{out} is not empty and holds no built dataset; choose an empty directory or pass --overwrite"
        )
    if not resume:
        raise NrflabError(
            f"{out} already holds a built dataset; pass --resume to continue it or --overwrite to build again"
        )
    old = read_json(card_path, "dataset card", expect=dict).get("identity", {})
    changed = sorted(k for k in set(old) | set(identity) if k != "settings" and old.get(k) != identity.get(k))
    changed += sorted(
        f"settings.{k}" for k in identity["settings"] if old.get("settings", {}).get(k) != identity["settings"][k]
    )
    if changed:
        raise NrflabError(
            f"cannot resume {out}: it was built with different {', '.join(changed)}; pass --overwrite to build again"
        )
    return None


def _existing_shard_stats(path: Path, digest: str, expected: int) -> dict[str, float] | None:
    """The stats of a complete shard from this build, or None (missing, corrupt, other settings)."""
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
        if meta.get("settings_digest") != digest or int(meta.get("num_images", -1)) != expected:
            return None
        stats = json.loads(meta["stats"])
    except (NrflabError, KeyError, TypeError, ValueError):  # unreadable or corrupt metadata: build the shard again
        return None
    return cast(dict[str, float], stats) if isinstance(stats, dict) else None


def _summarize(kind: str, stats: list[dict[str, float]]) -> dict[str, float]:
    n = sum(s["n"] for s in stats)
    agg = {k: sum(s[k] for s in stats) for k in stats[0]} if stats else {}
    out = {
        "num_images": n,
        "source_acc_vs_stored_labels": agg["label_agreement"] / n,
        "source_acc_vs_original_labels": agg["on_original"] / n,
    }
    if kind in INVERSION_KINDS:
        out.update(
            mean_rep_distance_before=agg["dist_before"] / n,
            mean_rep_distance_after=agg["dist_after"] / n,
            mean_rep_norm=agg["ref_norm"] / n,
            relative_rep_distance_after=agg["dist_after"] / max(agg["dist_before"], 1e-12),
        )
    else:
        out["attack_success_rate"] = agg["on_target"] / n
    return out


def _recorded_step(out: str | os.PathLike[str]) -> float | None:
    """The step size a build at ``out`` recorded in its card (None: no readable card), so that resuming it
    without ``--step-size`` keeps the step it was started with, whatever the default rule is today."""
    card_path = BuiltLayout(Path(out)).card
    if not card_path.is_file():
        return None
    try:
        step = (
            read_json(card_path, "dataset card", expect=dict).get("identity", {}).get("settings", {}).get("step_size")
        )
    except (NrflabError, AttributeError):
        return None
    return float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def build_dataset(
    settings: BuildSettings | str,
    source: str | os.PathLike[str] | nn.Module,
    dataset: str | None,
    out: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    base: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_shard: ShardCallback | None = None,
    model_options: ModelOptions | None = None,
    **setting_overrides: Any,
) -> BuildResult:
    """Build a feature dataset from ``source`` (checkpoint, run dir or module) into the directory ``out``.

    ``settings`` is a :class:`BuildSettings` or a kind name (``d_r``, ``d_nr``, ``d_rand``, ``d_det``,
    ``conflicting``) whose paper defaults ``setting_overrides`` adjust (``steps``, ``eps``, ``step_size``,
    ``seed``, ``label_policy``, ``shard_size``, ``dtype``, ``fake_relu``, ``layer``, ``limit``).
    ``dataset`` is the base dataset's name (for ``conflicting`` it may be None: the base D_R set's).
    ``source`` is any model reference (see :func:`nrflab.models.references.load_model_reference`);
    ``model_options`` (``arch``, ``norm``, ``num_classes``, ``width``, ``mean``, ``std``) describe a bare
    state dict or a model expecting normalized inputs. Everything is checked before the directory is
    touched; ``overwrite`` keeps the old build until the new one has written its card.
    """
    if isinstance(settings, str):
        if resume and setting_overrides.get("step_size") is None:
            setting_overrides["step_size"] = _recorded_step(out)
        settings = make_settings(settings, **setting_overrides)
    elif setting_overrides:
        settings = settings.with_(**setting_overrides)
    if settings.kind != "conflicting" and dataset is None:
        raise NrflabError("--dataset is required (the base dataset, e.g. mnist5k)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NrflabError(f"batch size must be an integer >= 1, got {batch_size}")
    dev = resolve_device(device)
    inputs, bundle = prepare_inputs(settings, dataset, None if data_root is None else str(data_root), base)
    src = load_source(source, dev, **model_options) if model_options else load_source(source, dev)
    check_model_fits(
        src.loaded, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name, name="source"
    )
    if settings.kind == "d_r" and src.info["adversarially_trained"] is False:
        log.warning("building d_r from a source that was not adversarially trained (its run config says so)")
    out = check_output_path(out, what="dataset directory", allow_dataset=True)
    if base is not None and Path(base).resolve() == out.resolve():
        raise NrflabError("--out must not be the --base set it is built from")
    identity = _identity(settings, inputs, src)
    with locked(out, what="dataset directory"):
        stash = _claim(out, identity, resume, overwrite)
        try:
            return _build(settings, src, inputs, bundle, out, identity, batch_size, resume, progress, on_shard, stash)
        except BaseException:
            if stash is not None:
                stash.restore()
            raise


def _card(
    settings: BuildSettings,
    src: Source,
    inputs: BuildInputs,
    identity: BuildIdentity,
    *,
    batch_size: int,
    num_shards: int,
) -> dict[str, object]:
    """The dataset card (dataset.json) as first written: everything but the sanity numbers, not complete."""
    return {
        "format": BuiltLayout.FORMAT,
        "format_version": 1,
        "kind": settings.kind,
        "description": KIND_DESCRIPTIONS[settings.kind],
        "complete": False,
        "num_images": inputs.count,
        "num_shards": num_shards,
        "shard_size": settings.shard_size,
        "shards": BuiltLayout.shard_names(num_shards),
        "dtype": settings.dtype,
        "quantization": "images rounded to the nearest 1/255 (part of a small perturbation may be lost); "
        "sanity numbers are measured on the stored images"
        if settings.dtype == "uint8"
        else f"images stored as {settings.dtype}",
        "label_policy": settings.label_policy,
        "label_policy_doc": LABEL_POLICY_DOC[settings.label_policy],
        "base_dataset": inputs.bundle_info,
        "base_set": inputs.base_info,
        "source": src.info,
        "settings": {
            **settings.to_dict(),
            "norm": settings.attack.norm,
            "targeted": settings.attack.targeted,
            "random_start": settings.attack.random_start,
            "clamp": [0.0, 1.0],
            "batch_size": batch_size,
            "objective": "||rep(z) - rep(x_ref)||_2 from a different random training image"
            if settings.kind in INVERSION_KINDS
            else "cross-entropy toward the target class",
        },
        "seeds": {"seed": settings.seed, "per_shard": "torch.Generator seeded by SeedSequence([seed, shard])"},
        "tensors": {
            "images": "N x C x H x W",
            "labels": "training labels (label policy)",
            "orig_labels": "the original label y",
            "targets": "the class aimed at",
            "source_indices": "index in the base dataset's training set",
            **(
                {"start_indices": "training image the inversion started from"}
                if settings.kind in INVERSION_KINDS
                else {}
            ),
        },
        "identity": identity,
        "nrflab_version": __version__,
        "torch_version": str(torch.__version__),
        "sanity": None,
    }


def _build(
    settings: BuildSettings,
    src: Source,
    inputs: BuildInputs,
    bundle: Any,
    out: Path,
    identity: BuildIdentity,
    batch_size: int,
    resume: bool,
    progress: bool,
    on_shard: ShardCallback | None,
    stash: Stash | None,
) -> BuildResult:
    num_shards = math.ceil(inputs.count / settings.shard_size)
    card = _card(settings, src, inputs, identity, batch_size=batch_size, num_shards=num_shards)
    atomic_write_json(BuiltLayout(out).card, card)
    if stash is not None:
        stash.commit()
    builder = ShardBuilder(settings, src.model, inputs, bundle.num_classes, batch_size)
    digest = settings.digest()
    all_stats: list[dict[str, float] | None] = [None] * num_shards
    built: list[int] = []
    if resume:
        all_stats = [
            _existing_shard_stats(BuiltLayout(out).shard(i), digest, _shard_len(settings, inputs.count, i))
            for i in range(num_shards)
        ]
    done = sum(_shard_len(settings, inputs.count, i) for i in range(num_shards) if all_stats[i] is not None)
    if done:
        log.info(f"resuming {out}: {sum(s is not None for s in all_stats)}/{num_shards} shards already built")
    with tqdm(
        total=inputs.count,
        initial=done,
        desc=f"build {settings.kind}",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for i in range(num_shards):
            if all_stats[i] is not None:
                continue
            tensors, stats = builder.build(i, bar)
            count = str(tensors["labels"].shape[0])
            meta = {"settings_digest": digest, "shard": str(i), "num_images": count, "stats": json.dumps(stats)}
            atomic_save_tensors(BuiltLayout(out).shard(i), tensors, meta)
            all_stats[i] = stats
            built.append(i)
            if on_shard is not None:
                on_shard(i, num_shards)
    card["sanity"] = sanity = _summarize(settings.kind, [s for s in all_stats if s is not None])
    card["complete"] = True
    atomic_write_json(BuiltLayout(out).card, card)
    log.info(
        f"built {settings.kind}: {inputs.count} images in {num_shards} shard(s) at {out}; "
        + ", ".join(f"{k} {v:.3f}" for k, v in sanity.items() if isinstance(v, float))
    )
    return BuildResult(out, card, built)


def _shard_len(settings: BuildSettings, count: int, shard: int) -> int:
    return min(settings.shard_size, count - shard * settings.shard_size)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

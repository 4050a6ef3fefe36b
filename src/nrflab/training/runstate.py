"""A training run's state on disk: the resolved config it records, the per-epoch checkpoint that commits an
epoch (model, optimizer, history), and the decision to resume, refuse or overwrite what a directory holds.

The trainer's loop (:mod:`nrflab.training.trainer`) calls these; the directory's layout is
:class:`nrflab.runs.rundir.RunDir`'s. The checkpoint is written last, so a committed epoch implies every
other file of that epoch is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence, Sized
from typing import Any, cast

import torch
import yaml

from nrflab.attacks import AttackSpec
from nrflab.core.errors import NrflabError
from nrflab.core.io import (
    atomic_save_tensors,
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_metadata,
    write_csv,
)
from nrflab.data import DatasetBundle, Probe
from nrflab.models import NrfModel
from nrflab.models.checkpoint import load_state, save_model
from nrflab.runs.rundir import RunDir, Stash, config_diff
from nrflab.training.config import TrainConfig
from nrflab.training.evaluation import metrics_columns, probe_columns

log = logging.getLogger("nrflab.training")

#: One row of metrics.csv or probes.csv: column -> number (epoch, step and counts are whole numbers).
Row = dict[str, float]
Rows = list[Row]
Probes = Sequence[Probe]


def _adversarial_record(spec: AttackSpec | None) -> dict[str, float | int | None] | None:
    """The adversarial-training attack as recorded in a run (eps, steps, step size)."""
    return None if spec is None else {"eps": spec.eps, "steps": spec.steps, "step_size": spec.step_size}


def resolved_config(
    cfg: TrainConfig, bundle: DatasetBundle, device: torch.device, model: NrfModel, *, compile_mode: str
) -> dict[str, object]:
    """What config.json records: the config's fields plus what they resolved to on this machine."""
    return {
        **cfg.model_dump(),
        "resolved": {
            "dataset": {
                "name": bundle.name,
                "num_classes": bundle.num_classes,
                "input_shape": list(bundle.input_shape),
                "mean": list(bundle.mean),
                "std": list(bundle.std),
                "train_size": len(cast(Sized, bundle.train)),  # torch Datasets are not typed Sized
                "test_size": len(cast(Sized, bundle.test)),
                **({"info": bundle.info} if bundle.info else {}),
            },
            "device": str(device),
            "torch": str(torch.__version__),
            "model": model.config.to_dict(),
            "adversarial_training": _adversarial_record(cfg.adversarial()),
            "numerics": {"training": "bfloat16 autocast" if cfg.amp == "bf16" else "float32", "evaluation": "float32"},
            "acceleration": {"channels_last": cfg.channels_last, "compile": compile_mode},
        },
    }


def write_config(run: RunDir, resolved: Mapping[str, object]) -> None:
    """config.json and its YAML twin."""
    atomic_write_json(run.config_path, resolved)
    atomic_write_text(
        run.config_yaml_path, yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), sort_keys=False)
    )


def claim(run: RunDir, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> tuple[bool, Stash | None]:
    """Decide, under the lock, whether to resume; move an old run aside for overwrite.

    Returns (resume_from_checkpoint, stash)."""
    out = run.path
    if not run.is_run():
        if resume and out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
            raise NrflabError(f"cannot resume {out}: it holds no nrflab run")
        return False, None
    if overwrite:
        return False, Stash.aside(out)
    status = run.status()
    if not resume:
        what = "a finished run" if status and status.finished else "an unfinished run"
        raise NrflabError(f"{out} already holds {what}; pass --resume to continue it or --overwrite to start again")
    if run.config_path.is_file():
        diff = cfg.differences(run.read_config())  # ``field: recorded -> new`` per differing field
        if diff:
            raise NrflabError(
                f"cannot resume {out}: it is a different run ({'; '.join(diff[:4])}"
                f"{'; ...' if len(diff) > 4 else ''}); pass --overwrite to replace it"
            )
    elif status is not None:
        raise NrflabError(f"cannot resume {out}: its config.json is missing")
    if status is None:
        log.info("no epoch of %s was committed before it stopped; starting it from scratch", out)
        return False, None
    return True, None


def _optimizer_tensors(state: dict[Any, Any]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, object]]]:
    """An optimizer's per-parameter state split into tensors (stored as tensors) and scalars (stored as JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, object]] = {}
    for pid, st in state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = float(v) if torch.is_tensor(v) else v
    return tensors, scalars


def save_epoch(
    run: RunDir,
    cfg: TrainConfig,
    probes: Probes,
    *,
    model: NrfModel,
    opt: torch.optim.Optimizer,
    epoch: int,
    history: Rows,
    probe_history: Rows,
) -> None:
    """Write epoch ``epoch``: the model (and a kept copy), metrics.csv, probes.csv, then the checkpoint."""
    opt_state = opt.state_dict()
    optim_tensors, scalars = _optimizer_tensors(opt_state["state"])
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **optim_tensors}
    meta = {
        "epoch": str(epoch),
        "epochs": str(cfg.epochs),
        "finished": "1" if epoch >= cfg.epochs else "0",
        "history": json.dumps(history),
        "probe_history": json.dumps(probe_history),
        "optim_scalars": json.dumps(scalars),
        "optim_groups": json.dumps(opt_state["param_groups"]),
        "nrflab_model_config": json.dumps(model.config.to_dict()),
    }
    save_model(model, run.model_path, {"epoch": str(epoch)})
    if cfg.keep_checkpoints and epoch % cfg.keep_checkpoints == 0:
        save_model(model, run.kept_path(epoch), {"epoch": str(epoch)})
    write_csv(run.metrics_path, history, metrics_columns(cfg, probes))
    if probe_history:
        write_csv(run.probes_path, probe_history, ["epoch", "step", "samples", *probe_columns(probes)])
    # The checkpoint goes last: it commits the epoch, so "finished" implies every other file is written.
    atomic_save_tensors(run.checkpoint_path, tensors, meta)


def _check_model(run: RunDir, model: NrfModel, stored: str | None) -> None:
    """The checkpoint's recorded model config must be the model's."""
    if not stored:
        return
    try:
        diff = config_diff(json.loads(stored), model.config.to_dict())
    except json.JSONDecodeError:
        raise NrflabError(f"run checkpoint {run.checkpoint_path} has a corrupt model config") from None
    if diff:
        raise NrflabError(f"cannot resume {run.path}: its checkpoint holds another model ({'; '.join(diff[:3])})")


def restore_epoch(
    run: RunDir, *, model: NrfModel, opt: torch.optim.Optimizer, device: torch.device
) -> tuple[int, Rows, Rows]:
    """Load the last committed epoch into ``model`` and ``opt``: (epoch, history, probe history)."""
    path = run.checkpoint_path
    tensors = load_tensors(path, "run checkpoint")
    meta = read_metadata(path)
    _check_model(run, model, meta.get("nrflab_model_config"))
    load_state(model, {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    state: dict[int, dict[str, object]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v.to(device)
    try:
        for pid, st in json.loads(meta["optim_scalars"]).items():
            for name, v in st.items():
                state.setdefault(int(pid), {})[name] = torch.tensor(v) if name == "step" else v
        opt.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
        return int(meta["epoch"]), json.loads(meta["history"]), json.loads(meta.get("probe_history", "[]"))
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise NrflabError(
            f"run checkpoint {path} is corrupt ({exc.__class__.__name__}); pass --overwrite to start again"
        ) from None


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

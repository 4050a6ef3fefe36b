"""Lives here: how one model is trained -- the typed training config, schedule, augmentation, the per-epoch record, the trainer, training jobs and sweeps of them.
Never here: the pool that runs jobs (``nrflab.runs.executor``), measurements themselves (``nrflab.measure``), the run directory's layout (``nrflab.runs.rundir``).
To add one: a training option is one field of ``TrainConfig`` (its CLI flag is generated from the field).

Training with per-epoch robustness records: clean accuracy, robust accuracy, LIGS, every epoch.

``config`` (the typed recipe), ``schedule`` (optimizer, learning rate, per-epoch generators),
``augment`` (batched crops and flips), ``evaluation`` (the per-epoch framework row and probes) and
``trainer`` (the loop, checkpoints, resume). A run directory's layout lives in :mod:`nrflab.runs.rundir`.
"""

from nrflab.training.config import TrainConfig, load_config_file, make_config
from nrflab.training.trainer import (
    NonFiniteLoss,
    Trainer,
    TrainResult,
    read_metrics,
    read_run_config,
    run_status,
    train,
    train_or_reuse,
)

__all__ = [
    "NonFiniteLoss",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_config_file",
    "make_config",
    "read_metrics",
    "read_run_config",
    "run_status",
    "train",
    "train_or_reuse",
]

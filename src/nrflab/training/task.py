"""One training run as a job of the executor (:mod:`nrflab.runs.executor`): what sweeps and experiments
hand it, so a run is reused, resumed or trained by the same rule (``RunDir.is_finished_with``) wherever it
is planned."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from nrflab.core.errors import NrflabError
from nrflab.core.seeds import seeded_subset
from nrflab.data import DatasetBundle, load_dataset
from nrflab.runs.rundir import RunDir
from nrflab.training.config import TrainConfig
from nrflab.training.trainer import train, train_or_reuse


@dataclasses.dataclass(frozen=True)
class TrainTask:
    """One training run into ``key`` (a run directory).

    ``train_size`` takes a seeded random subset of the training set (``subset_seed``); the subset is part
    of the run's identity. ``strict``: a directory holding a run of another recipe is refused before
    anything runs (an experiment chain); otherwise only this run fails, with the trainer's one-line reason,
    and the others go on (a sweep). ``threads``: torch threads the run must train on for its numbers
    (None: the execution's share).
    """

    key: str
    config: Mapping[str, Any]
    train_size: Optional[int] = None
    subset_seed: int = 0
    after: tuple[str, ...] = ()
    strict: bool = True
    threads: Optional[int] = None
    kind: Literal["train"] = "train"
    #: Whether the run's data are generated from a validated spec (nothing to load before a chain starts).
    GENERATED: ClassVar[bool] = False

    @property
    def label(self) -> str:
        return short_path(self.key)

    def recipe(self) -> TrainConfig:
        return TrainConfig.model_validate(dict(self.config))

    def check(self) -> None:
        """Refuse, before anything runs, a directory that holds a run of another recipe or subset."""
        if not self.strict:
            return
        run = RunDir(self.key)
        diff = run.differences(self.recipe())
        if diff:
            raise NrflabError(
                f"{self.key} holds a run of another recipe ({'; '.join(diff[:4])}); delete it or "
                "choose another output directory"
            )
        self._check_subset(run)

    def _check_subset(self, run: RunDir) -> None:
        if self.train_size is None or not (run.is_run() and run.config_path.is_file()):
            return
        recorded = run.read_config().get("resolved", {}).get("dataset", {}).get("train_size")
        if recorded is not None and int(recorded) != int(self.train_size):
            raise NrflabError(
                f"{self.key} holds a run trained on {recorded} images, not {self.train_size}; "
                "delete it or choose another output directory"
            )

    def done(self) -> bool:
        return RunDir(self.key).is_finished_with(self.recipe())

    def bundle(self) -> DatasetBundle:
        """The dataset the run trains on (the seeded subset when ``train_size`` is set)."""
        bundle = load_dataset(str(self.config["dataset"]), root=self.config.get("data_root"))
        return subset_bundle(bundle, self.train_size, self.subset_seed)

    def run(self, progress: bool) -> str:
        """Train, resume or reuse the run; returns its directory."""
        cfg, run = self.recipe(), RunDir(self.key)
        if not self.strict:
            train(cfg, run.path, resume=run.is_run(), progress=progress, bundle=self.bundle())
            return str(run.path)
        self._check_subset(run)
        return str(train_or_reuse(cfg, self.key, progress=progress, bundle=self.bundle()))


def short_path(path: str) -> str:
    """The last three parts of a path (progress lines)."""
    parts = Path(path).parts
    return "/".join(parts[-3:]) if len(parts) > 3 else str(path)


def subset_bundle(bundle: DatasetBundle, train_size: int | None, seed: int) -> DatasetBundle:
    """``bundle`` with a seeded random subset of ``train_size`` training images (sorted indices; the
    embedded sets are sorted by class, so a prefix would not do); the bundle itself when None or larger."""
    train: Any = bundle.train  # an ImageTensorDataset (sized, with subset)
    idx = seeded_subset(len(train), train_size, seed=seed)
    return bundle if idx is None else dataclasses.replace(bundle, train=train.subset(idx))


__all__ = ["TrainTask", "short_path", "subset_bundle"]

"""The planted experiment's training runs: which sets, normalizations and seeds, with one recipe, each
an engine :class:`~nrflab.training.task.TrainTask` (so ``--workers`` and ``--backend ray`` reach it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from nrflab.data import DatasetBundle
from nrflab.data.planted import PlantedSpec, build_bundle, dataset_name, spec_from_params
from nrflab.experiments.planted.settings import Settings
from nrflab.training import TrainConfig, make_config
from nrflab.training.task import TrainTask


@dataclass(frozen=True)
class PlantedRun:
    """One training run of the experiment: which set, which normalization, which seed, what to record."""

    group: str
    key: str
    spec: PlantedSpec
    norm: str
    seed: int
    step_probes: bool = False
    shifted: bool = False
    robust: bool = False

    @property
    def name(self) -> str:
        return f"{self.key}-{self.norm}-s{self.seed}"


def planted_spec(s: Settings, preset: str, **params: Any) -> PlantedSpec:
    """A planted spec on the experiment's common settings (explicit ``params`` win)."""
    base = {
        "size": s.size,
        "train": s.train,
        "test": s.test,
        "a_r": s.a_r,
        "noise": s.noise,
        "seed": s.data_seed,
        "sample_seed": s.data_seed,
    }
    merged = {**base, "variant": preset, **params}
    return spec_from_params({k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in merged.items()})


def sample_seed(s: Settings, seed: int) -> int:
    """The image-sampling seed of replicate ``seed``: with ``vary_samples`` each replicate draws its own
    training and test images (``data_seed + 1 + seed``, never the calibration's ``data_seed``) from the same
    templates (``data_seed``: the features are the same for every model, so transfer between seeds is defined);
    otherwise every model sees the same images."""
    return s.data_seed + 1 + seed if s.vary_samples else s.data_seed


def planted_runs(s: Settings) -> list[PlantedRun]:
    """Every planted training run, in the order they are planned."""
    seeds = list(s.seeds)
    runs: list[PlantedRun] = []

    def add(group: str, key: str, spec: PlantedSpec, run_seeds: Sequence[int], **flags: bool) -> None:
        runs.extend(
            PlantedRun(group, key, replace(spec, sample_seed=sample_seed(s, seed)), norm, seed, **flags)
            for seed in run_seeds
            for norm in s.norms
        )

    cap_seeds = seeds[: max(s.capability_seeds, 2)]
    add("capability-rf", "cap-rf", planted_spec(s, "rf-alone", a_n=0.0), cap_seeds)
    add("capability-nrf", "cap-nrf", planted_spec(s, "nrf-alone", a_r=0.0, a_n=s.a_n), cap_seeds)
    for a in sorted({*s.sweep, s.a_n}):
        op = a == s.a_n
        add(
            "sweep",
            f"sweep-a{a:g}",
            planted_spec(s, "redundant", a_n=a),
            seeds if op else seeds[: s.sweep_seeds],
            step_probes=op,
            robust=op,
        )
    add(
        "control-robust",
        "ctl-robust",
        planted_spec(s, "redundant", a_n=s.control_robust_a_n, noise=s.control_noise),
        seeds,
    )
    add("control-noise", "ctl-noise", planted_spec(s, "redundant", a_n=s.a_n, noise=s.control_noise), seeds)
    add("control-band", "ctl-band", planted_spec(s, "redundant", a_n=s.a_n, nrf_band=s.control_band), seeds)
    for a in s.drand_a_n:
        add("drand", f"drand-a{a:g}", planted_spec(s, "drand", a_n=a), seeds)
    add("conflicting", "conflicting", planted_spec(s, "conflicting", a_n=s.conflicting_a_n), seeds, shifted=True)
    return runs


def recipe(
    s: Settings, *, dataset: str, norm: str, seed: int, base_dataset: str | None = None, **extra: Any
) -> TrainConfig:
    """The one training recipe of every model in the experiment (TrainConfig); ``base_dataset`` names the
    dataset whose defaults a built dataset takes (it may not exist yet when the run is planned)."""
    fields = dict(
        dataset=dataset,
        arch=s.arch,
        norm=norm,
        width=s.width,
        epochs=s.epochs,
        lr=s.lr,
        batch_size=s.batch_size,
        schedule="onecycle",
        augment=False,
        flip=False,
        seed=seed,
        eval_attacks=[],
        ligs=False,
        eval_size=min(s.eval_size, s.test),
        device=s.device,
    )
    return make_config(base_dataset=base_dataset, **{**fields, **extra})


@dataclass(frozen=True)
class PlantedTrainTask(TrainTask):
    """A planted run: trains on the bundle generated from ``spec``, with reliance probes of ``probe_size``
    images per view (the dataset name alone would probe every test image)."""

    spec: PlantedSpec | None = None
    probe_size: int | None = None
    #: The data are generated from a validated spec: nothing to check before a chain starts.
    GENERATED: ClassVar[bool] = True

    def bundle(self) -> DatasetBundle:
        assert self.spec is not None
        return build_bundle(self.spec, probe_size=self.probe_size)


def train_task(run: PlantedRun, s: Settings, home: Path) -> PlantedTrainTask:
    """The task of one planted run: per-epoch reliance probes always, per-step ones if asked."""
    cfg = recipe(
        s,
        dataset=dataset_name(run.spec),
        norm=run.norm,
        seed=run.seed,
        probe_every=s.probe_every if run.step_probes else 0,
        probe_epochs=s.probe_epochs if run.step_probes else 1,
        eval_shifted_labels=run.shifted,
    )
    return PlantedTrainTask(
        str(home / "runs" / run.name),
        cfg.model_dump(),
        threads=s.run_threads,
        spec=run.spec,
        probe_size=s.probe_size if run.step_probes else s.curve_probe_size,
    )


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

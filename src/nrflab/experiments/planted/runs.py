"""The planted experiment's training runs: which sets, normalizations and seeds, with one recipe."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nrflab.data.planted import PlantedSpec, build_bundle, dataset_name, spec_from_params
from nrflab.experiments.planted.settings import Settings
from nrflab.runs.rundir import RunDir
from nrflab.training import TrainConfig, make_config, run_differences, train_or_reuse


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


def plan(s: Settings, seeds: Sequence[int]) -> list[PlantedRun]:
    """Every planted training run, in the order they are trained."""
    seeds = list(seeds)
    runs: list[PlantedRun] = []

    def add(group: str, key: str, spec: PlantedSpec, run_seeds: Sequence[int], **flags: bool) -> None:
        runs.extend(PlantedRun(group, key, spec, norm, seed, **flags) for seed in run_seeds for norm in s.norms)

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


def recipe(s: Settings, *, dataset: str, norm: str, seed: int, **extra: Any) -> TrainConfig:
    """The one training recipe of every model in the experiment (TrainConfig)."""
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
    return make_config(**{**fields, **extra})


def train_run(run: PlantedRun, s: Settings, out: Path, *, progress: bool) -> Path:
    """Train (or reuse) one planted run; per-epoch reliance probes always, per-step ones if asked."""
    cfg = recipe(
        s,
        dataset=dataset_name(run.spec),
        norm=run.norm,
        seed=run.seed,
        probe_every=s.probe_every if run.step_probes else 0,
        probe_epochs=s.probe_epochs if run.step_probes else 1,
        eval_shifted_labels=run.shifted,
    )
    run_dir = out / "runs" / run.name
    if finished_run(run_dir, cfg):
        return run_dir  # reused without generating its data
    bundle = build_bundle(run.spec, probe_size=s.probe_size if run.step_probes else s.curve_probe_size)
    return train_or_reuse(cfg, run_dir, progress=progress, bundle=bundle)


def finished_run(run_dir: Path, cfg: Any) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly this recipe (``train_or_reuse`` would reuse it)."""
    rd = RunDir(run_dir)
    if not (rd.is_run() and rd.config_path.is_file()):
        return False
    status = rd.status()
    return bool(status is not None and status.finished and not run_differences(rd, cfg))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, restoring the caller's setting: every run trains on one thread, in this
    process or in a worker, so its numbers do not depend on ``workers``."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package

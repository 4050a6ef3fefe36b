"""The planted experiment's settings: what it trains and measures, at the cpu (``FULL``), paper and quick
scales (the experiment's presets)."""

from __future__ import annotations

import math
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nrflab.core.validation import Seed
from nrflab.measure.health import THRESHOLDS

NORM_NAMES = {"bn": "BN", "none": "no norm", "gn": "GN", "ln": "LN", "in": "IN"}
EVAL_FILE = "planted_eval.json"


def swap_cost(amplitude: float) -> float:
    """A planted feature's swap cost, the one convention: ``a / sqrt(2)``, the L2 distance from its class
    template (norm ``a``) to the midpoint with another class's (orthonormal templates)."""
    return amplitude / math.sqrt(2)


class Settings(BaseModel):
    """Everything the experiment trains and measures (all recorded in the report and its recipe file)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: int = 16
    train: int = 2000
    test: int = 1000  # images per test view for the final reliance numbers
    probe_size: int = 300  # images per view of the operating point's per-epoch and per-step probes
    curve_probe_size: int = 100  # images per view of the other runs' per-epoch probes (final numbers: test)
    data_seed: int = 0  # the templates (the same features for every model: transfer needs it)
    # each replicate (seed) draws its own images from those templates (data-level replication); False: every
    # model sees the images of data_seed (the calibration's)
    vary_samples: bool = True
    arch: str = "smallcnn"
    width: float = 0.5
    epochs: int = 6
    lr: float = 0.03
    batch_size: int = 64
    norms: tuple[str, ...] = ("bn", "none")  # the first is compared with "none"; extra ones too
    a_r: float = 3.0
    a_n: float = 2.0  # the operating point
    noise: float = 0.05
    sweep: tuple[float, ...] = (1.0, 1.4, 2.0, 2.8, 4.0)
    # seeds at sweep points other than the operating point: the crossover (where rho crosses 0, per seed) is
    # paired over seeds, so every sweep point gets every seed (>= 5 at the cpu scale)
    sweep_seeds: int = 5
    capability_seeds: int = 3  # seeds of the capability controls (a gate, not a verdict)
    capability_min: float = THRESHOLDS.capable
    learned_min: float = THRESHOLDS.capable  # agree accuracy below which a model's reliance is not compared
    control_noise: float = 0.1
    control_robust_a_n: float = 4.0  # with control_noise: the base's template signal-to-noise ratio
    control_band: str = "mid"
    drand_a_n: tuple[float, ...] = (1.0, 2.0)
    conflicting_a_n: float = 2.0
    probe_every: int = 4
    probe_epochs: int = 2
    early_acc: float = 0.5  # learning order is read where agree accuracy first reaches this
    eval_eps: tuple[float, ...] = (0.25, 0.5)  # PGD-L2 robust accuracy at the operating point
    # (measured: at eps 1.0 every operating-point model of either normalization is at 0 %)
    pgd_steps: int = 10
    eval_size: int = 500
    # above both swap costs (NRF 1.41 at a_n = 2, RF 2.12 at a_r = 3), so a source may move either feature
    # (checked: :meth:`_transfer_eps_moves_either`); the band energies say which one it moved
    transfer_eps: float = 2.5
    transfer_size: int = 200
    mnist: bool = True
    mnist_seeds: int = 5  # the diagnostic is paired over seeds: 5, as every comparative claim at CPU scale
    mnist_train: int = 2000
    mnist_a_n: float = 2.0
    mnist_source_epochs: int = 3
    mnist_build_steps: int = 20
    mnist_build_eps: float = 2.0
    mnist_build_step: float = 0.25
    stat_batch: int = 250  # batch size of the batch-statistics evaluation
    device: str = "cpu"
    # judged seeds, distinct from the calibration's (0 and 1, with the images of data_seed)
    seeds: list[Seed] = Field(default_factory=lambda: [10, 11, 12, 13, 14], min_length=1)
    # torch threads of every run and measurement: 1 makes the numbers independent of --workers and of where
    # a run goes; None gives each run the execution's share (the paper scale, on a GPU)
    run_threads: Optional[int] = Field(default=1, ge=1)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        return list(dict.fromkeys(seeds))

    @model_validator(mode="after")
    def _transfer_eps_moves_either(self) -> Settings:
        """Claim 6 compares perturbations that could move either feature: the transfer eps must exceed both
        swap costs at the operating point."""
        costs = {"RF": swap_cost(self.a_r), "NRF": swap_cost(self.a_n)}
        if self.transfer_eps <= max(costs.values()):
            raise ValueError(
                f"transfer_eps {self.transfer_eps:g} must exceed both swap costs so either feature can be moved "
                f"(RF {costs['RF']:.2f}, NRF {costs['NRF']:.2f})"
            )
        return self


FULL = Settings()
#: A pipeline check that can still decide one claim: three seeds, and enough training (1,000 images, 4
#: epochs) that BN learns planted D_rand at a_n = 2 while no normalization stays near chance, so the two
#: D_rand claims reach "agrees" (measured: +9.0 [2.4, 15.6] points below chance + 10, and +67 [22, 113]
#: points BN minus no norm); its operating point moves to a_n = 2.8 so that D_rand at 2 is inside the
#: claim's scope (below the operating point). Its other verdicts stay void or "not tested" (the capability
#: gate fails at this size). The cpu preset's thresholds are unchanged.
QUICK = Settings(
    train=1000,
    test=200,
    probe_size=100,
    curve_probe_size=50,
    epochs=4,
    a_n=2.8,
    sweep=(2.0,),
    drand_a_n=(2.0,),
    probe_every=3,
    probe_epochs=1,
    eval_eps=(0.5,),
    pgd_steps=3,
    eval_size=100,
    transfer_size=50,
    mnist_seeds=1,
    mnist_train=200,
    mnist_source_epochs=1,
    mnist_build_steps=2,
    stat_batch=100,
    seeds=[0, 1, 2],
)
#: A paper-like planted scale: 32 x 32 images, ResNet-18, 50,000 training images per set and 10,000 per test
#: view, five seeds, on the GPU. The amplitudes are the CPU scale's (L2 norms, so per pixel they are half as
#: large at 32 x 32); this scale has not been calibrated like the CPU one.
PAPER = Settings(
    size=32,
    train=50000,
    test=10000,
    probe_size=1000,
    curve_probe_size=500,
    arch="resnet18",
    width=1.0,
    epochs=30,
    lr=0.05,
    batch_size=128,
    eval_size=1000,
    transfer_size=1000,
    mnist_train=4000,
    stat_batch=500,
    device="auto",
    run_threads=None,
)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

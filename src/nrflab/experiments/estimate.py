"""How long a chain's training takes, before it runs: measured per-epoch figures, not a guess per command.

Two small tables, each figure taken from the README's measurements:

* :data:`CPU_SECONDS_PER_1K`: seconds per training epoch per 1,000 training images on this project's
  reference machine (2 CPU cores), the per-epoch evaluation included. ``smallcnn``: ``nrflab demo`` (two
  mnist5k twins at width 0.5, 8 epochs each, PGD-L2, PGD-Linf and LIGS on 500 images per epoch) took 67 s,
  i.e. 67 / 16 / 5 = 0.84 s. ``resnet18`` (and every other architecture): ``benchmarks/paper_scale.py
  --quick`` measured one full-width CIFAR-10 epoch at 822 s (BN) / 631 s (no BN) plus 2,090 / 1,793 s of
  evaluation, i.e. 58.2 / 48.5 s per 1,000 training images. An adversarial epoch costs 4,867 / 822 = 5.9x.
  ``vgg11`` is taken as ``smallcnn`` at the same width: with it, the ``--scale cpu --only core,transfer``
  chain (README: 215 s) is estimated at 209 s.
* :data:`GPU_EPOCH_SECONDS`: one paper-scale epoch (50,000 CIFAR-10 images, evaluation on the 10,000 test
  images) of ResNet-18 on an NVIDIA H200: 4.2 s (BN) / 2.6 s (no BN) of training plus 7.7 / 6.2 s of
  evaluation.

Other widths than the measured one scale the CPU figures by ``(width / measured) ** 1.3`` (fitted on
ResNet-18 at width 0.25, 374 images/s, against width 1, 61 images/s). Only training runs are estimated; dataset builds and analyses
are listed but not timed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds per training epoch per 1,000 training images on 2 CPU cores, per-epoch evaluation included:
#: (arch, "bn" or "none") -> (seconds, the width they were measured at). Other architectures: resnet18's.
CPU_SECONDS_PER_1K: Mapping[tuple[str, str], tuple[float, float]] = {
    ("smallcnn", "bn"): (0.84, 0.5),
    ("smallcnn", "none"): (0.84, 0.5),
    ("vgg11", "bn"): (0.84, 0.5),
    ("vgg11", "none"): (0.84, 0.5),
    ("resnet18", "bn"): (58.2, 1.0),
    ("resnet18", "none"): (48.5, 1.0),
}
#: An adversarially trained epoch against a standard one (ResNet-18 on the CPU: 4,867 s / 822 s).
ADVERSARIAL_FACTOR = 5.9
#: One paper-scale ResNet-18 epoch on a named GPU: (training s, evaluation s) with and without BN.
GPU_EPOCH_SECONDS: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "NVIDIA H200": {"bn": (4.2, 7.7), "none": (2.6, 6.2)},
}
#: Training images of the datasets the presets use (a seeded ``train_size`` subset replaces them).
TRAIN_IMAGES: Mapping[str, int] = {
    "mnist5k": 5000,
    "digits": 1437,
    "mnist": 60000,
    "fashion-mnist": 60000,
    "cifar10": 50000,
    "cifar100": 50000,
    "svhn": 73257,
}
PAPER_TRAIN_IMAGES = 50000


@dataclass(frozen=True)
class Estimate:
    """Estimated seconds of training; ``timed``/``untimed``: tasks with and without a figure."""

    seconds: float
    timed: int
    untimed: int

    def text(self) -> str:
        """``2.3 h for 14 training runs (3 tasks not timed)``."""
        s = self.seconds
        when = f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"
        rest = f" (+{self.untimed} task(s) not timed: builds, analyses, generated data)" if self.untimed else ""
        return f"about {when} of training for {self.timed} training run(s){rest}"


def _norm_kind(config: Mapping[str, Any]) -> str:
    return "none" if str(config.get("norm", "bn")) == "none" else "bn"


def _train_images(config: Mapping[str, Any], train_size: int | None) -> int | None:
    name = str(config.get("dataset", "")).split(":", 1)[0]
    images = TRAIN_IMAGES.get(name)
    if images is None:
        return None
    return min(images, train_size) if train_size else images


def _adversarial(config: Mapping[str, Any]) -> float:
    return ADVERSARIAL_FACTOR if str(config.get("adv_train") or "none") != "none" else 1.0


def cpu_seconds(config: Mapping[str, Any], train_size: int | None = None) -> float | None:
    """One training run's estimated seconds on 2 CPU cores; None when its dataset's size is unknown."""
    images = _train_images(config, train_size)
    if images is None:
        return None
    arch = str(config.get("arch", "resnet18"))
    norm = _norm_kind(config)
    per_1k, measured = CPU_SECONDS_PER_1K.get((arch, norm), CPU_SECONDS_PER_1K[("resnet18", norm)])
    width = (float(config.get("width") or 1.0) / measured) ** 1.3
    return float(float(config.get("epochs") or 1) * images / 1000 * per_1k * width * _adversarial(config))


def gpu_seconds(config: Mapping[str, Any], gpu: str, train_size: int | None = None) -> float | None:
    """One training run's estimated seconds on ``gpu`` from the paper-scale ResNet-18 figures."""
    images = _train_images(config, train_size)
    if images is None or gpu not in GPU_EPOCH_SECONDS:
        return None
    train, evaluation = GPU_EPOCH_SECONDS[gpu][_norm_kind(config)]
    per_epoch = train * images / PAPER_TRAIN_IMAGES * _adversarial(config) + evaluation
    return float(config.get("epochs") or 1) * per_epoch


def estimate(tasks: Sequence[Any], *, gpu: str | None = None) -> Estimate:
    """The summed estimate over ``tasks`` (training tasks with a ``config``), on the CPU or on ``gpu``."""
    total, timed, untimed = 0.0, 0, 0
    for t in tasks:
        config = getattr(t, "config", None)
        size = getattr(t, "train_size", None)
        seconds = None
        if config is not None:
            seconds = cpu_seconds(config, size) if gpu is None else gpu_seconds(config, gpu, size)
        if seconds is None:
            untimed += 1
        else:
            total, timed = total + seconds, timed + 1
    return Estimate(total, timed, untimed)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

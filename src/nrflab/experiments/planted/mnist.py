"""The MNIST question: a BN model on the planted MNIST D_rand vs on the attack-built one, each evaluated with
running and with batch statistics.

Both arms are evaluated on the **same images under the same protocol** (:data:`MNIST_VIEW`): the planted
MNIST agree view, the mnist5k test digits each carrying the planted NRF of its own class, so the label is
readable from the digit (what the attack-built arm's features come from) and from the planted NRF (what the
planted arm's label carries). A difference between the arms is then a difference of the models, not of
their test sets."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nrflab.core.logs import get_logger
from nrflab.data.planted import PlantedSpec, dataset_name, make_views, spec_from_params
from nrflab.experiments.engine import BuildTask, Task, TrainTask
from nrflab.experiments.planted.measurement import cached_result
from nrflab.experiments.planted.runs import PlantedTrainTask, recipe
from nrflab.experiments.planted.settings import Settings
from nrflab.measure.predict import predict
from nrflab.measure.reliance import STATISTICS, RelianceViews
from nrflab.models.checkpoint import load_model
from nrflab.runs.rundir import RunDir

log = get_logger("planted")

#: The one evaluation view of both arms of the MNIST diagnostic (same images, same statistics protocols).
MNIST_VIEW = (
    "both arms on the same images: the planted MNIST agree view (mnist5k test digits, each with the planted NRF "
    "of its own class), with running and with batch statistics"
)


def mnist_eval_view(spec: PlantedSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels both arms are evaluated on: the planted MNIST agree view (:data:`MNIST_VIEW`)."""
    views = RelianceViews.from_samples(make_views(spec))
    return views.agree_x, views.agree_y


def mnist_spec(s: Settings) -> PlantedSpec:
    """The planted MNIST D_rand: the digit is the RF, the NRF of norm ``mnist_a_n`` carries the label."""
    return spec_from_params(
        {
            "rf": "mnist",
            "variant": "drand",
            "a_n": f"{s.mnist_a_n:g}",
            "train": str(s.mnist_train),
            "seed": str(s.data_seed),
            "sample_seed": str(s.data_seed),
        }
    )


def mnist_tasks(s: Settings, home: Path) -> list[Task]:
    """The MNIST chain as engine tasks: a BN source on mnist5k, the attack-built D_rand from it, and per seed
    a BN model on the planted MNIST D_rand and one on the attack-built D_rand."""
    home = home / "mnist"
    spec = mnist_spec(s)
    source = TrainTask(
        str(home / "source"),
        recipe(s, dataset="mnist5k", norm="bn", seed=0, epochs=s.mnist_source_epochs).model_dump(),
        threads=s.run_threads,
    )
    built = BuildTask(
        str(home / "d_rand"),
        "d_rand",
        source.key,
        "mnist5k",
        {
            "steps": s.mnist_build_steps,
            "eps": s.mnist_build_eps,
            "step_size": s.mnist_build_step,
            "limit": s.mnist_train,
            "seed": 0,
        },
        device=s.device,
        after=(source.key,),
        threads=s.run_threads,
    )
    tasks: list[Task] = [source, built]
    for seed in list(s.seeds)[: s.mnist_seeds]:
        planted_cfg = recipe(s, dataset=dataset_name(spec), norm="bn", seed=seed)
        attack_cfg = recipe(s, dataset=built.key, base_dataset="mnist5k", norm="bn", seed=seed)
        tasks += [
            PlantedTrainTask(
                str(home / f"planted-bn-s{seed}"),
                planted_cfg.model_dump(),
                threads=s.run_threads,
                spec=spec,
                probe_size=s.probe_size,
            ),
            TrainTask(
                str(home / f"attack-bn-s{seed}"), attack_cfg.model_dump(), after=(built.key,), threads=s.run_threads
            ),
        ]
    return tasks


@dataclass(frozen=True)
class MnistQuestion:
    """The MNIST question's numbers: per arm (``planted``, ``attack``) one :func:`statistics_row` per seed (in
    ``seeds`` order), the planted MNIST spec and the number of evaluated images."""

    rows: Mapping[str, Sequence[Mapping[str, float]]]
    seeds: Sequence[int]
    spec: PlantedSpec
    n: int


def mnist_question(out: Path, s: Settings) -> MnistQuestion:
    """BN on the planted MNIST D_rand vs on the attack-built MNIST D_rand, running vs batch statistics, read
    from the finished runs of :func:`mnist_tasks` (cached next to each run)."""
    home = out / "mnist"
    mseeds = list(s.seeds)[: s.mnist_seeds]
    spec = mnist_spec(s)
    x, y = mnist_eval_view(spec)
    rows: dict[str, list[dict[str, float]]] = {"planted": [], "attack": []}
    for seed in mseeds:
        for kind, run_dir in (("planted", home / f"planted-bn-s{seed}"), ("attack", home / f"attack-bn-s{seed}")):
            key = {"n": int(y.shape[0]), "batch": s.stat_batch, "view": "planted-agree", "version": 3}
            rows[kind].append(
                cached_result(
                    Path(run_dir) / "planted_stats.json",
                    key,
                    functools.partial(statistics_row_of, Path(run_dir), x, y, s),
                )
            )
    log.debug("MNIST question: %d seed(s) done", len(mseeds))
    return MnistQuestion(rows=rows, seeds=mseeds, spec=spec, n=int(y.shape[0]))


def statistics_row_of(run_dir: Path, x: torch.Tensor, y: torch.Tensor, s: Settings) -> dict[str, float]:
    """:func:`statistics_row` of the run in ``run_dir`` and its final training accuracy (the guard's)."""
    train_acc = RunDir(run_dir).read_metrics()[-1].get("train_acc", math.nan)
    return {**statistics_row(load_model(run_dir), x, y, s), "train_acc": float(train_acc)}


def statistics_row(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> dict[str, float]:
    """Accuracy and the most frequent class's share of the predictions, with running and batch statistics."""
    row = {}
    for stats, protocol in STATISTICS.items():
        pred = predict(model, x, batch_size=s.stat_batch, protocol=protocol)
        row[f"{stats}_acc"] = float((pred == y).float().mean())
        row[f"{stats}_top"] = float(torch.bincount(pred).max()) / len(pred)
    return row


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

"""Training and measuring every planted run (and the MNIST chain), in this process or in worker processes."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from nrflab.core.logs import get_logger
from nrflab.experiments.planted.measurement import Measured, measure
from nrflab.experiments.planted.mnist import mnist_question
from nrflab.experiments.planted.runs import PlantedRun, torch_threads, train_run
from nrflab.experiments.planted.settings import Settings

log = get_logger("planted")


def train_and_measure(run: PlantedRun, s: Settings, out: Path, progress: bool) -> tuple[Path, dict[str, float]]:
    """One run trained (or reused) and measured, on one torch thread (a worker's whole job)."""
    with torch_threads(1):
        run_dir = train_run(run, s, out, progress=progress)
        return run_dir, measure(run, run_dir, s)


def mnist_job(out: Path, s: Settings, seeds: Sequence[int], progress: bool) -> dict[str, Any]:
    with torch_threads(1):
        return mnist_question(out, s, seeds, progress=progress)


def train_all(
    runs: Sequence[PlantedRun],
    s: Settings,
    out: Path,
    seeds: Sequence[int],
    *,
    progress: bool,
    started: float,
) -> tuple[Measured, dict[str, Any] | None]:
    """Train and measure every run (and the MNIST chain), in ``s.workers`` processes when > 1.

    Workers are spawned processes with one torch thread each; the MNIST chain (source, build, twins) goes
    first so it overlaps the planted runs. In a daemonic process (which may not have children) everything
    runs here.
    """
    m = Measured({}, {})
    done = 0

    def record(r: PlantedRun, result: tuple[Path, dict[str, float]]) -> None:
        nonlocal done
        m.dirs[(r.key, r.norm, r.seed)], m.values[(r.key, r.norm, r.seed)] = result
        done += 1
        if done % 10 == 0 or done == len(runs):
            log.info("planted: %d/%d runs (%.0f s)", done, len(runs), time.perf_counter() - started)

    parallel = s.workers > 1 and not multiprocessing.current_process().daemon
    if not parallel:
        for r in runs:
            record(r, train_and_measure(r, s, out, progress))
        return m, (mnist_job(out, s, seeds, progress) if s.mnist else None)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=s.workers, mp_context=ctx) as pool:
        mnist_future = pool.submit(mnist_job, out, s, list(seeds), False) if s.mnist else None
        futures = {pool.submit(train_and_measure, r, s, out, False): r for r in runs}
        for future in as_completed(futures):
            record(futures[future], future.result())
        mnist = mnist_future.result() if mnist_future is not None else None
    return m, mnist


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package

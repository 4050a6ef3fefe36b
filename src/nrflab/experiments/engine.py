"""The experiment engine: the runs experiments need, as tasks with dependencies, run once each, in
dependency order, in this process, in parallel local processes or as Ray tasks on a cluster.

Tasks:

* :class:`TrainTask` -- one training run (``train_or_reuse``: a finished run of the same recipe is reused,
  an interrupted one resumes, a run of another recipe is refused in one line);
* :class:`BuildTask` -- one feature dataset (``build_dataset`` with resume: finished shards are kept);
* :class:`CallTask` -- a whole function-style experiment (``module:function``), whose return value the
  experiment's analysis reads.

A task is keyed by the directory it writes; experiments that plan the same directory with the same task
share it, with different tasks it is a one-line error before anything runs. Every task checks, before the
chain starts, that its directory holds nothing of another recipe. Workers and Ray tasks run the same
function, :func:`run_task`, and each limits torch to its share of the CPU threads, so a chain gives the
same numbers in this process, in local workers and on a cluster (for the same threads per run).
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch

from nrflab.core.errors import NrflabError
from nrflab.core.logs import get_logger
from nrflab.core.validation import check_device_name
from nrflab.data import check_dataset_loads
from nrflab.runs.rundir import RunDir

log = get_logger("engine")

BACKENDS = ("local", "ray")
Backend = Literal["local", "ray"]
Status = Literal["finished", "reused", "failed", "skipped"]


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class TrainTask:
    """One training run into ``key`` (a run directory). ``train_size`` takes a seeded random subset of
    the training set (``subset_seed``); the subset is part of the run's identity."""

    key: str
    config: Mapping[str, Any]
    train_size: Optional[int] = None
    subset_seed: int = 0
    after: tuple[str, ...] = ()
    kind: Literal["train"] = "train"

    @property
    def label(self) -> str:
        return _short_path(self.key)

    def check(self) -> None:
        """Refuse, before anything runs, a directory that holds a run of another recipe or subset."""
        from nrflab.training import TrainConfig, run_differences

        run = RunDir(self.key)
        if not (run.is_run() and run.config_path.is_file()):
            return
        cfg = TrainConfig.model_validate(dict(self.config))
        diff = run_differences(run, cfg)
        if diff:
            raise NrflabError(
                f"{self.key} holds a run of another recipe ({'; '.join(diff[:4])}); delete it or "
                "choose another output directory"
            )
        self._check_subset(run)

    def _check_subset(self, run: RunDir) -> None:
        if self.train_size is None:
            return
        recorded = run.read_config().get("resolved", {}).get("dataset", {}).get("train_size")
        if recorded is not None and int(recorded) != int(self.train_size):
            raise NrflabError(
                f"{self.key} holds a run trained on {recorded} images, not {self.train_size}; "
                "delete it or choose another output directory"
            )

    def done(self) -> bool:
        from nrflab.training import TrainConfig, run_differences

        run = RunDir(self.key)
        if not (run.is_run() and run.config_path.is_file()):
            return False
        status = run.status()
        cfg = TrainConfig.model_validate(dict(self.config))
        return bool(status and status.finished and not run_differences(run, cfg))

    def bundle(self) -> Any:
        """The dataset the run trains on (the seeded subset when ``train_size`` is set)."""
        from nrflab.data import load_dataset

        bundle = load_dataset(str(self.config["dataset"]), root=self.config.get("data_root"))
        return subset_bundle(bundle, self.train_size, self.subset_seed)

    def run(self, progress: bool) -> Any:
        from nrflab.training import TrainConfig, train_or_reuse

        cfg = TrainConfig.model_validate(dict(self.config))
        run = RunDir(self.key)
        if run.is_run() and run.config_path.is_file():
            self._check_subset(run)
        return str(train_or_reuse(cfg, self.key, progress=progress, bundle=self.bundle()))


@dataclass(frozen=True)
class BuildTask:
    """One feature dataset built into ``key`` from the run ``source`` (``build_dataset`` with resume)."""

    key: str
    build_kind: str
    source: str
    dataset: Optional[str]
    settings: Mapping[str, Any]
    data_root: Optional[str] = None
    base: Optional[str] = None
    device: str = "auto"
    after: tuple[str, ...] = ()
    kind: Literal["build"] = "build"

    @property
    def label(self) -> str:
        return _short_path(self.key)

    def check(self) -> None:
        if RunDir(self.key).is_run():
            raise NrflabError(f"{self.key} holds a training run, not a built dataset; choose another output directory")

    def done(self) -> bool:
        from nrflab.data.built import is_built_dataset, read_card
        from nrflab.features import make_settings, sha256_file

        if not is_built_dataset(self.key):
            return False
        try:
            card = read_card(self.key)
        except NrflabError:
            return False
        if not card.complete:
            return False
        wanted = make_settings(self.build_kind, **dict(self.settings)).to_dict()
        model = RunDir(self.source).model_path
        return card.identity.get("settings") == wanted and model.is_file() and card.source_sha256 == sha256_file(model)

    def run(self, progress: bool) -> Any:
        from nrflab.features import build_dataset

        result = build_dataset(
            self.build_kind,
            self.source,
            self.dataset,
            self.key,
            data_root=self.data_root,
            base=self.base,
            device=self.device,
            resume=True,
            progress=progress,
            **dict(self.settings),
        )
        return str(result.out_dir)


@dataclass(frozen=True)
class CallTask:
    """A function-style experiment, ``target`` = ``module:function``, called with ``kwargs`` (plus
    ``progress``). Its return value travels back to the analysis; it runs again on every chain (the
    function reuses its own finished runs)."""

    key: str
    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    #: ``module:function`` answering, from the same keyword arguments, whether the work is already done.
    done_target: Optional[str] = None
    kind: Literal["call"] = "call"

    @property
    def label(self) -> str:
        return f"{self.target} ({_short_path(self.key)})"

    def check(self) -> None:
        _resolve(self.target)

    def done(self) -> bool:
        if self.done_target is None or not all(Path(d).is_dir() or "#" in d for d in self.after):
            return False
        try:
            return bool(_resolve(self.done_target)(**dict(self.kwargs)))
        except NrflabError:
            return False

    def run(self, progress: bool) -> Any:
        return _resolve(self.target)(**dict(self.kwargs), progress=progress)


Task = Union[TrainTask, BuildTask, CallTask]


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise NrflabError(f"experiment function {target} is not available in this installation") from None
    return fn  # type: ignore[no-any-return]


def _short_path(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[-3:]) if len(parts) > 3 else str(path)


def subset_bundle(bundle: Any, train_size: int | None, seed: int) -> Any:
    """``bundle`` with a seeded random subset of ``train_size`` training images (sorted indices; the
    embedded sets are sorted by class, so a prefix would not do); the bundle itself when None or larger."""
    import dataclasses

    if train_size is None or train_size >= len(bundle.train):
        return bundle
    idx = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(seed))[:train_size]
    return dataclasses.replace(bundle, train=bundle.train.subset(idx.sort().values))


# ---------------------------------------------------------------------------------------------
# One task, in any process


@dataclass(frozen=True)
class TaskResult:
    """What happened to one task; ``value`` is what it returned (a run directory, sections, ...)."""

    key: str
    status: Status
    seconds: float = 0.0
    error: Optional[str] = None
    value: Any = None
    where: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("finished", "reused")


def run_task(task: Task, *, threads: int | None = None, progress: bool = False, verbose: bool = False) -> TaskResult:
    """Run one task; never raises for a failed task (its one-line error is returned)."""
    from nrflab.core.logs import scoped
    from nrflab.training.sweep import error_line

    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    where = worker_name()
    try:
        if task.done():
            return TaskResult(task.key, "reused", 0.0, None, task.key, where)
        with scoped(prefix=f"[{task.label}] ", quiet=not verbose):
            value = task.run(progress)
        return TaskResult(task.key, "finished", time.perf_counter() - t0, None, value, where)
    except Exception as exc:  # a failed task is recorded; independent ones go on
        return TaskResult(task.key, "failed", time.perf_counter() - t0, error_line(exc), None, where)


def worker_name() -> str:
    """Where a task runs: host and process, and the Ray node when it runs in a Ray worker."""
    import socket
    import sys

    name = f"{socket.gethostname()} pid {os.getpid()}"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            name += f" ray node {ray.get_runtime_context().get_node_id()[:12]}"
        except Exception:  # pragma: no cover - outside a task
            pass
    return name


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.setdefault("MPLBACKEND", "Agg")


# ---------------------------------------------------------------------------------------------
# The graph


def merge_tasks(tasks: Sequence[Task]) -> list[Task]:
    """One task per key (identical duplicates merged, their dependencies joined); conflicting tasks for
    one directory are a one-line error. Dependencies must name planned tasks; no cycles."""
    merged: dict[str, Task] = {}
    for t in tasks:
        old = merged.get(t.key)
        if old is None:
            merged[t.key] = t
            continue
        if replace(old, after=()) != replace(t, after=()):
            raise NrflabError(
                f"two experiments plan {t.key} differently ({_difference(old, t)}); give them the "
                "same settings for it or separate output directories"
            )
        merged[t.key] = replace(old, after=tuple(dict.fromkeys(old.after + t.after)))
    for t in merged.values():
        missing = [d for d in t.after if d not in merged]
        if missing:
            raise NrflabError(f"task {t.label} depends on {missing[0]}, which no experiment plans")
    topological_order(list(merged.values()))
    return list(merged.values())


def _difference(a: Task, b: Task) -> str:
    if isinstance(a, TrainTask) and isinstance(b, TrainTask):
        from nrflab.runs.rundir import config_diff

        diff = config_diff(dict(a.config), dict(b.config))
        if a.train_size != b.train_size:
            diff.append(f"train_size: {a.train_size} -> {b.train_size}")
        return "; ".join(diff[:3]) or "subset"
    return f"{a.kind} vs {b.kind}" if a.kind != b.kind else "settings differ"


def topological_order(tasks: Sequence[Task]) -> list[Task]:
    """Tasks in an order that respects ``after`` (stable); a cycle is an error."""
    by_key = {t.key: t for t in tasks}
    order: list[Task] = []
    state: dict[str, int] = {}

    def visit(key: str, stack: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise NrflabError(f"tasks depend on each other in a cycle: {' -> '.join(stack + (key,))}")
        state[key] = 1
        for dep in by_key[key].after:
            if dep in by_key:
                visit(dep, stack + (key,))
        state[key] = 2
        order.append(by_key[key])

    for t in tasks:
        visit(t.key, ())
    return order


# ---------------------------------------------------------------------------------------------
# Execution


Done = Callable[[TaskResult], None]


def execute(
    tasks: Sequence[Task],
    *,
    workers: int = 1,
    backend: Backend = "local",
    ray_address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    threads: int | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> dict[str, TaskResult]:
    """Run every task once, dependencies first; independent tasks in parallel (``workers`` local processes,
    or Ray tasks). A failed task's dependents are skipped; the others go on. Returns results by key."""
    if backend not in BACKENDS:
        raise NrflabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise NrflabError(f"workers must be an integer >= 1, got {workers!r}")
    if cpus_per_run <= 0 or gpus_per_run < 0:
        raise NrflabError("cpus per run must be > 0 and gpus per run >= 0")
    ordered = topological_order(merge_tasks(tasks))
    for t in ordered:
        t.check()
    results: dict[str, TaskResult] = {}
    total = len(ordered)

    def record(result: TaskResult) -> None:
        results[result.key] = result
        word = {
            "finished": f"finished in {result.seconds:.1f} s",
            "reused": "already finished",
            "failed": f"FAILED: {result.error}",
            "skipped": f"skipped: {result.error}",
        }[result.status]
        label = next(t.label for t in ordered if t.key == result.key)
        (log.warning if result.status in ("failed", "skipped") else log.info)(
            f"[{len(results)}/{total}] {label}: {word}"
        )

    pending = [t for t in ordered]
    if backend == "ray":
        _run_ray(pending, record, results, ray_address, cpus_per_run, gpus_per_run, threads, verbose)
    elif workers == 1:
        for t in pending:
            blocked = _blocked(t, results)
            if blocked:
                record(TaskResult(t.key, "skipped", error=blocked))
                continue
            record(run_task(t, threads=threads, progress=progress, verbose=True))
    else:
        _run_pool(pending, record, results, workers, threads, verbose)
    return results


def preflight(tasks: Sequence[Task]) -> None:
    """Refuse in one line, before the first task runs, what would make tasks fail one by one: a device this
    machine cannot use, a dataset that is unknown or whose files are missing. Datasets the chain builds itself
    (a build task's directory) are left to the tasks."""
    built = {str(Path(t.key)) for t in tasks if isinstance(t, BuildTask)}
    checked: set[tuple[str, str | None]] = set()
    for t in tasks:
        if isinstance(t, TrainTask):
            device, dataset, root = (
                str(t.config.get("device", "auto")),
                t.config.get("dataset"),
                t.config.get("data_root"),
            )
        elif isinstance(t, BuildTask):
            device, dataset, root = t.device, t.dataset, t.data_root
        else:
            continue
        try:
            check_device_name(device)
            if dataset is not None and str(Path(str(dataset))) not in built:
                check_dataset_loads(str(dataset), None if root is None else str(root), checked)
        except NrflabError as exc:
            raise NrflabError(f"{t.label}: {exc}") from None


def _blocked(task: Task, results: Mapping[str, TaskResult]) -> str | None:
    for dep in task.after:
        r = results.get(dep)
        if r is not None and not r.ok:
            return f"needs {_short_path(dep)}, which {'failed' if r.status == 'failed' else 'was skipped'}"
    return None


def _ready(task: Task, results: Mapping[str, TaskResult]) -> bool:
    return all(dep in results for dep in task.after)


def _schedule(
    pending: list[Task], results: dict[str, TaskResult], record: Done, submit: Callable[[Task], None]
) -> None:
    """Submit every pending task whose dependencies are done (skipping those with a failed dependency)."""
    progressed = True
    while progressed:
        progressed = False
        for t in list(pending):
            if not _ready(t, results):
                continue
            pending.remove(t)
            blocked = _blocked(t, results)
            if blocked:
                record(TaskResult(t.key, "skipped", error=blocked))
                progressed = True
            elif t.done():  # nothing to do: no worker needed
                record(TaskResult(t.key, "reused", 0.0, None, t.key))
                progressed = True
            else:
                submit(t)


def _run_pool(
    pending: list[Task], record: Done, results: dict[str, TaskResult], workers: int, threads: int | None, verbose: bool
) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
    running: dict[Future[TaskResult], Task] = {}
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(per_worker,),
    ) as pool:

        def submit(t: Task) -> None:
            running[pool.submit(run_task, t, threads=per_worker, progress=False, verbose=verbose)] = t

        _schedule(pending, results, record, submit)
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                task = running.pop(fut)
                try:
                    record(fut.result())
                except Exception as exc:  # the worker process died
                    record(TaskResult(task.key, "failed", error=f"worker died: {type(exc).__name__}: {exc}"))
            _schedule(pending, results, record, submit)


def _run_ray(
    pending: list[Task],
    record: Done,
    results: dict[str, TaskResult],
    address: str | None,
    cpus_per_run: float,
    gpus_per_run: float,
    threads: int | None,
    verbose: bool,
) -> None:
    """One Ray task per engine task on the cluster at ``address`` (or a local Ray instance, or the one
    already initialized by the caller). Every node must see the output directory at the same path."""
    try:
        import ray
    except ImportError:
        raise NrflabError("the ray backend needs Ray: pip install ray (or nrflab[cluster])") from None
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, log_to_driver=verbose)
    elif started:
        ray.init(include_dashboard=False, log_to_driver=verbose)
    try:
        remote: Any = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(run_task)
        threads = threads or max(1, int(math.floor(cpus_per_run)))
        running: dict[Any, Task] = {}

        def submit(t: Task) -> None:
            running[remote.remote(t, threads=threads, progress=False, verbose=verbose)] = t

        _schedule(pending, results, record, submit)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                task = running.pop(ref)
                try:
                    record(ray.get(ref))
                except Exception as exc:  # the task's worker died
                    record(TaskResult(task.key, "failed", error=f"ray task failed: {type(exc).__name__}"))
            _schedule(pending, results, record, submit)
    finally:
        if started:
            ray.shutdown()


__all__ = [
    "BACKENDS",
    "CallTask",
    "TrainTask",
    "merge_tasks",
    "topological_order",
]

"""Sweeps: one base training config times a grid of overrides, one run directory per grid point.

Run directories are named from their grid values (``norm=bn,seed=0``) under the sweep's output
directory, next to ``sweep.json`` (base config, grid, every run's status, rewritten atomically as runs
finish) and ``summary.csv`` (grid values + each run's final metrics row). Finished runs are skipped and
interrupted ones resume, so re-running a sweep continues where it stopped. Runs go sequentially in
this process, in parallel local processes, or as Ray tasks on a cluster (whose workers must see OUT
on a shared filesystem).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch

from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_write_json, atomic_write_text, read_yaml_mapping
from nrflab.core.logs import get_logger
from nrflab.core.validation import check_device_name
from nrflab.data import check_dataset_loads
from nrflab.runs.rundir import RunDir, check_output_path, locked
from nrflab.training import TrainConfig, make_config, run_differences, train

log = get_logger("sweep")

SWEEP_FILE = "sweep.json"
SUMMARY_FILE = "summary.csv"
BACKENDS = ("local", "ray")
MAX_NAME = 120
Backend = Literal["local", "ray"]


@dataclass(frozen=True)
class SweepRun:
    """One grid point: its values, its run directory name and its fully resolved config."""

    name: str
    values: dict[str, Any]
    config: TrainConfig


@dataclass
class RunRecord:
    """What happened to one run: ``pending``, ``interrupted`` (before starting), ``finished`` or ``failed``."""

    name: str
    values: dict[str, Any]
    status: str = "pending"
    skipped: bool = False
    error: Optional[str] = None
    seconds: Optional[float] = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "values": self.values,
            "status": self.status,
            "skipped": self.skipped,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass
class SweepResult:
    out_dir: Path
    runs: list[RunRecord]

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "failed"]


# ---------------------------------------------------------------------------------------------
# Planning: grid expansion, names, up-front validation


def config_key(key: str) -> str:
    """A TrainConfig field name from a user-written key (dashes allowed), or a one-line error."""
    name = key.strip().replace("-", "_")
    if name not in TrainConfig.model_fields:
        raise NrflabError(f"unknown config key {key!r}; known keys: {', '.join(TrainConfig.model_fields)}")
    return name


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the grid, keys in the given order, the last key varying fastest."""
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise NrflabError(f"grid key {key!r} needs a non-empty list of values")
        if len({format_value(v) for v in values}) != len(values):
            raise NrflabError(f"grid key {key!r} repeats a value: {list(values)}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def format_value(value: Any) -> str:
    """A grid value as it appears in a run name: YAML-like scalars, lists joined with '+'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    return str(value)


def run_name(values: Mapping[str, Any]) -> str:
    """``key=value,key=value`` with anything but letters, digits and ``._=,+-`` replaced by ``_``;
    overlong names are cut and given a stable hash suffix."""
    import hashlib

    raw = ",".join(f"{k}={format_value(v)}" for k, v in values.items()) or "base"
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", raw)
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 9]}~{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
    return name


def base_fields(base: Mapping[str, Any] | str | Path | None) -> dict[str, Any]:
    """The base config as a dict of fields: a mapping as is, a recipe file read as YAML/JSON."""
    if base is None:
        return {}
    if isinstance(base, Mapping):
        return dict(base)
    data = read_yaml_mapping(base, "config file")
    data.pop("resolved", None)
    return data


def plan_sweep(
    base: Mapping[str, Any] | str | Path | None,
    grid: Mapping[str, Sequence[Any]],
    overrides: Mapping[str, Any] | None = None,
) -> list[SweepRun]:
    """Every grid point's resolved config, validated before anything trains (first problem: one line)."""
    from nrflab.models import check_arch, check_norm

    fields = base_fields(base)
    grid = {config_key(k): list(v) for k, v in grid.items()}
    fixed = {config_key(k): v for k, v in (overrides or {}).items()}
    clash = sorted(set(grid) & set(fixed))
    if clash:
        raise NrflabError(f"{', '.join(clash)} is both a grid key and a fixed override")
    runs: list[SweepRun] = []
    seen: dict[str, dict[str, Any]] = {}
    checked: set[tuple[str, str | None]] = set()
    for values in expand_grid(grid):
        name = run_name(values)
        if name in seen:
            raise NrflabError(f"grid points {seen[name]} and {values} map to the same run directory {name!r}")
        seen[name] = values
        try:
            cfg = make_config(**{**fields, **fixed, **values})
            check_arch(cfg.arch)
            check_norm(cfg.norm)
            check_device_name(cfg.device)
            check_dataset_loads(cfg.dataset, cfg.data_root, checked)
        except NrflabError as exc:
            raise NrflabError(f"grid point {name}: {exc}") from None
        runs.append(SweepRun(name, values, cfg))
    return runs


# ---------------------------------------------------------------------------------------------
# One run (the same function in-process, in a worker process and in a Ray task)


def existing_state(run_dir: Path, cfg: TrainConfig) -> str:
    """``finished`` (nothing to do), ``interrupted`` (resume it) or ``new``."""
    run = RunDir(run_dir)
    if not run.is_run():
        return "new"
    status = run.status()
    if status is not None and status.finished and run.config_path.is_file() and not run_differences(run, cfg):
        return "finished"
    return "interrupted"  # the trainer resumes it, or refuses in one line if its config differs


def error_line(exc: BaseException) -> str:
    """One line for a failed run: an NrflabError's message, else the exception type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NrflabError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_one(config: dict[str, Any], run_dir: str, verbose: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Train (or skip, or resume) one run; never raises for a failed run: returns its status and error."""
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    path = Path(run_dir)
    try:
        cfg = TrainConfig.model_validate(config)
        state = existing_state(path, cfg)
        if state != "finished":
            from nrflab.core.logs import scoped

            with scoped(prefix=f"[{path.name}] ", quiet=not verbose):
                train(cfg, path, resume=state == "interrupted", progress=False)
        last = RunDir(path).read_metrics()[-1]
        return {
            "status": "finished",
            "skipped": state == "finished",
            "error": None,
            "metrics": last,
            "seconds": time.perf_counter() - t0,
        }
    except Exception as exc:  # a failed run is recorded; the others go on
        return {
            "status": "failed",
            "skipped": False,
            "error": error_line(exc),
            "metrics": {},
            "seconds": time.perf_counter() - t0,
        }


def _set_worker_threads(threads: int) -> None:
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Backends: each calls ``done(index, result)`` as runs finish


Job = tuple[dict[str, Any], str, bool]
Done = Callable[[int, dict[str, Any]], None]


def _run_local(jobs: list[Job], done: Done, workers: int) -> None:
    """Sequentially in this process, or in ``workers`` spawned processes sharing the CPU cores."""
    if workers <= 1:
        for i, job in enumerate(jobs):
            done(i, run_one(*job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_set_worker_threads,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(run_one, *job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            done(futures[fut], fut.result())


def _run_ray(jobs: list[Job], done: Done, address: str | None, cpus_per_run: float, gpus_per_run: float) -> None:
    """One Ray task per run on the cluster at ``address`` (or a local Ray instance, or the one already
    initialized by the caller)."""
    try:
        import ray
    except ImportError:
        raise NrflabError("the ray backend needs Ray: pip install ray (or nrflab[cluster])") from None
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address)
    elif started:
        ray.init(include_dashboard=False)
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(run_one)
        threads = max(1, int(cpus_per_run))
        refs = {task.remote(*job, threads=threads): i for i, job in enumerate(jobs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done(refs[ref], ray.get(ref))
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------
# The sweep


def _write_sweep_json(
    out: Path,
    recipe: str | None,
    base: dict[str, Any],
    overrides: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    backend: str,
    records: list[RunRecord],
) -> None:
    atomic_write_json(
        out / SWEEP_FILE,
        {
            "recipe": recipe,
            "base": base,
            "overrides": dict(overrides),
            "grid": {k: list(v) for k, v in grid.items()},
            "backend": backend,
            "runs": [r.to_json() for r in records],
        },
    )


def summary_columns(records: Sequence[RunRecord]) -> list[str]:
    """run, the grid keys, status, then every metrics column in first-seen order."""
    keys = list(records[0].values) if records else []
    cols = ["run", *keys, "status"]
    for r in records:
        cols += [k for k in r.metrics if k not in cols]
    return cols


def write_summary(out: Path, records: Sequence[RunRecord]) -> Path:
    """``summary.csv``: one row per run, grid values + its final metrics row (empty for failed runs)."""
    cols = summary_columns(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        row: dict[str, Any] = {"run": r.name, "status": r.status}
        row.update({k: format_value(v) for k, v in r.values.items()})
        row.update({k: ("" if math.isnan(v) else f"{v:.6g}") for k, v in r.metrics.items()})
        writer.writerow(row)
    atomic_write_text(out / SUMMARY_FILE, buf.getvalue())
    return out / SUMMARY_FILE


def run_sweep(
    base: Mapping[str, Any] | str | Path | None,
    grid: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    backend: Backend = "local",
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    verbose: bool = False,
) -> SweepResult:
    """Train every grid point under ``out_dir`` (skipping finished runs, resuming interrupted ones)."""
    if backend not in BACKENDS:
        raise NrflabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if workers < 1 or cpus_per_run <= 0 or gpus_per_run < 0:
        raise NrflabError("workers and cpus per run must be >= 1 and > 0, gpus per run >= 0")
    runs = plan_sweep(base, grid, overrides)
    out = check_output_path(out_dir, what="sweep directory")
    with locked(out, what="sweep directory"):
        return _run_sweep(
            runs, base, grid, out, overrides, backend, workers, ray_address, cpus_per_run, gpus_per_run, verbose
        )


def _run_sweep(
    runs: list[SweepRun],
    base: Mapping[str, Any] | str | Path | None,
    grid: Mapping[str, Sequence[Any]],
    out: Path,
    overrides: Mapping[str, Any] | None,
    backend: Backend,
    workers: int,
    ray_address: str | None,
    cpus_per_run: float,
    gpus_per_run: float,
    verbose: bool,
) -> SweepResult:
    recipe = str(base) if isinstance(base, (str, Path)) else None
    base_dict = base_fields(base)
    records = [RunRecord(r.name, r.values, status=_initial_status(out / r.name, r.config)) for r in runs]

    def save() -> None:
        _write_sweep_json(out, recipe, base_dict, overrides or {}, grid, backend, records)

    save()
    jobs: list[Job] = [(r.config.model_dump(), str(out / r.name), verbose) for r in runs]
    count = {"done": 0}

    def done(i: int, result: dict[str, Any]) -> None:
        rec = records[i]
        rec.status, rec.skipped, rec.error = result["status"], result["skipped"], result["error"]
        rec.seconds, rec.metrics = result["seconds"], dict(result["metrics"])
        count["done"] += 1
        save()
        log.info(f"[{count['done']}/{len(records)}] {progress_line(rec)}")

    if backend == "ray":
        _run_ray(jobs, done, ray_address, cpus_per_run, gpus_per_run)
    else:
        _run_local(jobs, done, workers)
    write_summary(out, records)
    return SweepResult(out, records)


def _initial_status(run_dir: Path, cfg: TrainConfig) -> str:
    try:
        state = existing_state(run_dir, cfg)
    except NrflabError:
        return "pending"
    return {"new": "pending"}.get(state, state)


def progress_line(rec: RunRecord) -> str:
    """``name: finished (skipped) clean 97.1% ...`` or ``name: failed: <error>``."""
    if rec.status == "failed":
        return f"{rec.name}: failed: {rec.error}"
    parts = [f"{rec.name}: {'already finished' if rec.skipped else f'finished in {rec.seconds or 0:.1f}s'}"]
    m = rec.metrics
    if "clean_acc" in m:
        parts.append(f"clean {100 * m['clean_acc']:.1f}%")
    parts += [f"{k[len('robust_acc[') : -1]} {100 * v:.1f}%" for k, v in m.items() if k.startswith("robust_acc[")]
    if "ligs" in m and not math.isnan(m["ligs"]):
        parts.append(f"LIGS {m['ligs']:.3f}")
    return "  ".join(parts)


def summary_table(result: SweepResult) -> str:
    """A Markdown table of the runs: grid values, status and the accuracy/LIGS columns."""
    from nrflab.report.document import markdown_table

    cols = [
        c
        for c in summary_columns(result.runs)
        if c != "run"
        and c not in ("epoch", "lr", "train_loss", "train_acc", "logit_sim", "epoch_time", "eval_time", "wall_time")
    ]
    rows = []
    for r in result.runs:
        cells = {"status": r.status, **{k: format_value(v) for k, v in r.values.items()}}
        cells.update({k: f"{v:.4g}" for k, v in r.metrics.items() if not math.isnan(v)})
        rows.append([cells.get(c, "") for c in cols])
    return markdown_table(cols, rows)


__all__ = [
    "run_name",
    "run_sweep",
    "summary_table",
]

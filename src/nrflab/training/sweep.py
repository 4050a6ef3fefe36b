"""Sweeps: one base training config times a grid of overrides, one run directory per grid point.

Run directories are named from their grid values (``norm=bn,seed=0``) under the sweep's output
directory, next to ``sweep.json`` (base config, grid, every run's status, rewritten atomically as runs
finish) and ``summary.csv`` (grid values + each run's final metrics row). Finished runs are skipped and
interrupted ones resume, so re-running a sweep continues where it stopped. A sweep is a list of
:class:`~nrflab.training.task.TrainTask` jobs handed to the one executor (:mod:`nrflab.runs.executor`):
sequentially in this process, in parallel local processes, or as Ray tasks on a cluster (whose workers
must see OUT on a shared filesystem), as its :class:`~nrflab.runs.jobs.Execution` says.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_write_json, atomic_write_text, read_yaml_mapping
from nrflab.core.logs import get_logger
from nrflab.core.records import fields_json
from nrflab.core.validation import check_device_name
from nrflab.data import check_dataset_loads
from nrflab.runs.executor import check_reachable, execute
from nrflab.runs.jobs import Execution, JobResult
from nrflab.runs.rundir import RunDir, check_output_path, locked
from nrflab.training.config import TrainConfig, make_config
from nrflab.training.task import TrainTask

log = get_logger("sweep")

SWEEP_FILE = "sweep.json"
SUMMARY_FILE = "summary.csv"
MAX_NAME = 120


@dataclass(frozen=True)
class SweepRun:
    """One grid point: its values, its run directory name and its fully resolved config."""

    name: str
    values: dict[str, object]
    config: TrainConfig


@dataclass
class RunRecord:
    """What happened to one run: ``pending``, ``interrupted`` (before starting), ``finished`` or ``failed``."""

    name: str
    values: dict[str, object]
    status: str = "pending"
    skipped: bool = False
    error: Optional[str] = None
    seconds: Optional[float] = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The run's entry in sweep.json: every field but ``metrics`` (those go to summary.csv)."""
        return {k: v for k, v in fields_json(self).items() if k != "metrics"}


@dataclass
class SweepResult:
    out_dir: Path
    runs: list[RunRecord]

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "failed"]

    def table(self) -> str:
        """A Markdown table of the runs: grid values, status and the accuracy/LIGS columns."""
        return summary_table(self)


# ---------------------------------------------------------------------------------------------
# Planning: grid expansion, names, up-front validation


def config_key(key: str) -> str:
    """A TrainConfig field name from a user-written key (dashes allowed), or a one-line error."""
    name = key.strip().replace("-", "_")
    if name not in TrainConfig.model_fields:
        raise NrflabError(f"unknown config key {key!r}; known keys: {', '.join(TrainConfig.model_fields)}")
    return name


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, object]]:
    """The cartesian product of the grid, keys in the given order, the last key varying fastest."""
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise NrflabError(f"grid key {key!r} needs a non-empty list of values")
        if len({format_value(v) for v in values}) != len(values):
            raise NrflabError(f"grid key {key!r} repeats a value: {list(values)}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def format_value(value: object) -> str:
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


def base_fields(base: Mapping[str, Any] | str | Path | None) -> dict[str, object]:
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
    *,
    remote: bool = False,
) -> list[SweepRun]:
    """Every grid point's resolved config, validated before anything trains (first problem: one line);
    ``remote``: the runs go to a Ray cluster (``cuda`` not checked against this machine)."""
    from nrflab.models import check_arch, check_norm

    fields = base_fields(base)
    grid = {config_key(k): list(v) for k, v in grid.items()}
    fixed = {config_key(k): v for k, v in (overrides or {}).items()}
    clash = sorted(set(grid) & set(fixed))
    if clash:
        raise NrflabError(f"{', '.join(clash)} is both a grid key and a fixed override")
    runs: list[SweepRun] = []
    seen: dict[str, dict[str, object]] = {}
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
            check_device_name(cfg.device, remote=remote)
            check_dataset_loads(cfg.dataset, cfg.data_root, checked)
        except NrflabError as exc:
            raise NrflabError(f"grid point {name}: {exc}") from None
        runs.append(SweepRun(name, values, cfg))
    return runs


# ---------------------------------------------------------------------------------------------
# The sweep


def _write_sweep_json(
    out: Path,
    recipe: str | None,
    base: Mapping[str, object],
    overrides: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    backend: str,
    records: list[RunRecord],
) -> None:
    atomic_write_json(
        out / SWEEP_FILE,
        {
            "recipe": recipe,
            "base": dict(base),
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
        row: dict[str, str] = {"run": r.name, "status": r.status}
        row.update({k: format_value(v) for k, v in r.values.items()})
        row.update({k: ("" if math.isnan(v) else f"{v:.6g}") for k, v in r.metrics.items()})
        writer.writerow(row)
    atomic_write_text(out / SUMMARY_FILE, buf.getvalue())
    return out / SUMMARY_FILE


def run_sweep(
    base: Mapping[str, Any] | str | Path | None,
    grid: Mapping[str, Sequence[Any]] | Sequence[str],
    out_dir: str | Path,
    *,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    execution: Execution = Execution(progress=False, verbose=False),
) -> SweepResult:
    """Train every grid point under ``out_dir`` (skipping finished runs, resuming interrupted ones), as
    :class:`TrainTask` jobs of the one executor. ``grid`` and ``overrides`` are mappings, or the text the
    command line takes (``["norm=bn,none", "seed=0,1"]``, ``["epochs=5"]``; see :func:`parse_grid`)."""
    grid = grid if isinstance(grid, Mapping) else parse_grid(grid)
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_sets(overrides)
    runs = plan_sweep(base, grid, overrides, remote=execution.backend == "ray")
    check_reachable(execution)
    out = check_output_path(out_dir, what="sweep directory")
    with locked(out, what="sweep directory"):
        return _run_sweep(runs, base, grid, out, overrides or {}, execution)


def _run_sweep(
    runs: list[SweepRun],
    base: Mapping[str, Any] | str | Path | None,
    grid: Mapping[str, Sequence[Any]],
    out: Path,
    overrides: Mapping[str, Any],
    execution: Execution,
) -> SweepResult:
    recipe = str(base) if isinstance(base, (str, Path)) else None
    base_dict = base_fields(base)
    records = [RunRecord(r.name, r.values, status=_initial_status(out / r.name, r.config)) for r in runs]
    by_key = {str(out / r.name): rec for r, rec in zip(runs, records, strict=True)}

    def save() -> None:
        _write_sweep_json(out, recipe, base_dict, overrides, grid, execution.backend, records)

    save()
    count = {"done": 0}

    def report(result: JobResult) -> None:
        rec = by_key[result.key]
        rec.status = "finished" if result.ok else "failed"
        rec.skipped, rec.error, rec.seconds = result.status == "reused", result.error, result.seconds
        rec.metrics = _final_row(result.key) if result.ok else {}
        count["done"] += 1
        save()
        log.info(f"[{count['done']}/{len(records)}] {progress_line(rec)}")

    tasks = [TrainTask(str(out / r.name), r.config.model_dump(), strict=False) for r in runs]
    execute(tasks, execution, report=report)
    write_summary(out, records)
    return SweepResult(out, records)


def _final_row(run_dir: str) -> dict[str, float]:
    try:
        return dict(RunDir(run_dir).read_metrics()[-1])
    except NrflabError:
        return {}


def _initial_status(run_dir: Path, cfg: TrainConfig) -> str:
    """``finished`` (nothing to do), ``interrupted`` (the trainer resumes it, or fails it in one line when
    its recipe differs) or ``pending``."""
    run = RunDir(run_dir)
    try:
        if run.is_finished_with(cfg):
            return "finished"
    except NrflabError:
        return "pending"
    return "interrupted" if run.is_run() else "pending"


def _value(text: str, flag: str, *, scalar: bool) -> Any:
    """A YAML value (int, float, bool, string; lists/mappings too unless ``scalar``)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise NrflabError(f"{flag}: cannot parse value {text!r}") from None
    if scalar and isinstance(value, (list, dict)):
        raise NrflabError(f"{flag}: value {text!r} must be a single number, bool or string")
    return value


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    """``key=value`` -> (key, value), or a one-line error naming the flag."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise NrflabError(f"{flag} expects key=value, got {text!r}")
    return key.strip(), value


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """Grid text as typed (``norm=bn,none``, ``seed=0,1``) -> {"norm": ["bn", "none"], "seed": [0, 1]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, text = _split_assignment(item, "--grid")
        if key in grid:
            raise NrflabError(f"--grid {key} is given twice; list all its values in one --grid {key}=v1,v2")
        parts = [p.strip() for p in text.split(",")]
        if any(not p for p in parts):
            raise NrflabError(f"--grid {key}: empty value in {text!r}")
        grid[key] = [_value(p, f"--grid {key}", scalar=True) for p in parts]
    return grid


def parse_sets(items: Sequence[str]) -> dict[str, object]:
    """Fixed overrides as typed (``epochs=5``, ``'eval_attacks=["pgd-l2:eps=0.5,steps=2"]'``), values read as YAML."""
    out: dict[str, object] = {}
    for item in items:
        key, text = _split_assignment(item, "--set")
        out[key] = _value(text, f"--set {key}", scalar=False)
    return out


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
    from nrflab.core.fmt import markdown_table

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


__all__ = ["run_sweep"]

"""Sweeps: grid expansion and naming, run directories, sweep.json and summary.csv, skipping finished runs,
resuming interrupted ones, up-front validation, failed runs, parallel and Ray backends, on 8x8 digits."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

import nrflab.cli.sweep  # noqa: F401  (registers the command)
from nrflab import training as T
from nrflab.attacks import parse_attack
from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.runs.jobs import Execution
from nrflab.runs.rundir import RunStatus
from nrflab.training import sweep as S

from conftest import capture_log

torch.set_num_threads(1)

ATTACK = "pgd-l2:eps=0.5,steps=2"
ROBUST = f"robust_acc[{parse_attack(ATTACK).label}]"
BASE = dict(
    dataset="digits",
    arch="smallcnn",
    width=0.25,
    epochs=1,
    eval_size=32,
    eval_attacks=[ATTACK],
    ligs=False,
    device="cpu",
)
GRID = {"norm": ["bn", "none"], "seed": [0, 1]}
NAMES = ["norm=bn,seed=0", "norm=bn,seed=1", "norm=none,seed=0", "norm=none,seed=1"]
TIMING = ("epoch_time", "eval_time", "wall_time")


def read_summary(out: Path) -> list[dict[str, str]]:
    with (out / S.SUMMARY_FILE).open(newline="") as fh:
        return list(csv.DictReader(fh))


def untimed(row: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in TIMING}


def mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/metrics.csv")}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, S.SweepResult, list[str]]:
    """A 2x2 sequential sweep (norm x seed), its result and its log lines."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    with capture_log() as lines:
        result = S.run_sweep(BASE, GRID, out)
    return out, result, lines


def test_grid_expands_in_stable_order_with_sanitized_names() -> None:
    points = S.expand_grid({"norm": ["bn", "none"], "seed": [0, 1], "lr": [0.05]})
    assert points == [
        {"norm": "bn", "seed": 0, "lr": 0.05},
        {"norm": "bn", "seed": 1, "lr": 0.05},
        {"norm": "none", "seed": 0, "lr": 0.05},
        {"norm": "none", "seed": 1, "lr": 0.05},
    ]
    assert [S.run_name(p) for p in S.expand_grid(GRID)] == NAMES
    assert S.run_name({"data_root": "/tmp/a b", "ligs": True}) == "data_root=_tmp_a_b,ligs=true"
    assert S.run_name({"eval_attacks": ["fgsm:eps=0.1"]}) == "eval_attacks=fgsm_eps=0.1"
    long = S.run_name({"data_root": "x" * 300})
    assert len(long) <= S.MAX_NAME and long != S.run_name({"data_root": "x" * 299})
    with pytest.raises(NrflabError, match="repeats a value"):
        S.expand_grid({"seed": [0, 0]})
    with pytest.raises(NrflabError, match="non-empty list"):
        S.expand_grid({"seed": []})


def test_plan_resolves_every_point_over_base_and_overrides() -> None:
    runs = S.plan_sweep(BASE, {"norm": ["bn", "gn"]}, overrides={"batch-size": 32})
    assert [r.name for r in runs] == ["norm=bn", "norm=gn"]
    assert [(r.config.norm, r.config.batch_size, r.config.dataset) for r in runs] == [
        ("bn", 32, "digits"),
        ("gn", 32, "digits"),
    ]
    with pytest.raises(NrflabError, match="both a grid key and a fixed override"):
        S.plan_sweep(BASE, {"seed": [0]}, overrides={"seed": 1})


def test_sweep_writes_runs_sweep_json_and_summary(swept) -> None:
    out, result, lines = swept
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == NAMES
    for name in NAMES:
        assert T.run_status(out / name).finished
    meta = json.loads((out / S.SWEEP_FILE).read_text())
    assert meta["grid"] == GRID and meta["base"] == BASE and meta["backend"] == "local"
    assert [(r["name"], r["values"], r["status"], r["error"]) for r in meta["runs"]] == [
        (n, v, "finished", None) for n, v in zip(NAMES, S.expand_grid(GRID))
    ]
    rows = read_summary(out)
    assert list(rows[0])[:4] == ["run", "norm", "seed", "status"]
    assert {"epoch", "clean_acc", ROBUST, "train_loss"} <= set(rows[0])
    assert [(r["run"], r["norm"], r["seed"], r["status"]) for r in rows] == [
        (n, v["norm"], str(v["seed"]), "finished") for n, v in zip(NAMES, S.expand_grid(GRID))
    ]
    for row, name in zip(rows, NAMES):
        last = T.read_metrics(out / name)[-1]
        assert float(row["epoch"]) == 1 and float(row["clean_acc"]) == pytest.approx(last["clean_acc"])
        assert float(row[ROBUST]) == pytest.approx(last[ROBUST])
    assert len(lines) == 4 and lines[0].startswith("[1/4] norm=bn,seed=0: finished") and "clean" in lines[0]
    assert not result.failed and [r.skipped for r in result.runs] == [False] * 4
    assert S.summary_table(result).startswith(f"| norm | seed | status | clean_acc | {ROBUST} |")


def test_rerun_trains_nothing(swept, logged) -> None:
    out, first, _ = swept
    before = mtimes(out)
    again = S.run_sweep(BASE, GRID, out)
    lines = [m for m in logged if m.startswith("[")]
    assert mtimes(out) == before and len(before) == 4
    assert all(r.skipped and r.status == "finished" for r in again.runs)
    assert [r.metrics for r in again.runs] == [r.metrics for r in first.runs]
    assert all("already finished" in line for line in lines)


def test_interrupted_sweep_continues(tmp_path: Path, monkeypatch) -> None:
    base = {**BASE, "epochs": 2}
    out = tmp_path / "out"
    done_cfg, cut_cfg = (T.make_config(**{**base, "seed": s}) for s in (0, 1))
    T.train(done_cfg, out / "seed=0", progress=False)  # a run finished before the sweep
    original = T.Trainer._train_epoch

    def interrupt_second_epoch(self, model, opt, data, epoch, probe_history):
        if epoch == 1:
            raise KeyboardInterrupt("killed in the second epoch")
        return original(self, model, opt, data, epoch, probe_history)

    monkeypatch.setattr(T.Trainer, "_train_epoch", interrupt_second_epoch)
    with pytest.raises(KeyboardInterrupt, match="killed in the second epoch"):
        T.train(cut_cfg, out / "seed=1", progress=False)  # killed in its 2nd epoch
    monkeypatch.undo()
    assert T.run_status(out / "seed=1") == RunStatus(1, 2, False)
    finished_mtime = (out / "seed=0" / "metrics.csv").stat().st_mtime_ns
    epoch1 = T.read_metrics(out / "seed=1")[1]

    S.run_sweep(base, {"seed": [0, 1, 2]}, out, execution=Execution(progress=False, verbose=False))
    meta = json.loads((out / S.SWEEP_FILE).read_text())
    assert [(r["status"], r["skipped"]) for r in meta["runs"]] == [
        ("finished", True),
        ("finished", False),
        ("finished", False),
    ]
    assert (out / "seed=0" / "metrics.csv").stat().st_mtime_ns == finished_mtime
    resumed = T.read_metrics(out / "seed=1")
    assert [r["epoch"] for r in resumed] == [0, 1, 2] and resumed[1]["clean_acc"] == epoch1["clean_acc"]
    assert T.run_status(out / "seed=2").finished


def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in BASE.items() if k != "eval_attacks"}))
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grid", "norm=bn,zz"], "grid point norm=zz: unknown norm 'zz'"),
        (["--grid", "epochs=1,-1"], "grid point epochs=-1: invalid config: epochs"),
        (["--grid", "colour=red,blue"], "unknown config key 'colour'"),
        (["--grid", "norm"], "--grid expects key=value"),
        (["--grid", "seed=0,,1"], "--grid seed: empty value"),
        (["--grid", "seed=0", "--set", "lr=[oops"], "--set lr: cannot parse value"),
        (["--grid", "seed=0", "--backend", "slurm"], "unknown backend 'slurm'"),
    ],
)
def test_cli_rejects_bad_grids_before_training(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    out = tmp_path / "out"
    code = main(["sweep", "--config", str(recipe(tmp_path)), "--out", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


def test_cli_failed_run_is_recorded_and_others_finish(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed=1,augment=false").write_text("in the way")  # this run's directory cannot be created
    code = main(
        [
            "sweep",
            "--config",
            str(recipe(tmp_path)),
            "--grid",
            "seed=0,1",
            "--grid",
            "augment=false",
            "--set",
            f'eval_attacks=["{ATTACK}"]',
            "--out",
            str(out),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    names = ["seed=0,augment=false", "seed=1,augment=false"]
    meta = json.loads((out / S.SWEEP_FILE).read_text())
    assert [r["name"] for r in meta["runs"]] == names
    assert meta["runs"][0]["status"] == "finished" and meta["overrides"] == {"eval_attacks": [ATTACK]}
    assert meta["runs"][1]["status"] == "failed" and "not a directory" in meta["runs"][1]["error"]
    assert T.run_status(out / names[0]).finished
    rows = read_summary(out)
    assert [r["status"] for r in rows] == ["finished", "failed"] and rows[1]["clean_acc"] == ""
    assert "1 of 2 runs failed" in captured.err and "| seed | augment | status |" in captured.out


def test_failed_run_keeps_its_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed=1").write_text("in the way")
    result = S.run_sweep(BASE, {"seed": [0, 1]}, out)
    assert [r.status for r in result.runs] == ["finished", "failed"]
    assert result.failed[0].error == f"run directory {out / 'seed=1'} exists and is not a directory"
    meta = json.loads((out / S.SWEEP_FILE).read_text())
    assert meta["runs"][1]["error"] == result.failed[0].error
    assert [r["status"] for r in read_summary(out)] == ["finished", "failed"]
    changed = S.run_sweep({**BASE, "lr": 0.01}, {"seed": [0]}, out)  # a finished run, other settings
    assert changed.failed[0].error == (
        f"cannot resume {out / 'seed=0'}: it is a different run (lr: 0.05 -> 0.01); pass --overwrite to replace it"
    )


def test_parallel_local_backend_matches_sequential(swept, tmp_path: Path) -> None:
    seq_out, _, _ = swept
    out = tmp_path / "par"
    result = S.run_sweep(BASE, GRID, out, execution=Execution(workers=2, progress=False, verbose=False))
    assert not result.failed
    assert [untimed(r) for r in read_summary(out)] == [untimed(r) for r in read_summary(seq_out)]


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install nrflab[cluster])"
)
@pytest.mark.slow  # starts a Ray instance: about 30 s idle, minutes on a loaded machine
def test_ray_backend_matches_sequential(swept, tmp_path: Path) -> None:
    import ray

    seq_out, _, _ = swept
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        result = S.run_sweep(BASE, GRID, tmp_path / "ray", execution=Execution(backend="ray", progress=False))
    finally:
        ray.shutdown()
    assert not result.failed
    assert [untimed(r) for r in read_summary(tmp_path / "ray")] == [untimed(r) for r in read_summary(seq_out)]


def test_ray_backend_missing_gives_install_hint(tmp_path: Path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(NrflabError, match=r"pip install ray \(or nrflab\[cluster\]\)"):
        S.run_sweep(BASE, {"seed": [0]}, tmp_path / "out", execution=Execution(backend="ray"))

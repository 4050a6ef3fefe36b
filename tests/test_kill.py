"""kill -9 at several moments, mid-write included: a resumed training run or dataset build equals the
uninterrupted one (metrics and tensors), and no temporary file survives the resume.

Each job runs as a real ``nrflab`` process. To kill it in the middle of writing a file, a
``sitecustomize`` placed on its PYTHONPATH makes the N-th write of a chosen file stop halfway (half the
bytes on disk, then a long sleep) and announce itself; the test then sends SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

HOOK = r"""
import os, sys, time
target = os.environ.get("NRFLAB_TEST_HANG_WRITE")
if target:
    name, nth = target.rsplit(":", 1)
    import nrflab.core.io as io
    real = io.os.replace
    seen = {"n": 0}

    def replace(src, dst):
        if os.path.basename(str(dst)) == name:
            seen["n"] += 1
            if seen["n"] == int(nth):
                data = open(src, "rb").read()
                with open(src, "wb") as fh:
                    fh.write(data[: len(data) // 2])
                print("HANGING", flush=True)
                time.sleep(600)
        return real(src, dst)

    io.os.replace = replace
"""

TRAIN = [
    "train",
    "-d",
    "digits",
    "--arch",
    "smallcnn",
    "--width",
    "0.25",
    "--epochs",
    "3",
    "--eval-size",
    "32",
    "--eval-attack",
    "pgd-l2:eps=0.5,step=0.25,steps=2",
    "--device",
    "cpu",
    "-q",
]
BUILD = [
    "build-dataset",
    "d_rand",
    "--dataset",
    "digits",
    "--limit",
    "48",
    "--shard-size",
    "16",
    "--steps",
    "3",
    "--eps",
    "1.0",
    "--step-size",
    "0.5",
    "--device",
    "cpu",
    "-q",
]


def _env(tmp: Path, hang: str | None) -> dict[str, str]:
    hook_dir = tmp / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": str(hook_dir), "OMP_NUM_THREADS": "1"}
    env.pop("NRFLAB_TEST_HANG_WRITE", None)
    if hang:
        env["NRFLAB_TEST_HANG_WRITE"] = hang
    return env


def _nrflab(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from nrflab.cli import main; sys.exit(main())", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _run(args: list[str], tmp: Path) -> None:
    proc = _nrflab(args, _env(tmp, None))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out


def _kill_when(proc: subprocess.Popen, ready) -> None:
    """SIGKILL ``proc`` as soon as ``ready(line)`` is true for a line of its output (or it hangs)."""
    assert proc.stdout is not None
    deadline = time.time() + 240
    for line in proc.stdout:
        if ready(line):
            break
        assert time.time() < deadline, "the job never reached the kill point"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith("time")} for r in rows]


def _metrics(run: Path) -> list[dict]:
    import csv

    with (run / "metrics.csv").open() as fh:
        return _untimed(list(csv.DictReader(fh)))


def _same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ref")
    _run(TRAIN + ["--out", str(tmp / "run")], tmp)
    _run(BUILD + ["--source", str(tmp / "run"), "--out", str(tmp / "set")], tmp)
    return tmp


@pytest.mark.parametrize(
    "moment, hang",
    [
        ("after epoch 1", None),
        ("mid-write of the checkpoint of epoch 2", "checkpoint.safetensors:3"),
        ("mid-write of the model of epoch 1", "model.safetensors:2"),
        ("mid-write of metrics.csv of epoch 0", "metrics.csv:1"),
    ],
)
def test_train_killed_then_resumed_equals_uninterrupted(reference: Path, tmp_path: Path, moment: str, hang) -> None:
    run = tmp_path / "run"
    proc = _nrflab(TRAIN + ["--out", str(run)], _env(tmp_path, hang))
    _kill_when(proc, (lambda line: "HANGING" in line) if hang else (lambda line: "epoch   1/3" in line))
    _run(TRAIN + ["--out", str(run), "--resume"], tmp_path)
    assert _metrics(run) == _metrics(reference / "run"), moment
    _same_tensors(run / "model.safetensors", reference / "run" / "model.safetensors")
    _same_tensors(run / "checkpoint.safetensors", reference / "run" / "checkpoint.safetensors")
    assert not list(run.rglob(".*.tmp"))


@pytest.mark.parametrize(
    "moment, hang",
    [
        ("mid-write of shard 1", "shard_00001.safetensors:1"),
        ("mid-write of the final card", "dataset.json:2"),
        ("mid-write of the first card", "dataset.json:1"),
    ],
)
def test_build_killed_then_resumed_equals_uninterrupted(reference: Path, tmp_path: Path, moment: str, hang) -> None:
    out = tmp_path / "set"
    args = BUILD + ["--source", str(reference / "run"), "--out", str(out)]
    proc = _nrflab(args, _env(tmp_path, hang))
    _kill_when(proc, lambda line: "HANGING" in line)
    resume = ["--resume"] if (out / "dataset.json").exists() else []
    _run(args + resume, tmp_path)
    card, ref_card = (json.loads((d / "dataset.json").read_text()) for d in (out, reference / "set"))
    assert card["complete"] and card["sanity"] == ref_card["sanity"], moment
    for shard in sorted((reference / "set").glob("shard_*.safetensors")):
        _same_tensors(out / shard.name, shard)
    assert not list(out.rglob(".*.tmp"))


def test_two_concurrent_trainers_one_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _nrflab(TRAIN + ["--out", str(run)], _env(tmp_path, "checkpoint.safetensors:1"))
    assert first.stdout is not None
    for line in first.stdout:
        if "HANGING" in line:
            break
    second = _nrflab(TRAIN + ["--out", str(run)], _env(tmp_path, None))
    out, _ = second.communicate(timeout=120)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert second.returncode == 2
    assert out.strip() == (
        f"error: run directory {run} is being written by another nrflab process (pid {first.pid}); "
        "wait for it to finish or choose another output"
    )

"""Tests for ``nrflab evaluate``: the numbers it prints and writes, attack flags, run directories, and one-line
errors for every kind of bad input."""

from __future__ import annotations

import json

import pytest
import torch

from nrflab.attacks import PGD
from nrflab.cli import main
from nrflab.data import limit_dataset
from nrflab.measure.ligs import ligs
from nrflab.measure.metrics import accuracy, robust_accuracy
from nrflab.models import create_model
from nrflab.models.checkpoint import load_model, save_model
from nrflab.training import make_config, train


@pytest.fixture(scope="module")
def checkpoint(_trained_master, tmp_path_factory):
    """The session's tiny trained smallcnn saved alone (not in a run directory)."""
    return save_model(_trained_master, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_prints_and_writes_the_metrics(checkpoint, _trained_master, mnist5k, tmp_path, capsys) -> None:
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-c",
        checkpoint,
        "--dataset",
        "mnist5k",
        "--limit",
        64,
        "--attack",
        "pgd-l2",
        "--eps",
        0.5,
        "--steps",
        3,
        "--out",
        out,
    )
    assert code == 0, stderr
    record = json.loads(out.read_text())
    metrics = record["metrics"]
    assert set(metrics) == {"clean_acc", "robust_acc[pgd-l2_0.5]", "ligs", "logit_sim"}
    assert record["num_samples"] == 64 and record["dataset"] == "mnist5k"
    assert record["attacks"] == {"pgd-l2_0.5": "pgd-l2:eps=0.5,steps=3"}
    assert record["model"]["arch"] == "smallcnn"

    x, y = limit_dataset(mnist5k.test, 64, seed=0).tensors()  # --limit: a seeded random subset
    assert metrics["clean_acc"] == accuracy(_trained_master, (x, y)) > 0.8
    assert metrics["robust_acc[pgd-l2_0.5]"] == robust_accuracy(
        _trained_master, (x, y), PGD(_trained_master, norm="l2", eps=0.5, steps=3)
    )
    assert metrics["ligs"] == pytest.approx(ligs(_trained_master, x, y, sigma=0.01, seed=0), abs=1e-6)
    for key, value in metrics.items():
        shown = f"{100 * value:.2f} %" if "acc" in key else f"{value:.4f}"
        assert any(line.split() == [key, *shown.split()] for line in stdout.splitlines()), key
    assert f"wrote {out}" in stdout


def test_spec_form_and_several_attacks(checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "eval.json"
    code, _, stderr = run_cli(
        capsys,
        "evaluate",
        "-c",
        checkpoint,
        "-d",
        "mnist5k",
        "--limit",
        32,
        "--no-ligs",
        "--attack",
        "pgd-linf:eps=0.1,step=0.025,steps=2",
        "--attack",
        "fgsm:eps=0.2",
        "--attack",
        "none",
        "-o",
        out,
    )
    assert code == 0, stderr
    record = json.loads(out.read_text())
    metrics = record["metrics"]
    assert set(metrics) == {
        "clean_acc",
        "robust_acc[pgd-linf_0.1]",
        "robust_acc[fgsm_0.2]",
        "robust_acc[none]",
    }  # PGD-Linf 0.1 and FGSM 0.2 are two threat models: no ensemble pools them
    assert record["attacks"]["pgd-linf_0.1"] == "pgd-linf:eps=0.1,steps=2,step=0.025"
    assert metrics["robust_acc[none]"] == metrics["clean_acc"]
    assert metrics["robust_acc[fgsm_0.2]"] < metrics["clean_acc"]
    assert record["ligs_sigma"] is None


def test_default_attacks_and_output_path(checkpoint, capsys) -> None:
    code, stdout, stderr = run_cli(
        capsys, "evaluate", "-c", checkpoint, "--dataset", "mnist5k", "--limit", 16, "--no-ligs"
    )
    assert code == 0, stderr
    target = checkpoint.parent / "evaluation_mnist5k.json"
    metrics = json.loads(target.read_text())["metrics"]
    assert set(metrics) == {
        "clean_acc",
        "robust_acc[pgd-l2_1]",
        "robust_acc[pgd-linf_0.1]",
    }  # the MNIST preset: one attack per threat model, so no ensemble column
    assert f"wrote {target}" in stdout


def test_evaluate_a_run_directory(mnist5k, tmp_path, capsys) -> None:
    cfg = make_config(
        dataset="mnist5k",
        arch="smallcnn",
        width=0.25,
        epochs=1,
        eval_size=32,
        ligs=False,
        eval_attacks=["pgd-l2:eps=0.5,steps=1"],
        seed=0,
    )
    run_dir = train(cfg, tmp_path / "run", progress=False).run_dir
    code, _, stderr = run_cli(
        capsys, "evaluate", "-c", run_dir, "--limit", 32, "--no-ligs", "--attack", "pgd-l2", "--eps", 0.5, "--steps", 1
    )
    assert code == 0, stderr
    record = json.loads((run_dir / "evaluation_mnist5k.json").read_text())
    assert record["dataset"] == "mnist5k" and record["checkpoint"] == str(run_dir / "model.safetensors")
    x, y = limit_dataset(mnist5k.test, 32, seed=0).tensors()
    assert record["metrics"]["clean_acc"] == accuracy(load_model(run_dir), (x, y)) > 0.2


@pytest.fixture(scope="module")
def misfits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("misfits")
    rgb = save_model(create_model("smallcnn", "bn", 10, 3, width=0.125, seed=0), folder / "rgb.safetensors")
    five = save_model(create_model("smallcnn", "bn", 5, 1, width=0.125, seed=0), folder / "five.safetensors")
    cifar_shape = save_model(
        create_model("smallcnn", "bn", 10, 1, width=0.125, input_shape=(1, 32, 32), seed=0),
        folder / "shape.safetensors",
    )
    corrupt = folder / "corrupt.safetensors"
    corrupt.write_bytes(
        torch.randint(0, 256, (2048,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy().tobytes()
    )
    empty_root = folder / "empty_root"
    empty_root.mkdir()
    junk_root = folder / "junk_root"
    (junk_root / "cifar-10-batches-py").mkdir(parents=True)
    for name in (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    ):
        (junk_root / "cifar-10-batches-py" / name).write_bytes(b"these are not CIFAR pickles\n" * 10)
    return {
        "rgb": rgb,
        "five": five,
        "shape": cifar_shape,
        "corrupt": corrupt,
        "empty_root": empty_root,
        "junk_root": junk_root,
        "missing": folder / "missing.safetensors",
        "not_a_run": folder,
    }


ERROR_CASES = {
    "unknown-dataset": ["--dataset", "mnist6k"],
    "unknown-attack": ["--dataset", "mnist5k", "--attack", "pgd-l3", "--eps", "0.1"],
    "bad-spec": ["--dataset", "mnist5k", "--attack", "pgd-l2:eps=abc"],
    "negative-eps": ["--dataset", "mnist5k", "--attack", "pgd-l2", "--eps", "-0.5"],
    "negative-eps-spec": ["--dataset", "mnist5k", "--attack", "pgd-l2:eps=-0.5"],
    "eps-without-attack": ["--dataset", "mnist5k", "--eps", "0.5"],
    "attack-without-eps": ["--dataset", "mnist5k", "--attack", "pgd-l2"],
    "no-files": ["--dataset", "cifar10", "--data-root", "{empty_root}"],
    "junk-files": ["--dataset", "cifar10", "--data-root", "{junk_root}"],
    "bad-device": ["--dataset", "mnist5k", "--device", "tpu"],
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_bad_arguments_exit_2_with_one_error_line(name, checkpoint, misfits, capsys) -> None:
    args = [a.format(**misfits) for a in ERROR_CASES[name]]
    code, stdout, stderr = run_cli(capsys, "evaluate", "-c", checkpoint, "--limit", 8, *args)
    assert code == 2
    assert stderr.startswith("error:") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "wrote" not in stdout


@pytest.mark.parametrize("which", ["missing", "corrupt", "rgb", "five", "shape", "not_a_run"])
def test_bad_checkpoints_exit_2_with_one_error_line(which, misfits, capsys) -> None:
    args = [
        "evaluate",
        "-c",
        misfits[which],
        "--limit",
        8,
        "--no-ligs",
        "--attack",
        "pgd-l2",
        "--eps",
        0.5,
        "--steps",
        1,
    ]
    if which != "not_a_run":
        args += ["--dataset", "mnist5k"]
    code, _, stderr = run_cli(capsys, *args)
    assert code == 2
    assert stderr.startswith("error:") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    if which in ("rgb", "five", "shape"):
        assert "does not fit" in stderr


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["evaluate", "-h"]])
def test_help_exits_0(argv, capsys) -> None:
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    assert ("evaluate" in stdout) and ("--checkpoint" in stdout or argv == ["--help"])


def test_corruptions_report_every_corruption_and_severity(checkpoint, tmp_path, capsys) -> None:
    from nrflab.measure.corruptions import benchmark_corruptions

    out = tmp_path / "eval.json"
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-c",
        checkpoint,
        "-d",
        "mnist5k",
        "--limit",
        32,
        "--no-ligs",
        "--attack",
        "pgd-l2:eps=0.5,steps=1",
        "--corruptions",
        "-o",
        out,
    )
    assert code == 0, stderr
    corr = json.loads(out.read_text())["corruptions"]
    seen = {(r["corruption"], r["severity"]) for r in corr["rows"]}
    assert seen == {(c, s) for c in benchmark_corruptions() for s in range(1, 6)}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in corr["rows"])
    mean = sum(r["accuracy"] for r in corr["rows"]) / len(corr["rows"])
    assert corr["summary"]["mean"] == pytest.approx(mean)
    assert "mean corruption accuracy" in stdout


def test_cifar_c_directory_that_is_missing_is_one_error_line(checkpoint, tmp_path, capsys) -> None:
    code, _, stderr = run_cli(
        capsys,
        "evaluate",
        "-c",
        checkpoint,
        "-d",
        "mnist5k",
        "--limit",
        8,
        "--no-ligs",
        "--attack",
        "pgd-l2:eps=0.5,steps=1",
        "--corruptions",
        "--cifar-c",
        tmp_path / "nope",
    )
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")


def test_evaluate_spectrum_reports_each_attacks_perturbation_energy(checkpoint, mnist5k, tmp_path, capsys) -> None:
    out = tmp_path / "spectrum.json"
    argv = ["evaluate", "-c", checkpoint, "--dataset", "mnist5k", "--limit", 16, "--attack", "pgd-l2"]
    code, stdout, stderr = run_cli(capsys, *argv, "--eps", 0.5, "--steps", 2, "--no-sanity", "--spectrum", "--out", out)
    assert code == 0, stderr
    spectra = json.loads(out.read_text())["spectra"]
    assert set(spectra) == {"pgd-l2_0.5"}
    entry = spectra["pgd-l2_0.5"]
    assert entry["height"] == entry["width"] == 28 and entry["n_images"] == 16
    assert sum(entry["thirds"]) == pytest.approx(1.0) and sum(entry["energy"]) == pytest.approx(1.0)
    assert "perturbation energy PGD-L2 eps 0.5: low" in stdout

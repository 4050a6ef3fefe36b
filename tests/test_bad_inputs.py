"""A catalog of bad inputs: every refusal is one ``error:`` line with exit status 2, no traceback, and no
file that existed before is changed, moved or deleted (byte for byte), whatever the command was asked.

The workspace holds a finished training run, a model file, a built dataset and a few bad files; every case
runs the real command line (in this process) against it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from nrflab.cli import main
from nrflab.features import build_dataset
from nrflab.runs.rundir import LOCK_FILE, DirectoryBusy, DirLock, locked
from nrflab.training import make_config, train

RUN_FIELDS = dict(
    dataset="digits",
    arch="smallcnn",
    width=0.25,
    epochs=1,
    eval_size=16,
    ligs=False,
    eval_attacks=["pgd-l2:eps=0.5,step=0.25,steps=2"],
    device="cpu",
    seed=0,
)
#: Flags of a valid training command on the finished run, so each case differs in one input only.
TRAIN = [
    "train",
    "-d",
    "digits",
    "--arch",
    "smallcnn",
    "--width",
    "0.25",
    "--epochs",
    "1",
    "--eval-size",
    "16",
    "--no-ligs",
    "--device",
    "cpu",
    "-q",
    "--out",
    "{run}",
]
BUILD = [
    "build-dataset",
    "d_rand",
    "--source",
    "{run}",
    "--dataset",
    "digits",
    "--limit",
    "8",
    "--steps",
    "2",
    "-q",
    "--out",
    "{tmp}/newset",
]
TRANSFER = [
    "transfer",
    "-s",
    "{run}",
    "-t",
    "{run}",
    "-d",
    "digits",
    "--eps",
    "0.1",
    "--limit",
    "8",
    "--out",
    "{tmp}/t",
]
EXPERIMENT = ["experiment", "core", "--quick", "--out", "{tmp}/e"]


@dataclass(frozen=True)
class Case:
    """A command line (with ``{run}``, ``{model}``, ``{set}``, ``{ws}``, ``{tmp}`` placeholders) and a fragment
    its one error line must contain."""

    name: str
    argv: tuple[str, ...]
    expect: str


def case(name: str, argv: list[str], expect: str) -> Case:
    return Case(name, tuple(argv), expect)


CASES = [
    # -- train: everything is checked before an existing run is touched (--overwrite on a finished run) --
    case("train device mps", TRAIN + ["--overwrite", "--device", "mps"], "device 'mps'"),
    case("train device meta", TRAIN + ["--overwrite", "--device", "meta"], "device 'meta' cannot run nrflab"),
    case("train device cuda:7", TRAIN + ["--overwrite", "--device", "cuda:7"], "device 'cuda:7'"),
    case("train device unknown", TRAIN + ["--overwrite", "--device", "gpu0"], "unknown device 'gpu0'"),
    case("train seed 2^63", TRAIN + ["--overwrite", "--seed", str(2**63)], "seed"),
    case("train seed -1", TRAIN + ["--overwrite", "--seed", "-1"], "seed"),
    case("train width 1e6", TRAIN + ["--overwrite", "--width", "1e6"], "width"),
    case("train width 0", TRAIN + ["--overwrite", "--width", "0"], "width"),
    case("train lr inf", TRAIN + ["--overwrite", "--lr", "inf"], "lr: Input should be a finite number"),
    case("train lr nan", TRAIN + ["--overwrite", "--lr", "nan"], "lr"),
    case("train lr negative", TRAIN + ["--overwrite", "--lr", "-1"], "lr"),
    case("train epochs 0", TRAIN + ["--overwrite", "--epochs", "0"], "epochs"),
    case("train batch size 0", TRAIN + ["--overwrite", "--batch-size", "0"], "batch_size"),
    case("train momentum 1.5", TRAIN + ["--overwrite", "--momentum", "1.5"], "momentum"),
    case("train eps 1e999", TRAIN + ["--overwrite", "--eval-attack", "pgd-linf:eps=1e999"], "eps must be a finite"),
    case("train steps 0", TRAIN + ["--overwrite", "--eval-attack", "pgd-l2:eps=0.5,steps=0"], "steps must be >= 1"),
    case("train step 0", TRAIN + ["--overwrite", "--eval-attack", "pgd-l2:eps=0.5,step=0"], "step size must be"),
    case("train steps 2.7", TRAIN + ["--overwrite", "--eval-attack", "pgd-l2:eps=0.5,steps=2.7"], "whole number"),
    case(
        "train eps negative",
        TRAIN + ["--overwrite", "--eval-attack", "pgd-l2:eps=-1"],
        "eps must be a finite number >= 0",
    ),
    case("train eps 0", TRAIN + ["--overwrite", "--eval-attack", "pgd-l2:eps=0"], "eps must be > 0"),
    case("train unknown attack", TRAIN + ["--overwrite", "--eval-attack", "cw"], "unknown attack 'cw'"),
    case("train unknown attack key", TRAIN + ["--overwrite", "--eval-attack", "pgd-l2:foo=1"], "bad attack option"),
    case("train unknown arch", TRAIN + ["--overwrite", "--arch", "resnet7"], "unknown arch 'resnet7'"),
    case("train unknown norm", TRAIN + ["--overwrite", "--norm", "batchnorm"], "unknown norm 'batchnorm'"),
    case("train unknown dataset", TRAIN + ["--overwrite", "-d", "imagenet-z"], "unknown dataset 'imagenet-z'"),
    case("train dataset parameter", TRAIN + ["--overwrite", "-d", "digits:size=3"], "takes no parameters"),
    case("train bad dataset parameter", TRAIN + ["--overwrite", "-d", "digits:size"], "bad dataset parameter"),
    case("train unknown optimizer", TRAIN + ["--overwrite", "--optimizer", "rmsprop"], "optimizer"),
    case("train unknown schedule", TRAIN + ["--overwrite", "--schedule", "linear"], "schedule"),
    case("train milestones text", TRAIN + ["--overwrite", "--milestones", "a,b"], "--milestones must be"),
    case("train milestones order", TRAIN + ["--overwrite", "--milestones", "5,3"], "milestones must be increasing"),
    case("train amp fp8", TRAIN + ["--overwrite", "--amp", "fp8"], "amp"),
    case("train adv kind", TRAIN + ["--overwrite", "--adv-train", "fgsm"], "adv_train"),
    case(
        "train arch cannot take input",
        TRAIN + ["--overwrite", "--norm", "in", "--arch", "vgg11"],
        "cannot take inputs of shape",
    ),
    case("train config missing", TRAIN + ["--overwrite", "--config", "{ws}/missing.yaml"], "config file not found"),
    case("train config broken", TRAIN + ["--overwrite", "--config", "{ws}/broken.yaml"], "not valid YAML"),
    case("train config unknown key", TRAIN + ["--overwrite", "--config", "{ws}/unknown.yaml"], "batchsize"),
    case("train config list", TRAIN + ["--overwrite", "--config", "{ws}/list.yaml"], "must hold a mapping"),
    case("train config python tag", TRAIN + ["--overwrite", "--config", "{ws}/tag.yaml"], "not valid YAML"),
    case("train out is a model file", TRAIN[:-1] + ["{model}", "--overwrite"], "is not a directory"),
    case("train out is a dataset", TRAIN[:-1] + ["{set}", "--overwrite"], "holds a built dataset"),
    case("train finished run", TRAIN, "already holds a finished run"),
    case("train resume another recipe", TRAIN + ["--resume", "--lr", "0.5"], "it is a different run (lr:"),
    case("train resume other epochs", TRAIN + ["--resume", "--epochs", "3"], "(epochs: 1 -> 3)"),
    case("train resume not a run", TRAIN[:-1] + ["{ws}/junk", "--resume"], "holds no nrflab run"),
    # -- build-dataset --
    case(
        "build unknown kind",
        ["build-dataset", "d_x", "--source", "{run}", "--dataset", "digits", "--out", "{tmp}/x"],
        "unknown dataset kind 'd_x'",
    ),
    case("build no dataset", ["build-dataset", "d_rand", "--source", "{run}", "--out", "{tmp}/x"], "--dataset"),
    case("build source missing", BUILD[:3] + ["{ws}/nope"] + BUILD[4:], "no such file or directory"),
    case(
        "build source not safetensors", BUILD[:3] + ["{ws}/garbage.safetensors"] + BUILD[4:], "not a valid safetensors"
    ),
    case("build source pickle", BUILD[:3] + ["{ws}/evil.safetensors"] + BUILD[4:], "not a valid safetensors"),
    case("build steps 0", BUILD + ["--steps", "0"], "steps must be >= 1"),
    case("build eps inf", BUILD + ["--eps", "inf"], "eps must be a finite"),
    case("build step 0", BUILD + ["--step-size", "0"], "step size must be"),
    case("build label policy", BUILD + ["--label-policy", "guess"], "unknown label policy"),
    case("build dtype", BUILD + ["--dtype", "int8"], "unknown dtype"),
    case("build seed 2^32", BUILD + ["--seed", str(2**32)], "seed"),
    case("build shard size 0", BUILD + ["--shard-size", "0"], "shard size"),
    case("build batch size 0", BUILD + ["--batch-size", "0"], "batch size"),
    case("build device meta", BUILD + ["--device", "meta"], "device 'meta'"),
    case("build out is a run", BUILD[:-1] + ["{run}"], "is a training run directory"),
    case("build out is a model", BUILD[:-1] + ["{model}"], "is not a directory"),
    case("build out holds a set", BUILD[:-1] + ["{set}"], "already holds a built dataset"),
    case("build resume other settings", BUILD[:-1] + ["{set}", "--resume", "--eps", "1.5"], "cannot resume"),
    case(
        "build conflicting without base",
        ["build-dataset", "conflicting", "--source", "{run}", "--out", "{tmp}/c"],
        "--base",
    ),
    case(
        "build conflicting on d_rand",
        ["build-dataset", "conflicting", "--source", "{run}", "--base", "{set}", "--out", "{tmp}/c"],
        "needs a d_r set",
    ),
    case("build model and dataset mismatch", BUILD[:5] + ["mnist5k"] + BUILD[6:], "does not fit"),
    # -- evaluate and bn-analysis: model references, attacks, outputs --
    case("evaluate model missing", ["evaluate", "-m", "{ws}/nope", "-d", "digits"], "no such file or directory"),
    case(
        "evaluate model garbage",
        ["evaluate", "-m", "{ws}/garbage.safetensors", "-d", "digits"],
        "not a valid safetensors",
    ),
    case(
        "evaluate model pickle", ["evaluate", "-m", "{ws}/evil.safetensors", "-d", "digits"], "not a valid safetensors"
    ),
    case("evaluate model and dataset mismatch", ["evaluate", "-m", "{run}", "-d", "mnist5k"], "does not fit dataset"),
    case("evaluate limit 0", ["evaluate", "-m", "{run}", "-d", "digits", "--limit", "0"], "--limit"),
    case("evaluate unknown attack", ["evaluate", "-m", "{run}", "-d", "digits", "-a", "cw"], "unknown attack 'cw'"),
    case(
        "evaluate steps 0",
        ["evaluate", "-m", "{run}", "-d", "digits", "-a", "pgd-l2:eps=0.5,steps=0"],
        "steps must be >= 1",
    ),
    case("evaluate eps inf", ["evaluate", "-m", "{run}", "-d", "digits", "-a", "pgd-l2", "--eps", "inf"], "finite"),
    case(
        "evaluate full spec and --eps",
        ["evaluate", "-m", "{run}", "-d", "digits", "-a", "pgd-l2:eps=0.5", "--eps", "1"],
        "is a full spec",
    ),
    case("evaluate seed -1", ["evaluate", "-m", "{run}", "-d", "digits", "--seed", "-1"], "--seed"),
    case("evaluate device mps", ["evaluate", "-m", "{run}", "-d", "digits", "--device", "mps"], "device 'mps'"),
    case(
        "evaluate out is the model", ["evaluate", "-m", "{run}", "-d", "digits", "-o", "{model}"], "refusing to write"
    ),
    case(
        "evaluate out is a config", ["evaluate", "-m", "{run}", "-d", "digits", "-o", "{run}/config.json"], "refusing"
    ),
    case("evaluate sigma negative", ["evaluate", "-m", "{run}", "-d", "digits", "--sigma", "-1"], "--sigma"),
    case(
        "evaluate surrogate missing", ["evaluate", "-m", "{run}", "-d", "digits", "--surrogate", "{ws}/nope"], "no such"
    ),
    case(
        "evaluate factory not a module", ["evaluate", "-m", "{ws}/factory.py:build", "-d", "digits"], "not a torch.nn"
    ),
    case("evaluate factory missing", ["evaluate", "-m", "{ws}/factory.py:nothere", "-d", "digits"], "no function"),
    case("evaluate unknown pretrained", ["evaluate", "-m", "pretrained/nope", "-d", "digits"], "not a registered"),
    case("evaluate mean without std", ["evaluate", "-m", "{run}", "-d", "digits", "--mean", "0.5"], "--mean and --std"),
    case(
        "evaluate mean text", ["evaluate", "-m", "{run}", "-d", "digits", "--mean", "a", "--std", "1"], "bad number 'a'"
    ),
    case("evaluate model twice", ["evaluate", "-m", "{run}", "--weights", "{model}", "-d", "digits"], "give one model"),
    case(
        "evaluate factory-arg without value",
        ["evaluate", "-m", "{ws}/factory.py:build", "--factory-arg", "width", "-d", "digits"],
        "width",
    ),
    case("bn-analysis unknown shift", ["bn-analysis", "{run}", "-d", "digits", "--shift", "rain@2"], "unknown shift"),
    case("bn-analysis shift severity", ["bn-analysis", "{run}", "-d", "digits", "--shift", "fog@9"], "severity 1-5"),
    case("compare sides unequal", ["compare", "{run},{run}", "{run}", "-d", "digits"], "side A has 2 models"),
    case("compare unknown attack", ["compare", "{run}", "{run}", "-d", "digits", "-a", "cw"], "unknown attack 'cw'"),
    case("compare out is the model", ["compare", "{run}", "{run}", "-d", "digits", "-o", "{model}"], "--out"),
    case("verdicts of no report", ["verdicts", "{ws}/nope"], "verdicts.json not found"),
    case("bn-analysis unknown variant", ["bn-analysis", "{run}", "-d", "digits", "--variant", "nope"], "nope"),
    case("bn-analysis model missing", ["bn-analysis", "{ws}/nope", "-d", "digits"], "no such file or directory"),
    case("bn-analysis mismatch", ["bn-analysis", "{run}", "-d", "mnist5k"], "does not fit dataset"),
    case("bn-analysis out is the model", ["bn-analysis", "{run}", "-d", "digits", "-o", "{model}"], "not a directory"),
    # -- transfer --
    case("transfer target missing", TRANSFER[:4] + ["{ws}/nope"] + TRANSFER[5:], "no such file or directory"),
    case("transfer unknown attack", TRANSFER + ["--attack", "cw"], "unknown attack 'cw'"),
    case("transfer eps negative", TRANSFER + ["--eps", "-1"], "--eps"),
    case("transfer mismatch", TRANSFER + ["-d", "mnist5k"], "expects inputs of shape (1, 8, 8)"),
    case("transfer out is a run", TRANSFER[:-1] + ["{run}"], "training run"),
    case("transfer seed 2^40", TRANSFER + ["--seed", str(2**40)], "--seed"),
    case("transfer unknown boost", TRANSFER + ["--boost", "magic"], "unknown boost 'magic'"),
    case("transfer target policy", TRANSFER + ["--target-policy", "nope"], "unknown target policy"),
    case(
        "transfer twin of no source",
        TRANSFER + ["--boost", "no-bn-twin", "--twin", "x=y"],
        "x is not among the sources",
    ),
    case("transfer twin missing", TRANSFER + ["--boost", "no-bn-twin", "--twin", "{run}={ws}/nope.pt"], "nope.pt"),
    case("transfer twin without =", TRANSFER + ["--boost", "both", "--twin", "{run}"], "give SOURCE=TWIN"),
    case("transfer twin without boost", TRANSFER + ["--twin", "{run}={run}"], "needs --boost no-bn-twin or both"),
    # -- experiment and reproduce: every setting, device and dataset checked before anything runs --
    case("experiment unknown", ["experiment", "nope", "--out", "{tmp}/e"], "unknown experiment 'nope'"),
    case("experiment epochs -1", EXPERIMENT + ["--set", "twins.epochs=-1"], "epochs"),
    case("experiment unknown key", EXPERIMENT + ["--set", "nokey=1"], "has no setting 'nokey'"),
    case("experiment wrong type", EXPERIMENT + ["--set", "twins.epochs=abc"], "valid integer"),
    case("experiment unknown dataset", EXPERIMENT + ["--dataset", "imagenet-z"], "unknown dataset 'imagenet-z'"),
    case("experiment dataset files missing", EXPERIMENT + ["-d", "cifar10", "--data-root", "{ws}/junk"], "not found"),
    case("experiment device typo", EXPERIMENT + ["--device", "cudaa"], "unknown device 'cudaa'"),
    case(
        "experiment no final attack",
        ["experiment", "family", "--quick", "--set", "final_attacks=[]", "--out", "{tmp}/e"],
        "final_attacks: List should have at least 1 item",
    ),
    case(
        "transfer experiment other norms",
        ["experiment", "transfer", "--quick", "--set", "norms=[gn,none]", "--out", "{tmp}/e"],
        "norms [bn, none]",
    ),
    case(
        "transfer experiment early-stop rule",
        ["experiment", "transfer", "--quick", "--set", "early_stop=bogus", "--out", "{tmp}/e"],
        "bad early-stop rule 'bogus'",
    ),
    case("experiment unknown arch", EXPERIMENT + ["--arch", "resnet7"], "unknown arch 'resnet7'"),
    case("experiment device mps", EXPERIMENT + ["--device", "mps"], "device 'mps'"),
    case("experiment seed -1", EXPERIMENT + ["--seed", "-1"], "greater than or equal to 0"),
    case("experiment unknown scale", ["experiment", "core", "--scale", "huge", "--out", "{tmp}/e"], "unknown scale"),
    case("experiment recipe missing", EXPERIMENT + ["--recipe", "{ws}/missing.yaml"], "recipe file not found"),
    case("experiment recipe broken", EXPERIMENT + ["--recipe", "{ws}/broken.yaml"], "YAML"),
    case(
        "experiment recipe of another experiment",
        EXPERIMENT + ["--recipe", "{ws}/planted.yaml"],
        "is for planted, which this command does not run (it runs core)",
    ),
    case(
        "reproduce recipe of an experiment not selected",
        ["reproduce", "--only", "core", "--recipe", "{ws}/planted.yaml", "--out", "{tmp}/r"],
        "is for planted, which this command does not run (it runs core)",
    ),
    case("experiment epochs 0", EXPERIMENT + ["--epochs", "0"], "--epochs must be >= 1"),
    case("experiment out is a run", ["experiment", "core", "--quick", "--out", "{run}"], "training run"),
    case("reproduce unknown experiment", ["reproduce", "--only", "nope", "--out", "{tmp}/r"], "unknown experiment"),
    case("reproduce backend", ["reproduce", "--backend", "slurm", "--out", "{tmp}/r"], "unknown backend 'slurm'"),
    case("reproduce epochs 0", ["reproduce", "--set", "core.twins.epochs=0", "--out", "{tmp}/r"], "epochs"),
    case("reproduce out is a file", ["reproduce", "--out", "{model}"], "is not a directory"),
    case("reproduce workers 0", ["reproduce", "--workers", "0", "--out", "{tmp}/r"], "--workers"),
    case(
        "reproduce paper without data",
        ["reproduce", "--scale", "paper", "--data-root", "{ws}/junk", "--out", "{tmp}/r"],
        "cifar10 not found",
    ),
    case(
        "reproduce out inside a run",
        ["reproduce", "--only", "core", "--out", "{run}/sub/deeper"],
        "inside the training run",
    ),
    case("reproduce out inside a dataset", ["reproduce", "--only", "core", "--out", "{set}/sub"], "inside the built"),
    case(
        "reproduce ray address unreachable",
        ["reproduce", "--only", "core", "--backend", "ray", "--ray-address", "127.0.0.1:9", "--out", "{tmp}/r"],
        "cannot connect within 10 s",
    ),
    case(
        "reproduce zoo keeps no checkpoint",
        ["reproduce", "--only", "transfer", "--set", "transfer.zoo.epochs=3"]
        + ["--set", "transfer.zoo.keep_checkpoints=5", "--out", "{tmp}/r"],
        "add --set transfer.zoo.keep_checkpoints=1",
    ),
    case(
        "experiment zoo keeps no checkpoint",
        ["experiment", "transfer", "--quick", "--set", "zoo.epochs=3", "--set", "zoo.keep_checkpoints=5"]
        + ["--out", "{tmp}/e"],
        "add --set zoo.keep_checkpoints=1",
    ),
    case(
        "experiment early-stop epoch not kept",
        ["experiment", "transfer", "--quick", "--set", "early_stop=epoch=7", "--out", "{tmp}/e"],
        "add --set early_stop=frac=0.9",
    ),
    *(
        []
        if torch.cuda.is_available()
        else [
            case(
                "reproduce cuda without a GPU",
                ["reproduce", "--only", "core", "--device", "cuda", "--out", "{tmp}/r"],
                "no CUDA GPU",
            ),
            case("demo cuda without a GPU", ["demo", "--quick", "--device", "cuda", "--out", "{tmp}/d"], "no CUDA GPU"),
            case("experiment cuda without a GPU", EXPERIMENT + ["--device", "cuda"], "no CUDA GPU"),
        ]
    ),
    # -- plot --
    case("plot non-numeric metrics", ["plot", "{ws}/badcell"], "is not a number"),
    case("plot binary metrics", ["plot", "{ws}/binary"], "is not a CSV file"),
    case("plot config list", ["plot", "{ws}/listconfig"], "must hold a mapping"),
    case("plot not a run", ["plot", "{ws}/junk"], "no metrics.csv"),
    case("plot unknown attack", ["plot", "{run}", "--attack", "cw"], "no robust-accuracy column"),
    # -- sweep: every grid point is checked before anything trains --
    case(
        "sweep unknown dataset in grid",
        [
            "sweep",
            "--out",
            "{tmp}/sw",
            "--set",
            "epochs=1",
            "--set",
            "arch=smallcnn",
            "--grid",
            "dataset=digits,imagenet-z",
        ],
        "unknown dataset 'imagenet-z'",
    ),
    case(
        "sweep unknown norm in grid",
        ["sweep", "--out", "{tmp}/sw", "--set", "dataset=digits", "--grid", "norm=bn,bogus"],
        "unknown norm 'bogus'",
    ),
    case(
        "sweep lr inf",
        ["sweep", "--out", "{tmp}/sw", "--set", "dataset=digits", "--set", "lr=.inf", "--grid", "seed=0,1"],
        "lr",
    ),
    case(
        "sweep backend",
        ["sweep", "--out", "{tmp}/sw", "--set", "dataset=digits", "--backend", "slurm"],
        "unknown backend",
    ),
    case("sweep grid syntax", ["sweep", "--out", "{tmp}/sw", "--grid", "norm"], "--grid expects key=value"),
    case("sweep workers 0", ["sweep", "--out", "{tmp}/sw", "--set", "dataset=digits", "--workers", "0"], "workers"),
    # -- bring your own model: a class or factory plus a state dict, factory arguments --
    case(
        "evaluate own class missing",
        ["evaluate", "-m", "{ws}/own_weights.pt", "-d", "digits", "--arch", "{ws}/own.py:Nett"],
        "no function 'Nett' in",
    ),
    case(
        "evaluate own class bad argument",
        ["evaluate", "-m", "{ws}/own_weights.pt", "-d", "digits", "--arch", "{ws}/own.py:Net?widht=4"],
        "does not fit Net(width=4)",
    ),
    case(
        "evaluate own class wrong shapes",
        ["evaluate", "-m", "{ws}/own_weights.pt", "-d", "digits", "--arch", "{ws}/own.py:Net?width=5"],
        "shapes differ at",
    ),
    case(
        "evaluate own class with --norm",
        ["evaluate", "-m", "{ws}/own_weights.pt", "-d", "digits", "--arch", "{ws}/own.py:Net", "--norm", "bn"],
        "--norm describes nrflab architectures",
    ),
    case(
        "evaluate own class for a run",
        ["evaluate", "-m", "{run}", "-d", "digits", "--arch", "{ws}/own.py:Net"],
        "nrflab checkpoint with its own architecture",
    ),
    case(
        "evaluate own class file missing",
        ["evaluate", "-m", "{ws}/own_weights.pt", "-d", "digits", "--arch", "{ws}/nope.py:Net"],
        "factory file not found",
    ),
    case(
        "evaluate own class neighbour missing",
        ["evaluate", "-m", "{ws}/own_weights.pt", "-d", "digits", "--arch", "{ws}/own_broken.py:Net"],
        "No module named 'no_such_neighbour'",
    ),
    case(
        "evaluate factory argument a list",
        ["evaluate", "-m", "{ws}/own.py:Net?width=[4]", "-d", "digits"],
        "is not a number, bool or string",
    ),
    case(
        "evaluate factory argument without value",
        ["evaluate", "-m", "{ws}/own.py:Net?width", "-d", "digits"],
        "key=value pairs",
    ),
    case(
        "evaluate factory argument twice",
        ["evaluate", "-m", "{ws}/own.py:Net?width=4,width=2", "-d", "digits"],
        "given twice",
    ),
    case(
        "build nrflab state dict without normalize",
        BUILD[:3] + ["{ws}/net_only.pt", "--arch", "smallcnn", "--norm", "bn", "--width", "0.25"] + BUILD[4:],
        "without its normalize.* buffers",
    ),
    case(
        "transfer nrflab state dict without normalize",
        TRANSFER[:4] + ["{ws}/net_only.pt", "--arch", "smallcnn", "--norm", "bn", "--width", "0.25"] + TRANSFER[5:],
        "without its normalize.* buffers",
    ),
    # -- one number syntax for every flag, one-line messages that name the fix --
    case("evaluate eps 8/0", ["evaluate", "-m", "{run}", "-d", "digits", "--eps", "8/0"], "bad number '8/0' for --eps"),
    case("transfer eps text", TRANSFER + ["--eps", "eight"], "bad number 'eight' for --eps"),
    case("build step text", BUILD + ["--step-size", "x/255"], "bad number 'x/255' for --step-size"),
    case(
        "evaluate mean/std per channel",
        ["evaluate", "-m", "{ws}/bare.pt", "-d", "digits", "--arch", "smallcnn", "--width", "0.25"]
        + ["--mean", "0.1,0.2", "--std", "0.3,0.3"],
        "mean/std need 1 value each for a model with 1 input channel, got 2 mean and 2 std values",
    ),
    case(
        "evaluate weights dir is a file",
        ["evaluate", "-m", "pretrained:robustbench/cifar10/L2/Engstrom2019Robustness", "--weights-dir", "{model}"],
        "is a file, not a directory",
    ),
    case(
        "evaluate weights dir inside a file",
        ["evaluate", "-m", "pretrained:robustbench/cifar10/L2/Engstrom2019Robustness", "--weights-dir", "{model}/w"],
        "which is a file, not a directory",
    ),
    case(
        "experiment dataset of a run not created",
        EXPERIMENT + ["--dataset", "imagenet-z"],
        "(setting of the planned task e/runs/",
    ),
    case(
        "sweep seed out of range",
        ["sweep", "--out", "{tmp}/sw", "--set", "dataset=digits", "--grid", f"seed=0,{2**40}"],
        "seed",
    ),
]


def _fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` (lock files aside) and its content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".nrflab.lock":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    run = ws / "run"
    train(make_config(**RUN_FIELDS), run, progress=False)
    build_dataset("d_rand", run, "digits", ws / "set", steps=2, eps=1.0, step_size=0.5, limit=8, progress=False)
    (ws / "broken.yaml").write_text("lr: [0.1\nepochs: 3\n")
    (ws / "planted.yaml").write_text("experiment: planted\nscale: quick\nsettings: {}\n")
    (ws / "unknown.yaml").write_text("lr: 0.1\nbatchsize: 3\n")
    (ws / "list.yaml").write_text("- 1\n- 2\n")
    (ws / "tag.yaml").write_text("lr: !!python/object/apply:os.system ['touch " + str(ws / "pwned") + "']\n")
    (ws / "garbage.safetensors").write_bytes(os.urandom(256))
    torch.save({"x": torch.ones(1)}, ws / "evil.safetensors")  # a pickle wearing a safetensors name
    (ws / "factory.py").write_text("def build():\n    return 3\n")
    (ws / "own_layers.py").write_text("from torch import nn\n\ndef head(width):\n    return nn.Linear(width, 10)\n")
    (ws / "own.py").write_text(
        "from torch import nn\nfrom own_layers import head\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, width=4):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, width, 3)\n        self.head = head(width)\n\n"
        "    def forward(self, x):\n        return self.head(self.conv(x).mean(dim=(2, 3)))\n"
    )
    (ws / "own_broken.py").write_text("import no_such_neighbour\n")
    own = torch.nn.ModuleDict({"conv": torch.nn.Conv2d(1, 4, 3), "head": torch.nn.Linear(4, 10)})
    torch.save(own.state_dict(), ws / "own_weights.pt")
    net_only = {k: v for k, v in load_file(str(run / "model.safetensors")).items() if k.startswith("net.")}
    torch.save(net_only, ws / "net_only.pt")
    net = {k.removeprefix("net."): v for k, v in load_file(run / "model.safetensors").items() if k.startswith("net.")}
    torch.save(net, ws / "bare.pt")  # a bare state dict of a 1-channel model
    (ws / "junk").mkdir()
    (ws / "junk" / "notes.txt").write_text("not a run")
    for name, change in (
        ("badcell", lambda d: d.replace("\n0,", "\nzero,", 1)),
        ("binary", None),
        ("listconfig", None),
    ):
        d = ws / name
        d.mkdir()
        for f in ("config.json", "metrics.csv"):
            (d / f).write_bytes((run / f).read_bytes())
        if name == "badcell":
            (d / "metrics.csv").write_text(change((run / "metrics.csv").read_text()))
        elif name == "binary":
            (d / "metrics.csv").write_bytes(bytes(range(256)) * 3)
        else:
            (d / "config.json").write_text("[1, 2]")
    return ws


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(bad: Case, workspace: Path, tmp_path: Path, capsys) -> None:
    before = _fingerprint(workspace)
    places = {
        "run": workspace / "run",
        "model": workspace / "run" / "model.safetensors",
        "set": workspace / "set",
        "ws": workspace,
        "tmp": tmp_path,
    }
    argv = [a.format(**places) for a in bad.argv]
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    assert bad.expect in lines[0], lines[0]
    assert _fingerprint(workspace) == before, "a refused command changed an existing file"
    assert not (workspace / "pwned").exists()
    assert not (tmp_path / "sw").exists() or not any((tmp_path / "sw").glob("*/metrics.csv"))
    for name in ("e", "r", "t"):  # refused before the output directory is created
        assert not (tmp_path / name).exists(), f"{name} was created"


def test_catalog_is_large_enough() -> None:
    assert len(CASES) >= 120
    assert len({c.name for c in CASES}) == len(CASES)


def test_overwrite_keeps_the_old_run_until_the_new_one_commits(workspace: Path, tmp_path: Path, monkeypatch) -> None:
    """A new run that fails before its first checkpoint gives the old run back, byte for byte."""
    from nrflab.training import trainer

    run = tmp_path / "run"
    train(make_config(**RUN_FIELDS), run, progress=False)
    before = _fingerprint(run)

    def fail(*args, **kwargs):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(trainer, "evaluate_epoch", fail)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        train(make_config(**{**RUN_FIELDS, "lr": 0.01}), run, overwrite=True, progress=False)
    monkeypatch.undo()
    assert _fingerprint(run) == before
    # Once the new run commits its first epoch, the old one is gone.
    train(make_config(**{**RUN_FIELDS, "lr": 0.01}), run, overwrite=True, progress=False)
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.01
    assert not (run / ".nrflab-previous").exists()


def test_second_writer_is_refused_with_the_holders_pid(workspace: Path, tmp_path: Path, capsys) -> None:
    from nrflab.runs.rundir import DirLock

    out = tmp_path / "busy"
    lock = DirLock.acquire(out, what="run directory")
    try:
        argv = [a.format(run=out) for a in TRAIN]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"error: run directory {out} is being written by another nrflab process (pid {os.getpid()}); "
            "wait for it to finish or choose another output"
        )
    finally:
        lock.release()
    assert main([a.format(run=out) for a in TRAIN]) == 0  # free again


def test_stale_temp_files_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(make_config(**RUN_FIELDS), run, progress=False)
    stale = run / ".checkpoint.safetensors.abc123.tmp"
    stale.write_bytes(b"half a shard")
    train(make_config(**{**RUN_FIELDS, "epochs": 2}), run, overwrite=True, progress=False)
    assert not stale.exists() and not list(run.rglob(".*.tmp"))


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        run = tmp_path / "run"
        train(make_config(**RUN_FIELDS), run, progress=False)
    finally:
        os.umask(old)
    for name in ("config.json", "metrics.csv", "model.safetensors", "checkpoint.safetensors"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name


def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    train(make_config(**RUN_FIELDS), tmp_path / "ref", progress=False)
    (run / "config.json").write_bytes((tmp_path / "ref" / "config.json").read_bytes())  # config, no checkpoint
    assert main([a.format(run=run) for a in TRAIN] + ["--resume"]) == 0
    assert "starting it from scratch" in capsys.readouterr().out
    assert (run / "checkpoint.safetensors").is_file()


def test_the_lock_file_is_removed_at_exit_and_a_stale_one_taken_over(tmp_path: Path) -> None:
    """A normal exit leaves no lock file; while held, a second writer is refused; a file left by a killed
    process (a PID that holds no lock) is taken over."""
    d = tmp_path / "d"
    with locked(d):
        assert (d / LOCK_FILE).read_text() == str(os.getpid())
        with pytest.raises(DirectoryBusy, match=f"pid {os.getpid()}"):
            DirLock.acquire(d)
    assert not (d / LOCK_FILE).exists()
    with pytest.raises(RuntimeError), locked(d):  # an error is a normal exit too
        raise RuntimeError("job failed")
    assert not (d / LOCK_FILE).exists()
    (d / LOCK_FILE).write_text("999999999")  # left by kill -9: no process holds it
    with locked(d):
        assert (d / LOCK_FILE).read_text() == str(os.getpid())
    assert not (d / LOCK_FILE).exists()


def test_a_finished_run_holds_no_lock_file(workspace: Path) -> None:
    assert not (workspace / "run" / LOCK_FILE).exists()
    assert not (workspace / "set" / LOCK_FILE).exists()

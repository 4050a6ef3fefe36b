"""The first-hour leftovers of issue 21, through the command line: ``--arch mypkg.models:Net --weights w.pt``
in every command that takes one model, ``--factory-arg`` as the flag form of ``?key=value``, eps printed as
8/255 in ``evaluate``'s table (machine keys kept in the JSON), and a dry run that needs no data."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from _byom_helpers import digits, net_state, trained_digits_model
from nrflab.cli import main
from nrflab.core.columns import metric_label
from nrflab.models.checkpoint import save_model
from nrflab.models.factory import parse_factory, with_arguments

ATTACK = "pgd-linf:eps=8/255,steps=1"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, stderr: str, expected: str) -> None:
    assert code == 2, stderr
    assert stderr.startswith("error:") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert expected in stderr, stderr


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A user's class in a file (raw inputs: normalization via --mean/--std), its state dict, and the same
    model as an nrflab checkpoint."""
    folder = tmp_path_factory.mktemp("own")
    model = trained_digits_model()
    torch.save(net_state(model), folder / "w.pt")
    (folder / "mynet.py").write_text(
        textwrap.dedent("""
        from nrflab.models import create_model

        def Net(width=1.0, norm="bn"):
            return create_model("smallcnn", norm, 10, 1, width=width).net
        """)
    )
    ckpt = save_model(model, folder / "tiny.safetensors")
    channels = ["--mean", str(digits().mean[0]), "--std", str(digits().std[0])]
    return {
        "folder": folder,
        "weights": folder / "w.pt",
        "arch": f"{folder / 'mynet.py'}:Net",
        "ckpt": ckpt,
        "channels": channels,
    }


# --- --weights and --factory-arg -------------------------------------------------------------------------


def _evaluate(capsys, tmp_path, own, *model_args):
    out = tmp_path / "e.json"
    base = ["evaluate", "-d", "digits", "--limit", 24, "-a", ATTACK, "--no-sanity", "-o", out, "--overwrite"]
    base += own["channels"]
    code, stdout, stderr = run_cli(capsys, *base, *model_args)
    assert code == 0, stderr
    return json.loads(out.read_text())["metrics"], stdout


def test_weights_and_factory_arg_mean_what_the_query_form_means(own, tmp_path, capsys) -> None:
    flags, _ = _evaluate(
        capsys, tmp_path, own, "--arch", own["arch"], "--weights", own["weights"], "--factory-arg", "width=0.25"
    )
    query, _ = _evaluate(capsys, tmp_path, own, "--arch", own["arch"] + "?width=0.25", "-m", own["weights"])
    mixed, _ = _evaluate(
        capsys,
        tmp_path,
        own,
        "--arch",
        own["arch"] + "?norm=bn",
        "--weights",
        own["weights"],
        "--factory-arg",
        "width=0.25",
    )
    assert flags == query == mixed and flags["clean_acc"] > 0.8


def test_bn_analysis_and_build_dataset_take_weights(own, tmp_path, capsys) -> None:
    code, stdout, stderr = run_cli(
        capsys,
        "bn-analysis",
        "--arch",
        own["arch"],
        "--weights",
        own["weights"],
        "--factory-arg",
        "width=0.25",
        "-d",
        "digits",
        "--limit",
        16,
        "-a",
        ATTACK,
        "--variant",
        "running",
        "-o",
        tmp_path / "bn",
        *own["channels"],
    )
    assert code == 0, stderr
    assert (tmp_path / "bn" / "bn_analysis.json").is_file()
    code, stdout, stderr = run_cli(
        capsys,
        "build-dataset",
        "d_det",
        "--weights",
        own["ckpt"],
        "-d",
        "digits",
        "--limit",
        8,
        "--steps",
        1,
        "--shard-size",
        8,
        "-o",
        tmp_path / "set",
        "-q",
    )
    assert code == 0, stderr
    assert (tmp_path / "set" / "dataset.json").is_file()


@pytest.mark.parametrize("command", ["evaluate", "bn-analysis", "build-dataset"])
def test_help_documents_weights_and_factory_arg(command, capsys) -> None:
    code, stdout, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert "--weights" in stdout and "--factory-arg" in stdout and "mypkg.models:Net" in stdout


def test_transfer_help_documents_factory_arg(capsys) -> None:
    code, stdout, _ = run_cli(capsys, "transfer", "--help")
    assert code == 0 and "--factory-arg" in stdout


BAD = {
    "key in both": (
        ["evaluate", "--arch", "{arch}?width=0.25", "--weights", "{w}", "--factory-arg", "width=0.5"],
        "is given in",
    ),
    "flag twice": (
        ["evaluate", "--arch", "{arch}", "--weights", "{w}", "--factory-arg", "width=1", "--factory-arg", "width=2"],
        "argument 'width' given twice",
    ),
    "no value": (
        ["evaluate", "--arch", "{arch}", "--weights", "{w}", "--factory-arg", "width"],
        "--factory-arg 'width': arguments are key=value pairs",
    ),
    "bad key": (
        ["evaluate", "--arch", "{arch}", "--weights", "{w}", "--factory-arg", "2x=1"],
        "arguments are key=value pairs",
    ),
    "unknown argument": (
        ["evaluate", "--arch", "{arch}", "--weights", "{w}", "--factory-arg", "depth=3"],
        "does not fit Net(",
    ),
    "no factory": (["evaluate", "--weights", "{ckpt}", "--factory-arg", "width=1"], "--factory-arg is for your own"),
    "two models": (["evaluate", "-m", "{ckpt}", "--weights", "{w}"], "give one model"),
    "bn two models": (["bn-analysis", "{ckpt}", "--weights", "{ckpt}"], "give one model (MODEL or --weights)"),
    "bn no model": (["bn-analysis"], "give the model"),
    "build two models": (
        ["build-dataset", "d_det", "-s", "{ckpt}", "--weights", "{ckpt}", "-d", "digits", "-o", "{tmp}/s"],
        "give one model (--source/-s or --weights)",
    ),
    "transfer weights": (
        ["transfer", "--weights", "{ckpt}", "-s", "{ckpt}", "-t", "{ckpt}"],
        "give each weights file by its role",
    ),
    "transfer no factory": (
        ["transfer", "--factory-arg", "a=1", "-s", "{ckpt}", "-t", "{ckpt}"],
        "--factory-arg is for your own",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_model_flags_are_one_line_exit_2(name, own, tmp_path, capsys) -> None:
    argv, expected = BAD[name]
    fill = {"arch": own["arch"], "w": own["weights"], "ckpt": own["ckpt"], "tmp": tmp_path}
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = [] if "-d" in argv else ["-d", "digits"]
    code, _, stderr = run_cli(capsys, *(a.format(**fill) for a in argv), *extra)
    assert_one_error_line(code, stderr, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_factory_arg_text_is_the_query_syntax(tmp_path) -> None:
    (tmp_path / "f.py").write_text("def make(**kw):\n    return kw\n")
    base = f"{tmp_path / 'f.py'}:make"
    joined = with_arguments(base + "?norm=none", ["width=2", "flag=true,name='a b'"])
    assert parse_factory(joined).arguments == parse_factory(base + "?norm=none,width=2,flag=true,name='a b'").arguments
    assert with_arguments(base, []) == base


# --- eps printed as 8/255 ---------------------------------------------------------------------------------


def test_metric_label_writes_the_radius_as_a_fraction() -> None:
    assert metric_label("robust_acc[pgd-linf_0.0313725]") == "robust_acc[pgd-linf_8/255]"
    assert metric_label("robust_acc[fgsm_0.0313725_t]") == "robust_acc[fgsm_8/255_t]"
    for key in ("clean_acc", "ligs", "robust_acc[pgd-l2_0.5]", "robust_acc[none]", "robust_acc[pgd-l2]"):
        assert metric_label(key) == key


def test_evaluate_table_prints_8_255_and_the_json_keeps_its_keys(own, tmp_path, capsys) -> None:
    out = tmp_path / "e.json"
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-m",
        own["ckpt"],
        "-d",
        "digits",
        "--limit",
        24,
        "-a",
        ATTACK,
        "--sanity-limit",
        8,
        "-o",
        out,
    )
    assert code == 0, stderr
    assert "robust_acc[pgd-linf_8/255]" in stdout and "0.0313725" not in stdout
    assert "sanity (gradient masking) of robust_acc[pgd-linf_8/255]" in stdout
    record = json.loads(out.read_text())
    assert "robust_acc[pgd-linf_0.0313725]" in record["metrics"]
    assert record["metric_labels"]["robust_acc[pgd-linf_0.0313725]"] == "robust_acc[pgd-linf_8/255]"


# --- a dry run needs no data ------------------------------------------------------------------------------


def test_paper_dry_run_without_cifar_plans_and_names_the_missing_files(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("NRFLAB_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "r"
    code, stdout, stderr = run_cli(capsys, "reproduce", "--scale", "paper", "--only", "core", "--dry-run", "-o", out)
    assert code == 0, stderr
    assert "MISSING: cifar10 not found: put data_batch_1" in stdout and "cifar-10-batches-py" in stdout
    assert "--scale paper on an NVIDIA H200: about" in stdout and "train  runs/cifar10-resnet18-bn-s1337" in stdout
    assert not out.exists() and not (tmp_path / "no-data").exists()
    code, stdout, stderr = run_cli(capsys, "experiment", "core", "--dry-run", "-o", out)
    assert code == 0, stderr
    assert "MISSING for --scale paper: cifar10 not found" in stdout and not out.exists()


def test_dry_run_still_refuses_a_device_up_front(tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, stderr = run_cli(
        capsys, "reproduce", "--only", "core", "--dry-run", "--device", "cuda", "-o", tmp_path / "r"
    )
    assert_one_error_line(code, stderr, "this machine has no CUDA GPU")

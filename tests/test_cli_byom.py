"""Tests for bringing your own model to the command line: ``nrflab evaluate`` and ``nrflab bn-analysis`` with
each kind of model reference, the sanity block, outputs that never clobber inputs, ``nrflab list
--pretrained``, and one-line errors (exit 2) for every bad input."""

from __future__ import annotations

import json
import pickle
import textwrap

import pytest
import torch

from _byom_helpers import digits, net_state, trained_digits_model
from nrflab.cli import main
from nrflab.data import limit_dataset
from nrflab.measure.metrics import accuracy
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model

ATTACK = "pgd-l2:eps=0.5,steps=3"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, stdout: str, stderr: str) -> None:
    assert code == 2, (stdout, stderr)
    assert stderr.startswith("error:") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "wrote" not in stdout


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """The same trained digits model as a state dict (DataParallel prefix, normalization given separately),
    a TorchScript file, a factory file (raw-input network: normalization via --mean/--std) and an nrflab
    checkpoint; plus files that must be refused."""
    folder = tmp_path_factory.mktemp("byom")
    model = trained_digits_model()
    mean, std = digits().mean[0], digits().std[0]
    torch.save({"state_dict": {f"module.{k}": v for k, v in net_state(model).items()}}, folder / "digits_sd.pt")
    torch.jit.save(torch.jit.trace(model, torch.rand(2, 1, 8, 8)), str(folder / "digits_ts.pt"))
    torch.save(net_state(model), folder / "net_only.pt")
    (folder / "factory.py").write_text(
        textwrap.dedent(f"""
        import torch
        from nrflab.models import create_model

        def build():
            net = create_model("smallcnn", "bn", 10, 1, width=0.25)
            state = torch.load({str(folder / "net_only.pt")!r}, weights_only=True)
            net.load_state_dict({{**net.state_dict(), **{{f"net.{{k}}": v for k, v in state.items()}}}})
            return net

        class Rounded(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return torch.round(self.net(x) * 2) / 2

        def build_masked():
            return Rounded(build())
    """)
    )
    ckpt = save_model(model, folder / "nrflab" / "tiny.safetensors")
    torch.save({"model": model.state_dict()}, folder / "full_state.pt")  # nrflab's layout, under a container
    torch.save({f"net.{k}": v for k, v in net_state(model).items()}, folder / "net_prefixed.pt")  # no normalize.*
    (folder / "own_layers.py").write_text("NUM_CLASSES = 10\n")
    (folder / "own.py").write_text(
        textwrap.dedent("""
        from nrflab.models import create_model
        from own_layers import NUM_CLASSES  # a module beside this file

        def digits_net(width=1.0):
            return create_model("smallcnn", "bn", NUM_CLASSES, 1, width=width)
    """)
    )
    no_bn = save_model(create_model("smallcnn", "none", 10, 1, width=0.25, seed=0), folder / "nobn.safetensors")

    class Payload:
        def __reduce__(self):
            return (open, (str(folder / "pwned"), "w"))

    (folder / "evil.pt").write_bytes(pickle.dumps({"conv1.weight": Payload()}, protocol=2))
    return {
        "model": model,
        "folder": folder,
        "sd": folder / "digits_sd.pt",
        "ts": folder / "digits_ts.pt",
        "factory": f"{folder / 'factory.py'}:build",
        "masked": f"{folder / 'factory.py'}:build_masked",
        "ckpt": ckpt,
        "nobn": no_bn,
        "evil": folder / "evil.pt",
        "mean": f"{mean}",
        "std": f"{std}",
    }


def expected_clean(model, n: int) -> float:
    x, y = limit_dataset(digits().test, n, seed=0).tensors()  # --limit: a seeded random subset
    return accuracy(model, (x, y))


@pytest.mark.parametrize("kind", ["sd", "ts", "factory", "ckpt"])
def test_evaluate_any_reference_kind(kind, refs, tmp_path, capsys) -> None:
    extra = ["--mean", refs["mean"], "--std", refs["std"]] if kind in ("sd", "factory") else []
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-m",
        refs[kind],
        "-d",
        "digits",
        "--limit",
        40,
        "--attack",
        ATTACK,
        "--sanity-limit",
        16,
        "-o",
        out,
        *extra,
    )
    assert code == 0, stderr
    record = json.loads(out.read_text())
    assert record["metrics"]["clean_acc"] == expected_clean(refs["model"], 40) > 0.85
    assert (
        record["model_reference"]["kind"]
        == {"sd": "state-dict", "ts": "torchscript", "factory": "factory", "ckpt": "nrflab"}[kind]
    )
    assert record["sanity"]["pgd-l2_0.5"]["num_samples"] == 16
    assert "sanity (gradient masking) of robust_acc[pgd-l2_0.5] on 16 images:" in stdout
    assert f"wrote {out}" in stdout


def test_same_model_in_every_format_gives_the_same_numbers(refs, tmp_path, capsys) -> None:
    records = []
    for kind in ("sd", "ts", "factory"):
        extra = ["--mean", refs["mean"], "--std", refs["std"]] if kind != "ts" else []
        out = tmp_path / f"{kind}.json"
        code, _, stderr = run_cli(
            capsys,
            "evaluate",
            "-m",
            refs[kind],
            "-d",
            "digits",
            "--limit",
            32,
            "--attack",
            ATTACK,
            "--no-sanity",
            "-o",
            out,
            *extra,
        )
        assert code == 0, stderr
        records.append(json.loads(out.read_text())["metrics"])
    assert records[0] == pytest.approx(records[1], abs=1e-5) and records[0] == pytest.approx(records[2], abs=1e-5)


def test_a_surrogate_feeds_the_transfer_check(refs, tmp_path, capsys) -> None:
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-c",
        refs["ckpt"],
        "-d",
        "digits",
        "--limit",
        24,
        "--attack",
        ATTACK,
        "--no-ligs",
        "--surrogate",
        refs["ts"],
        "-o",
        out,
    )
    assert code == 0, stderr
    checks = {c["name"]: c for c in json.loads(out.read_text())["sanity"]["pgd-l2_0.5"]["checks"]}
    assert checks["transfer"]["status"] == "pass"  # the surrogate is the model itself: transfer == white-box
    assert checks["transfer"]["numbers"]["whitebox"] == checks["transfer"]["numbers"]["transfer"]


def test_the_sanity_block_flags_a_masked_model(refs, tmp_path, capsys) -> None:
    out = tmp_path / "masked.json"
    norm = ["--mean", refs["mean"], "--std", refs["std"]]
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-m",
        refs["masked"],
        *norm,
        "-d",
        "digits",
        "--limit",
        32,
        "--attack",
        ATTACK,
        "--no-ligs",
        "--surrogate",
        refs["factory"],
        "--surrogate-mean",
        refs["mean"],
        "--surrogate-std",
        refs["std"],
        "-o",
        out,
    )
    assert code == 0, stderr
    report = json.loads(out.read_text())["sanity"]["pgd-l2_0.5"]
    assert report["flagged"]
    assert {c["name"] for c in report["checks"] if c["status"] == "flag"} >= {"unbounded", "transfer"}
    assert "FLAG  unbounded" in stdout and "robust_acc[pgd-l2_0.5] cannot be trusted as it stands" in stdout


def test_default_output_of_a_non_run_model_is_the_current_directory(refs, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-m",
        refs["ts"],
        "-d",
        "digits",
        "--limit",
        16,
        "--attack",
        ATTACK,
        "--no-sanity",
        "--no-ligs",
    )
    assert code == 0, stderr
    assert (tmp_path / "evaluation_digits_ts_digits.json").is_file()
    code, _, stderr = run_cli(
        capsys,
        "evaluate",
        "-m",
        refs["ts"],
        "-d",
        "digits",
        "--limit",
        16,
        "--attack",
        ATTACK,
        "--no-sanity",
        "--no-ligs",
        "-o",
        tmp_path / "results",
    )
    assert code == 0, stderr
    assert (tmp_path / "results" / "evaluation_digits_ts_digits.json").is_file()


def test_bn_analysis_from_the_command_line(refs, tmp_path, capsys) -> None:
    out = tmp_path / "bn"
    code, stdout, stderr = run_cli(
        capsys,
        "bn-analysis",
        refs["sd"],
        "--mean",
        refs["mean"],
        "--std",
        refs["std"],
        "-d",
        "digits",
        "--limit",
        60,
        "--attack",
        ATTACK,
        "--calibration",
        200,
        "--batch-size",
        60,
        "--out",
        out,
    )
    assert code == 0, stderr
    record = json.loads((out / "bn_analysis.json").read_text())
    assert [v["variant"] for v in record["variants"]] == ["running", "batch", "recalibrated", "affine-only", "folded"]
    assert record["max_fold_error"] < 1e-4 and record["model"]["kind"] == "state-dict"
    assert (out / "bn_analysis.md").read_text().startswith("# BN surgery: digits_sd on digits")
    lines = stdout.splitlines()
    assert any(line.startswith("folded ") for line in lines) and any("folded vs running" in line for line in lines)
    code, stdout, stderr = run_cli(
        capsys,
        "bn-analysis",
        refs["ckpt"],
        "-d",
        "digits",
        "--limit",
        30,
        "--attack",
        ATTACK,
        "--variant",
        "running",
        "--variant",
        "folded",
        "--no-ligs",
        "--shift",
        "gaussian_noise@3",
        "--out",
        tmp_path / "bn2",
    )
    assert code == 0, stderr
    record = json.loads((tmp_path / "bn2" / "bn_analysis.json").read_text())
    assert len(record["variants"]) == 2 and record["shift_adaptation"]["adapt_samples"] == 32
    assert [r["shift"] for r in record["shift_adaptation"]["rows"]] == ["gaussian_noise@3"]
    assert (
        "- gaussian_noise@3: clean" in stdout
        and "## BN statistics under shift" in (tmp_path / "bn2" / "bn_analysis.md").read_text()
    )


def test_list_pretrained(capsys) -> None:
    code, stdout, _ = run_cli(capsys, "list", "--pretrained")
    assert code == 0
    assert "pyautoattack/cifar10/resnet18" in stdout and "robustbench/cifar10/Linf/Sehwag2021Proxy_R18" in stdout
    assert "sha256 unverified" in stdout and "licence: MIT" in stdout


ERRORS = {
    "missing-model": ["evaluate", "-m", "{folder}/nope.pt", "-d", "digits"],
    "no-model": ["evaluate", "-d", "digits"],
    "evil-pickle": ["evaluate", "-m", "{evil}", "-d", "digits"],
    "pretrained-on-digits": ["evaluate", "-m", "pretrained:pyautoattack/cifar10/resnet18", "-d", "digits"],
    "mean-without-std": ["evaluate", "-m", "{sd}", "-d", "digits", "--mean", "0.5"],
    "bad-mean": ["evaluate", "-m", "{sd}", "-d", "digits", "--mean", "a,b", "--std", "1,1"],
    "arch-for-torchscript": ["evaluate", "-m", "{ts}", "-d", "digits", "--arch", "smallcnn"],
    "wrong-arch": ["evaluate", "-m", "{sd}", "-d", "digits", "--arch", "resnet18"],
    "out-is-model": ["evaluate", "-m", "{ts}", "-d", "digits", "-o", "{folder}/other.safetensors"],
    "out-is-card": ["evaluate", "-m", "{ts}", "-d", "digits", "-o", "{folder}/dataset.json"],
    "out-is-sidecar": ["evaluate", "-m", "{ckpt}", "-d", "digits", "-o", "{folder}/nrflab/tiny.json"],
    "out-not-json": ["evaluate", "-m", "{ts}", "-d", "digits", "-o", "{folder}/eval.txt"],
    "no-dataset": ["evaluate", "-m", "{ts}"],
    "bn-no-batchnorm": ["bn-analysis", "{nobn}", "-d", "digits"],
    "bn-torchscript": ["bn-analysis", "{ts}", "-d", "digits"],
    "bn-unknown-variant": ["bn-analysis", "{ckpt}", "-d", "digits", "--variant", "frozen"],
    "bn-out-is-file": ["bn-analysis", "{ckpt}", "-d", "digits", "--out", "{sd}"],
    "own-arch-missing-function": [
        "evaluate",
        "-m",
        "{folder}/full_state.pt",
        "-d",
        "digits",
        "--arch",
        "{folder}/own.py:digits_nett",
    ],
    "own-arch-bad-argument": [
        "evaluate",
        "-m",
        "{folder}/full_state.pt",
        "-d",
        "digits",
        "--arch",
        "{folder}/own.py:digits_net?widht=0.25",
    ],
    "own-arch-wrong-width": [
        "evaluate",
        "-m",
        "{folder}/full_state.pt",
        "-d",
        "digits",
        "--arch",
        "{folder}/own.py:digits_net?width=0.5",
    ],
    "own-arch-with-norm": [
        "evaluate",
        "-m",
        "{folder}/full_state.pt",
        "-d",
        "digits",
        "--arch",
        "{folder}/own.py:digits_net",
        "--norm",
        "bn",
    ],
    "own-arch-file-missing": [
        "evaluate",
        "-m",
        "{folder}/full_state.pt",
        "-d",
        "digits",
        "--arch",
        "{folder}/nope.py:f",
    ],
    "factory-bad-argument": ["evaluate", "-m", "{folder}/own.py:digits_net?depth=3", "-d", "digits"],
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_input_exits_2_with_one_error_line(name, refs, capsys) -> None:
    args = [a.format(**{k: v for k, v in refs.items() if k != "model"}) for a in ERRORS[name]]
    code, stdout, stderr = run_cli(capsys, *args, "--limit", 8, "--attack", ATTACK)
    assert_one_error_line(code, stdout, stderr)
    assert not (refs["folder"] / "pwned").exists()


def test_own_factory_plus_state_dict_from_the_command_line(refs, tmp_path, capsys) -> None:
    """``-m w.pt --arch file.py:fn?key=value``: the factory (importing its neighbour) builds the module, the
    weights (under a container) load into it, and the numbers are the original model's."""
    out = tmp_path / "own.json"
    arch = f"{refs['folder'] / 'own.py'}:digits_net?width=0.25"
    code, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "-m",
        refs["folder"] / "full_state.pt",
        "--arch",
        arch,
        "-d",
        "digits",
        "--limit",
        40,
        "--attack",
        ATTACK,
        "--no-sanity",
        "--no-ligs",
        "-o",
        out,
    )
    assert code == 0, stderr
    record = json.loads(out.read_text())
    assert record["metrics"]["clean_acc"] == expected_clean(refs["model"], 40)
    assert record["model_reference"]["kind"] == "state-dict"
    assert f"layout: built by digits_net(width=0.25) from {refs['folder'] / 'own.py'}, under 'model'" in stdout


@pytest.mark.parametrize("command", ["evaluate", "bn-analysis"])
def test_nrflab_state_dict_without_normalize_buffers_takes_the_datasets_normalization(
    command, refs, tmp_path, capsys
) -> None:
    weights = refs["folder"] / "net_prefixed.pt"
    arch = ["--arch", "smallcnn", "--norm", "bn", "--width", "0.25"]
    if command == "evaluate":
        args = ["evaluate", "-m", weights, *arch, "-o", tmp_path / "e.json", "--no-sanity", "--no-ligs"]
    else:
        args = ["bn-analysis", weights, *arch, "-o", tmp_path / "bn", "--variant", "running", "--no-ligs"]
    code, stdout, stderr = run_cli(capsys, *args, "-d", "digits", "--limit", 40, "--attack", ATTACK)
    assert code == 0, stderr
    mean = digits().mean[0]
    assert f"note: normalization used: dataset digits's mean [{mean:.4g}]" in stdout
    if command == "evaluate":
        assert json.loads((tmp_path / "e.json").read_text())["metrics"]["clean_acc"] == expected_clean(
            refs["model"], 40
        )
    given = ["--mean", refs["mean"], "--std", refs["std"]]
    again = ["--overwrite"] if command == "evaluate" else []
    code, stdout, stderr = run_cli(capsys, *args, *given, *again, "-d", "digits", "--limit", 40, "--attack", ATTACK)
    assert code == 0, stderr
    assert "note: normalization used: mean [" in stdout and "(given; the file has no normalize.*)" in stdout

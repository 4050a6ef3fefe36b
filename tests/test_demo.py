"""The demo (the main job) end to end in its reduced mode, and --help for every command."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from nrflab.cli import main
from nrflab.cli.app import app


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


def test_demo_writes_runs_plot_and_report(demo_dir, capsys):
    runs = sorted(p.name for p in (demo_dir / "runs").iterdir())
    assert runs == ["mnist5k-smallcnn-bn-s0", "mnist5k-smallcnn-none-s0"]
    for run in runs:
        assert (demo_dir / "runs" / run / "metrics.csv").read_text().count("\n") == 3  # header + epochs 0, 1
    png = (demo_dir / "figure3_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert ET.parse(demo_dir / "figure3_curves.svg").getroot().tag.endswith("svg")
    md = (demo_dir / "report.md").read_text()
    assert "| model | seeds | usefulness (clean acc)" in md
    assert "| smallcnn/bn | 1 |" in md and "| smallcnn/none | 1 |" in md
    assert md.count(": this run ") >= 4  # one verdict per claim
    html = (demo_dir / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html


def test_demo_reuses_finished_runs(demo_dir, capsys):
    before = (demo_dir / "runs" / "mnist5k-smallcnn-bn-s0" / "metrics.csv").stat().st_mtime_ns
    report = (demo_dir / "report.md").read_text()
    assert main(["demo", "--quick", "--quiet", "--out", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert "runs/mnist5k-smallcnn-bn-s0: already finished" in out and "usefulness (clean acc)" in out
    assert (demo_dir / "runs" / "mnist5k-smallcnn-bn-s0" / "metrics.csv").stat().st_mtime_ns == before
    strip = lambda text: text.split("## The chain")[0]  # noqa: E731  (the chain section holds wall times)
    assert strip((demo_dir / "report.md").read_text()) == strip(report)


def test_demo_records_its_settings_and_verdicts(demo_dir):
    import json

    import yaml

    recipe = yaml.safe_load((demo_dir / "recipes" / "core.yaml").read_text())
    assert recipe["experiment"] == "core" and recipe["settings"]["twins"]["epochs"] == 1
    verdicts = json.loads((demo_dir / "verdicts.json").read_text())
    # the quick demo trains one seed per arm for one epoch: no claim about models can be decided from it:
    # void exactly when the guard failed a twin, else not tested (one seed)
    assert [v["claim_id"] for v in verdicts] == [
        "core.clean",
        "core.robustness",
        "core.ligs",
        "core.ligs_fall",
        "core.frequency",
    ]
    for v in verdicts:
        failed = [c["model"] for c in v["guard"] if not c["passed"]]
        assert v["verdict"] == ("void" if failed else "not tested"), v
        # one epoch leaves no fall of LIGS between the fixed epochs 1 and final: claim 4 has no seed at all
        seeds = 0 if v["claim_id"] == "core.ligs_fall" else 1
        assert v["experiment"] == "core" and v["n_seeds"] == seeds and len(v["guard"]) == 2, v
    assert [v["unit"] for v in verdicts] == ["points", "points", "LIGS", "LIGS", "share"]
    assert all(v["protocol"].startswith("the paper's protocol") for v in verdicts)
    md = (demo_dir / "report.md").read_text()
    assert (
        "## Verdicts at a glance" in md
        and "| experiment | claim | verdict | estimate [95 % CI] | seeds | p | p (Holm) | family |" in md
    )


def test_demo_rejects_unknown_arch(tmp_path, capsys):
    assert main(["demo", "--arch", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown arch 'nope'")


def test_experiment_rejects_unknown_name(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown experiment 'nope'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["experiment", "core", "--set", "twins.epochz=2"], "error: experiment core: unknown setting twins.epochz"),
        (["experiment", "core", "--set", "twins.epochs=two"], "error: experiment core: setting twins.epochs: Input"),
        (["experiment", "core", "--scale", "huge"], "error: unknown scale 'huge'"),
        (["experiment", "planted", "--dataset", "digits"], "error: experiment 'planted' has no dataset setting"),
        (["reproduce", "--only", "core", "--set", "nope.x=1"], "error: --set nope.x=1: unknown setting 'nope'"),
        (["reproduce", "--backend", "slurm"], "error: unknown backend 'slurm'"),
    ],
)
def test_bad_experiment_flags_are_one_line_errors_before_anything_trains(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("command", [[]] + [[c.name or c.callback.__name__] for c in app.registered_commands])
def test_every_command_has_help(command, capsys):
    assert main([*command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_list_names_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("mnist5k", "cifar10", "resnet18", "smallcnn", "fixup", "pgd-l2", "core", "features", "corruptions"):
        assert word in out

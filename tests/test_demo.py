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
    assert main(["demo", "--quick", "--quiet", "--out", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert "reusing finished run" in out and "usefulness (clean acc)" in out  # the table is printed
    assert (demo_dir / "runs" / "mnist5k-smallcnn-bn-s0" / "metrics.csv").stat().st_mtime_ns == before


def test_demo_rejects_unknown_arch(tmp_path, capsys):
    assert main(["demo", "--arch", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown arch 'nope'")


def test_experiment_rejects_unknown_name(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown experiment 'nope'")


@pytest.mark.parametrize("command", [[]] + [[c.name or c.callback.__name__] for c in app.registered_commands])
def test_every_command_has_help(command, capsys):
    assert main([*command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_list_names_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("mnist5k", "cifar10", "resnet18", "smallcnn", "fixup", "pgd-l2", "core"):
        assert word in out


def test_accuracy_gaps_within_sampling_error_are_inconclusive():
    from nrflab.experiments.core import higher

    assert higher(0.966, 0.968, 500) is None  # 0.2 points on 500 images: noise
    assert higher(0.90, 0.50, 500) is True
    assert higher(0.15, 0.69, 500) is False

"""The planted experiment end to end at its quick scale: sections, verdicts, figures and run files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from nrflab.core.errors import NrflabError
from nrflab.experiments import planted

OUTCOMES = {"agrees", "disagrees", "inconclusive", "void"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("planted")
    return out, planted.run(out, quick=True, progress=False)


def test_sections_and_figures(quick_run) -> None:
    out, sections = quick_run
    titles = [s.title for s in sections]
    assert len(titles) == 4
    assert "claims 2-3" in titles[0] and "claim 4" in titles[1] and "claim 5" in titles[2] and "claim 6" in titles[3]
    for s in sections:
        assert "Protocol:" in s.markdown
        assert s.images and all(
            p.is_file() and p.suffix == ".png" and p.with_suffix(".svg").is_file() for p in s.images
        )
    text = sections[0].markdown
    assert "Capability controls" in text and "NRF-norm sweep" in text and "Controls" in text
    assert "The MNIST question" in sections[2].markdown


def test_verdicts_file(quick_run) -> None:
    out, _ = quick_run
    data = json.loads((out / "verdicts.json").read_text())
    claims = [v["claim"] for v in data["verdicts"]]
    for needle in (
        "Claim 2",
        "Control (non-robustness)",
        "Control (availability)",
        "Control (frequency band)",
        "Claim 4, robust features are learned first",
        "Claim 5",
        "Conflicting set",
        "MNIST D_rand",
        "Claim 6",
    ):
        assert any(needle in c for c in claims), needle
    for v in data["verdicts"]:
        assert v["outcome"] in OUTCOMES
        assert v["protocol"]
        assert (v["outcome"] == "void") == bool(v["reason"]) or v["outcome"] == "inconclusive"
    assert data["seeds"] == [0, 1] and data["settings"]["epochs"] == planted.QUICK.epochs


def test_runs_record_reliance(quick_run) -> None:
    out, _ = quick_run
    op = out / "runs" / f"sweep-a{planted.QUICK.a_n:g}-bn-s0"
    with (op / "probes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"epoch", "step", "samples", "f_r", "f_n", "rho"} <= set(rows[0])
    assert float(rows[0]["step"]) == 0 and float(rows[-1]["step"]) > 0
    with (op / "metrics.csv").open() as fh:
        metrics = list(csv.DictReader(fh))
    assert len(metrics) == planted.QUICK.epochs + 1 and "rho" in metrics[0]
    config = json.loads((op / "config.json").read_text())
    assert config["dataset"].startswith("planted:variant=redundant")
    assert config["resolved"]["dataset"]["info"]["params"]["a_n"] == planted.QUICK.a_n
    conflicting = json.loads((out / "runs" / "conflicting-none-s1" / planted.EVAL_FILE).read_text())
    assert {"acc_y", "acc_y1", "rho"} <= set(conflicting["value"])


def test_rerun_reuses_every_run(quick_run) -> None:
    out, sections = quick_run
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.safetensors")}
    again = planted.run(out, quick=True, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.safetensors")}
    assert before == after and [s.title for s in again] == [s.title for s in sections]


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(NrflabError, match="norms must include it and one more"):
        planted.run(tmp_path, settings=planted.QUICK.model_copy(update={"norms": ("bn", "gn")}), progress=False)
    with pytest.raises(NrflabError, match="needs at least two seeds"):
        planted.run(tmp_path, settings=planted.QUICK, seeds=(3,), progress=False)


@pytest.mark.slow
def test_workers_give_the_same_numbers(quick_run, tmp_path: Path) -> None:
    out, _ = quick_run
    planted.run(tmp_path, settings=planted.QUICK, seeds=(0, 1), progress=False, workers=2)
    a = json.loads((out / "verdicts.json").read_text())["verdicts"]
    b = json.loads((tmp_path / "verdicts.json").read_text())["verdicts"]
    assert [v["outcome"] for v in a] == [v["outcome"] for v in b]
    for x, y in zip(a, b, strict=True):
        assert (math.isnan(x["difference"]) and math.isnan(y["difference"])) or x["difference"] == y["difference"]

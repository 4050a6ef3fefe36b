"""What ``evaluate`` and ``compare`` leave for a reader and for a rerun: the CSV beside the JSON (one row per
metric, accuracies with a Wilson interval), AutoAttack's resume state beside the output (a rerun reuses it and
attacks nothing again), and compare's AutoAttack on the first N of the PGD images (the ensemble over those)."""

from __future__ import annotations

import csv
import json
import math

import pyautoattack
import pytest
import torch

from _byom_helpers import trained_digits_model
from nrflab.cli import main
from nrflab.core.stats import wilson
from nrflab.measure.compare import ENSEMBLE
from nrflab.models.checkpoint import save_model

AA = "autoattack:version=custom,attacks=apgd-ce,norm=l2,eps=0.5"


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twins")
    model = trained_digits_model()
    save_model(model, folder / "a.safetensors")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen) * p.std())
    save_model(model, folder / "b.safetensors")
    return folder


def _no_attack_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished AutoAttack state must not attack again")

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", refuse)


def test_evaluate_writes_a_csv_row_per_metric_and_resumes_autoattack(twins, tmp_path, monkeypatch):
    out = tmp_path / "e.json"
    args = ["evaluate", "-m", str(twins / "a.safetensors"), "-d", "digits", "--limit", "24", "--no-sanity"]
    args += ["-a", "pgd-l2:eps=0.5,steps=3", "-a", AA, "-o", str(out)]
    assert main(args) == 0
    record = json.loads(out.read_text())
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert [r["metric"] for r in rows] == list(record["metrics"])
    assert list(rows[0]) == ["metric", "label", "attack", "value", "ci_low", "ci_high", "num_images"]
    by = {r["metric"]: r for r in rows}
    clean = record["metrics"]["clean_acc"]
    lo, hi = wilson(round(clean * 24), 24)
    assert math.isclose(float(by["clean_acc"]["ci_low"]), lo, rel_tol=1e-5)
    assert math.isclose(float(by["clean_acc"]["ci_high"]), hi, rel_tol=1e-5)
    assert by["ligs"]["ci_low"] == "" and by["ligs"]["num_images"] == "24"
    aa_key = next(k for k in record["metrics"] if k.startswith("robust_acc[autoattack"))
    assert by[aa_key]["attack"] == record["attacks"][aa_key[len("robust_acc[") : -1]]
    assert by["robust_acc[ensemble l2 eps=0.5]"]["attack"] == "every attack of its threat"  # PGD and AutoAttack
    states = list((tmp_path / "autoattack-state").glob("autoattack-*.pt"))
    assert len(states) == 1  # one batch of 24 images, one model
    _no_attack_runs(monkeypatch)  # the rerun reads the finished state: no attack runs, the same numbers
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(out.read_text())["metrics"] == record["metrics"]


def test_compare_runs_autoattack_on_the_first_n_images_and_resumes(twins, tmp_path, monkeypatch, capsys):
    a, b, out = str(twins / "a.safetensors"), str(twins / "b.safetensors"), tmp_path / "cmp"
    args = ["compare", a, b, "-d", "digits", "--limit", "30", "--no-ligs", "-a", "pgd-l2:eps=0.5,steps=3"]
    args += ["-a", AA, "--autoattack-limit", "10", "-o", str(out)]
    assert main(args) == 0
    record = json.loads((out / "compare.json").read_text())
    n = {r["quantity"]: r["n"] for r in record["rows"]}
    assert n["clean accuracy"] == 30 and n["robust accuracy (PGD-L2 eps 0.5)"] == 30
    assert n[f"robust accuracy, {ENSEMBLE}, L2 eps 0.5"] == 10 and record["ensemble_images"] == 10
    assert [v for q, v in n.items() if "autoattack" in q.lower() and "ensemble" not in q] == [10]
    assert "over the first 10 images, the ones every attack saw" in (out / "compare.md").read_text()
    assert len(list((out / "autoattack-state").glob("autoattack-*.pt"))) == 2  # one per model
    _no_attack_runs(monkeypatch)
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "compare.json").read_text())["rows"] == record["rows"]


def test_compare_without_an_autoattack_limit_keeps_every_image_in_the_ensemble(twins, tmp_path):
    a, b, out = str(twins / "a.safetensors"), str(twins / "b.safetensors"), tmp_path / "cmp"
    args = ["compare", a, b, "-d", "digits", "--limit", "12", "--no-ligs", "-a", "fgsm:eps=0.1", "-a", AA]
    assert main([*args, "--autoattack-limit", "50", "-o", str(out)]) == 0
    record = json.loads((out / "compare.json").read_text())
    assert {r["n"] for r in record["rows"]} == {12} and record["ensemble_images"] == 12
    assert "the ones every attack saw" not in (out / "compare.md").read_text()

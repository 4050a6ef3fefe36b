"""nrflab compare: intervals against scipy (per image for one pair, per pair of models for groups), the reading
flips when A and B are swapped, the ensemble is the per-image worst case, outputs never replace a result."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats as sps

from _byom_helpers import trained_digits_model
from nrflab.cli import main
from nrflab.measure.compare import ENSEMBLE, Measured, compare_measured
from nrflab.models.checkpoint import save_model


def _m(values: dict[str, list[float]]) -> Measured:
    n = len(next(iter(values.values())))
    return Measured(
        "m", torch.zeros(n, dtype=torch.long), {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    )


def test_one_pair_is_a_paired_t_test_over_images_and_swapping_flips_the_reading():
    a = _m({"clean accuracy": [1, 1, 1, 0, 1, 1, 1, 1]})
    b = _m({"clean accuracy": [0, 1, 0, 0, 0, 1, 0, 0]})
    (row,) = compare_measured([a], [b])
    ref = sps.ttest_1samp([1, 0, 1, 0, 1, 0, 1, 1], 0.0)
    assert math.isclose(row.p, float(ref.pvalue), rel_tol=1e-9) and row.n == 8 and row.word == "A higher"
    assert math.isclose(row.difference, 0.625) and "over 8 test images" in row.over
    (swapped,) = compare_measured([b], [a])
    assert swapped.word == "B higher" and math.isclose(swapped.low, -row.high) and math.isclose(swapped.p, row.p)


def test_groups_pair_models_by_position_and_need_three_pairs():
    a = [_m({"LIGS": [v, v]}) for v in (0.90, 0.85, 0.92, 0.88)]
    b = [_m({"LIGS": [v, v]}) for v in (0.80, 0.79, 0.83, 0.81)]
    (row,) = compare_measured(a, b)
    ref = sps.ttest_rel([0.90, 0.85, 0.92, 0.88], [0.80, 0.79, 0.83, 0.81])
    assert math.isclose(row.p, float(ref.pvalue), rel_tol=1e-6) and row.n == 4 and row.unit == "LIGS"
    assert row.word == "A higher" and "over 4 pairs of models" in row.over
    (two,) = compare_measured(a[:2], b[:2])
    assert two.word == "not tested (2 pairs; at least 3 needed)"


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twins")
    model = trained_digits_model()
    save_model(model, folder / "a.safetensors")
    with torch.no_grad():  # a worse twin: noise on the weights
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen) * p.std())
    save_model(model, folder / "b.safetensors")
    return folder


def test_the_command_writes_json_csv_markdown_and_never_replaces(twins, tmp_path, capsys):
    a, b, out = str(twins / "a.safetensors"), str(twins / "b.safetensors"), tmp_path / "cmp"
    args = ["compare", a, b, "-d", "digits", "--limit", "60", "-a", "pgd-linf:eps=0.1,steps=3", "-a", "fgsm:eps=0.1"]
    assert main([*args, "--no-ligs", "-o", str(out)]) == 0
    record = json.loads((out / "compare.json").read_text())
    names = [r["quantity"] for r in record["rows"]]
    ensemble_name = f"robust accuracy, {ENSEMBLE}, Linf eps 0.1"  # both attacks are of one threat (Linf, 0.1)
    assert names[0] == "clean accuracy" and ensemble_name in names and len(names) == 4
    rows = {r["quantity"]: r for r in record["rows"]}
    ensemble = rows[ensemble_name]
    assert ensemble["a"] <= min(r["a"] for q, r in rows.items() if q.startswith("robust accuracy (")) + 1e-12
    assert (out / "compare.csv").read_text().startswith("quantity,unit,a,b,difference,low,high,p,n,over,word\n")
    assert (
        "| clean accuracy |" in (out / "compare.md").read_text()
        and "## Accuracy per class" in (out / "compare.md").read_text()
    )
    capsys.readouterr()
    assert main([*args, "--no-ligs", "-o", str(out)]) == 2
    assert "compare.json exists: give --overwrite" in capsys.readouterr().err
    assert main(["compare", f"{a},{b}", a, "-d", "digits", "-o", str(tmp_path / "x")]) == 2
    assert "side A has 2 models and side B 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_attacks_of_one_kind_and_eps_keep_one_result_each():
    from nrflab.attacks import distinct_labels, parse_attack

    specs = [
        parse_attack(t)
        for t in (
            "pgd-l2:eps=1",
            "pgd-l2:eps=1,steps=100",
            "pgd-l2:eps=1,steps=100,restarts=3",
            "pgd-l2:eps=1",
            "fgsm:eps=0.1",
            "pgd-linf:eps=0.1,random_start=1",
            "pgd-linf:eps=0.1",
        )
    ]
    labels = [s.label for s in distinct_labels(specs)]
    assert labels == [
        "pgd-l2_1_steps10",
        "pgd-l2_1_steps100",
        "pgd-l2_1_steps100_restarts3",
        "fgsm_0.1",
        "pgd-linf_0.1_random-start",
        "pgd-linf_0.1_no-random-start",
    ]
    assert distinct_labels(specs[4:5])[0].label == "fgsm_0.1"  # alone: the plain label
    assert distinct_labels(specs)[0] == specs[0]  # the name is a key, not part of the attack


def test_evaluate_keeps_two_pgd_results_of_one_eps(twins, tmp_path):
    out = tmp_path / "e.json"
    args = ["evaluate", "-m", str(twins / "a.safetensors"), "-d", "digits", "--limit", "20", "--no-ligs", "--no-sanity"]
    assert main([*args, "-a", "pgd-l2:eps=0.5,steps=2", "-a", "pgd-l2:eps=0.5,steps=5", "-o", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    two, five = metrics["robust_acc[pgd-l2_0.5_steps2]"], metrics["robust_acc[pgd-l2_0.5_steps5]"]
    ensemble = metrics["robust_acc[ensemble l2 eps=0.5]"]  # the per-image worst case: within its analytic bounds
    assert two + five - 1 - 1e-6 <= ensemble <= min(two, five) + 1e-6


def test_evaluate_never_replaces_a_result_and_flags_a_model_at_chance(twins, tmp_path, capsys):
    from nrflab.measure.health import chance_warning

    out = tmp_path / "e.json"
    args = ["evaluate", "-m", str(twins / "a.safetensors"), "-d", "digits", "--limit", "20", "--no-ligs"]
    args += ["--no-sanity", "-a", "fgsm:eps=0.1", "-o", str(out)]
    assert main(args) == 0
    first = out.read_text()
    assert json.loads(first)["at_chance"] is False
    assert main([*args[:6], "10", *args[7:]]) == 2  # another --limit into the same file: refused
    assert "e.json exists: give --overwrite" in capsys.readouterr().err and out.read_text() == first
    assert main([*args, "--overwrite"]) == 0
    assert chance_warning(0.15, 10).startswith("clean accuracy 15.0 % is within 10 points of chance (10 %)")
    assert chance_warning(0.5, 10) == ""

"""Tests for nrflab.measure.sanity: a normally trained model passes the gradient-masking checks, a deliberately masked
one (rounded logits: zero input gradients) is flagged, each check's decision rule flags what it should, and
the checks leave the model unchanged."""

from __future__ import annotations

import json

import pytest
import torch

from _byom_helpers import RoundedLogits, digits, trained_digits_model
from nrflab.attacks import parse_attack
from nrflab.measure import sanity as S

PGD_L2 = parse_attack("pgd-l2:eps=0.5,steps=5")
PGD_LINF = parse_attack("pgd-linf:eps=0.1,steps=5")


@pytest.fixture(scope="module")
def images():
    x, y = digits().test.tensors()
    return x[:48], y[:48]


@pytest.fixture(scope="module")
def model():
    return trained_digits_model()


@pytest.mark.parametrize("spec", [PGD_L2, PGD_LINF], ids=lambda s: s.label)
def test_a_normal_model_passes(spec, model, images) -> None:
    """A strong enough PGD (40 steps) on an ordinary model: every check passes (5 steps are flagged as weak)."""
    from dataclasses import replace

    x, y = images
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = S.sanity_checks(model, x, y, spec=replace(spec, steps=40))
    assert not report.flagged, S.format_sanity([report])
    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {
        "eps monotone": "pass",
        "unbounded": "pass",
        "restarts": "pass",
        "transfer": "skip",
        "stronger attack": "pass",
    }
    unbounded = next(c for c in report.checks if c.name == "unbounded")
    assert unbounded.numbers["accuracy"] <= 1 / 48
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items()) and not model.training


@pytest.mark.parametrize("spec", [PGD_L2, PGD_LINF], ids=lambda s: s.label)
def test_a_masked_model_is_flagged(spec, model, images) -> None:
    x, y = images
    masked = RoundedLogits(model).eval()
    report = S.sanity_checks(masked, x, y, spec=spec, surrogate=model, surrogate_name="unmasked twin")
    assert report.flagged
    flagged = {c.name for c in report.flags}
    assert {"unbounded", "transfer"} <= flagged
    transfer = next(c for c in report.checks if c.name == "transfer")
    assert transfer.numbers["whitebox"] > transfer.numbers["transfer"] + 0.3  # white-box attack fails, transfer works
    lines = S.format_sanity([report])
    assert lines[0].startswith(f"sanity (gradient masking) of robust_acc[{spec.label}] on 48 images")
    assert any(line.strip().startswith("FLAG  unbounded") for line in lines)
    assert "cannot be trusted" in lines[-1]
    json.dumps(report.to_dict())


def test_the_decision_rules_flag_rising_accuracy_and_strong_restarts(model, images, monkeypatch) -> None:
    x, y = images
    rising = iter([0.9, 0.5, 0.6, 0.2])  # clean, eps/2, eps, 2 eps: rises by 10 pp between eps/2 and eps
    monkeypatch.setattr(S, "_accuracy_under", lambda *a, **k: next(rising))
    check = S.check_eps_monotone(model, x, y, spec=PGD_L2)
    assert check.passed is False and "rises from eps 0.25 to 0.5" in check.summary
    plain_then_restart = iter([0.50, 0.30])
    monkeypatch.setattr(S, "_accuracy_under", lambda *a, **k: next(plain_then_restart))
    check = S.check_restarts(model, x, y, spec=PGD_L2)
    assert check.passed is False and "overstates robustness by 20.0 pp" in check.summary
    within_noise = iter([0.50, 0.48])
    monkeypatch.setattr(S, "_accuracy_under", lambda *a, **k: next(within_noise))
    assert S.check_restarts(model, x, y, spec=PGD_L2).passed is True


def test_single_step_attacks_skip_restarts_and_none_runs_no_checks(model, images) -> None:
    x, y = images
    report = S.sanity_checks(model, x, y, spec=parse_attack("fgsm:eps=0.1"))
    assert {c.name: c.status for c in report.checks}["restarts"] == "skip"
    assert S.sanity_checks(model, x, y, spec=parse_attack("none")).checks == ()


def test_unbounded_radius_covers_the_image_cube() -> None:
    x = torch.zeros(2, 3, 4, 4)
    assert S.unbounded_eps("linf", x) == 1.0
    assert S.unbounded_eps("l2", x) == pytest.approx(torch.ones(3, 4, 4).norm().item())


def test_a_stronger_attack_flags_a_weak_pgd_and_not_a_strong_one() -> None:
    from _byom_helpers import digits, trained_digits_model
    from nrflab.attacks import parse_attack
    from nrflab.measure.sanity import check_stronger

    model = trained_digits_model().eval()
    x, y = digits().test.tensors()
    x, y = x[:32], y[:32]
    weak = check_stronger(model, x, y, spec=parse_attack("pgd-l2:eps=1,steps=1"))
    assert weak.passed is False and "too weak" in weak.summary and weak.numbers["autoattack"] < weak.numbers["attack"]
    strong = check_stronger(model, x, y, spec=parse_attack("pgd-l2:eps=1,steps=20"))
    assert strong.passed is True and strong.numbers["attack"] - strong.numbers["autoattack"] <= 0.0625
    aa = check_stronger(model, x, y, spec=parse_attack("autoattack:version=custom,attacks=apgd-ce,norm=l2,eps=1"))
    assert aa.passed is None

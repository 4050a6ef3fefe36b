"""AutoAttack as an attack kind: nrflab's result equals a direct ``pyautoattack`` call on the same images and seed,
image by image (adversarial examples and robust flags); the spec grammar round-trips and refuses what does not
apply in one line; the model comes back unchanged; a run resumed from its state directory gives the same result."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyautoattack
import pytest
import torch
from torch import nn

from nrflab.attacks import AttackSpec, AutoAttack, attack_from_parts, parse_attack
from nrflab.core.errors import NrflabError

from conftest import assert_same_state, state_snapshot

CUSTOM = "autoattack:eps=0.05,version=custom,attacks=apgd-ce+apgd-t+fab-t,seed=0"


def mlp(seed: int = 0) -> nn.Module:
    """A tiny classifier with BatchNorm (so that buffers and mode matter) whose predictions vary."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
        model[2].running_mean.uniform_(-0.5, 0.5)  # type: ignore[operator]
    return model.eval()


def images(model: nn.Module, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 1x8x8 images labelled by the model itself (so every one is attacked)."""
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, model(x).argmax(1)


def direct(model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: pyautoattack called by hand, without nrflab (its adversarial examples, robust flags)."""
    norm = {"linf": "Linf", "l2": "L2"}[spec.norm]
    attacks = list(spec.attacks) if spec.attacks else None
    aa = pyautoattack.AutoAttack(
        model, attacks=attacks, eps=spec.eps, norm=norm, seed=spec.seed, version=spec.version or "standard"
    )
    if spec.restarts is not None:
        aa.apgd.n_restarts = spec.restarts
    x_adv, y_adv = aa.run_standard_evaluation(x.clone(), y.clone())
    return x_adv, y_adv == y


def robust_flags(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def assert_same_as_direct(
    model: nn.Module, spec: AttackSpec, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> None:
    ref_adv, ref_robust = direct(model, spec, x, y)
    # nrflab's entry point re-projects onto the ball: x + clip(x_adv - x) moves a pixel by at most an ulp.
    assert (x_adv - ref_adv).abs().max().item() <= 1e-6
    assert torch.equal(robust_flags(model, x_adv, y), ref_robust)
    assert 0 < int(ref_robust.sum()) < y.shape[0]  # a mix: some images broken, some robust


@pytest.mark.parametrize(
    "text",
    [
        CUSTOM,
        "autoattack:eps=0.3,norm=l2,version=custom,attacks=apgd-ce+apgd-dlr,seed=3",
        "autoattack:eps=0.3,norm=l2,attacks=apgd-ce+apgd-dlr,restarts=1,seed=3",
    ],
)
def test_equals_the_direct_call_image_by_image(text: str) -> None:
    model = mlp()
    x, y = images(model)
    spec = parse_attack(text)
    x_adv = spec.build(model)(x, y)
    assert_same_as_direct(model, spec, x_adv, x, y)


@pytest.mark.slow
def test_the_standard_version_equals_the_direct_call() -> None:
    model = mlp()
    x, y = images(model)
    spec = parse_attack("autoattack:eps=0.05,seed=0")
    assert spec.version is None and spec.build(model).reference(x.device).attacks_to_run == [
        "apgd-ce",
        "apgd-t",
        "fab-t",
        "square",
    ]
    assert_same_as_direct(model, spec, spec.build(model)(x, y), x, y)


def test_the_seed_comes_from_build_unless_the_spec_names_one() -> None:
    model = mlp()
    assert cast_aa(parse_attack("autoattack:eps=0.1").build(model, seed=7)).seed == 7
    assert cast_aa(parse_attack("autoattack:eps=0.1,seed=2").build(model, seed=7)).seed == 2


def cast_aa(attack: Any) -> AutoAttack:
    assert isinstance(attack, AutoAttack)
    return attack


@pytest.mark.parametrize(
    "text",
    [
        "autoattack:eps=0.25",
        "autoattack:eps=0.5,norm=l2",
        "autoattack:version=plus,eps=8/255",
        "autoattack:version=rand,eps=0.1,seed=4",
        "autoattack:version=custom,attacks=apgd-ce+apgd-t,norm=l2,eps=0.5,seed=0",
        "autoattack:attacks=square+fab,eps=0.1",
        "autoattack:attacks=apgd-ce+apgd-dlr,restarts=1,norm=l2,eps=1.0,seed=0",
        "pgd-l2:eps=0.5,steps=3,step=0.1,random_start=1,restarts=2",
        "fgsm:eps=0.1",
        "none",
    ],
)
def test_the_spec_round_trips(text: str) -> None:
    spec = parse_attack(text)
    again = parse_attack(spec.to_string())
    assert again == spec and again.to_string() == spec.to_string() and again.label == spec.label


def test_specs_normalize_what_they_mean() -> None:
    assert parse_attack("autoattack:eps=0.1,norm=linf,version=standard") == parse_attack("autoattack:eps=0.1")
    custom = parse_attack("autoattack:eps=0.1,attacks=APGD-CE")
    assert (custom.version, custom.attacks, custom.norm) == ("custom", ("apgd-ce",), "linf")
    l2 = parse_attack("autoattack:version=custom,attacks=apgd-ce+apgd-t,norm=l2,eps=0.5,seed=0")
    assert (l2.norm, l2.eps, l2.seed, l2.label) == ("l2", 0.5, 0, "autoattack-l2-apgd-ce+apgd-t_0.5")
    assert attack_from_parts("autoattack", eps=0.3) == AttackSpec(kind="autoattack", eps=0.3)
    # restarts: None is pyautoattack's own (5 for a custom version's APGD); PGD's 1 is its default, stored as None
    one = parse_attack("autoattack:attacks=apgd-ce+apgd-dlr,restarts=1,eps=1")
    assert one.restarts == 1 and one != parse_attack("autoattack:attacks=apgd-ce+apgd-dlr,eps=1")
    assert cast_aa(one.build(mlp())).reference(torch.device("cpu")).apgd.n_restarts == 1
    assert (
        cast_aa(parse_attack("autoattack:attacks=apgd-ce,eps=1").build(mlp()))
        .reference(torch.device("cpu"))
        .apgd.n_restarts
        == 5
    )
    assert parse_attack("pgd-l2:eps=0.5,restarts=1") == parse_attack("pgd-l2:eps=0.5")
    # the classic kinds print as before
    assert parse_attack("pgd-l2:eps=0.5").to_string() == "pgd-l2:eps=0.5,steps=10"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("autoattack:eps=0.1,steps=20", "the attack autoattack takes no steps"),
        ("autoattack:eps=0.1,targeted=1", "the attack autoattack takes no targeted"),
        ("autoattack:eps=0.1,restarts=2", "the standard version of autoattack fixes its restarts"),
        ("autoattack:eps=0.1,version=plus,restarts=1", "the plus version of autoattack fixes its restarts"),
        ("autoattack:eps=0.1,attacks=apgd-ce,restarts=0", "restarts must be >= 1, got 0"),
        ("autoattack:eps=0.1,version=fast", "unknown version 'fast' of autoattack; choose standard, "),
        ("autoattack:eps=0.1,attacks=apgd-ce+pgd", "unknown attack 'pgd' for autoattack; choose from apgd-ce, "),
        ("autoattack:eps=0.1,version=custom", "version=custom of autoattack needs attacks="),
        ("autoattack:eps=0.1,version=plus,attacks=apgd-ce", "the plus version of autoattack fixes its attacks"),
        ("autoattack:eps=0.1,attacks=apgd-ce+apgd-ce", "attacks of autoattack repeat a name"),
        ("autoattack:eps=0.1,norm=l1", "unknown norm 'l1' for autoattack; choose linf or l2"),
        ("autoattack:eps=0.1,seed=1.5", "seed must be a whole number"),
        ("pgd-l2:eps=0.1,version=custom", "the attack pgd-l2 takes no version"),
        ("pgd-l2:eps=0.1,seed=1", "the attack pgd-l2 takes no seed"),
        ("fgsm:eps=0.1,attacks=apgd-ce", "the attack fgsm takes no attacks"),
        ("pgd-l2:eps=0.1,norm=linf", "the norm of pgd-l2 is fixed by its name (l2)"),
        ("none:seed=1", "the attack 'none' takes no options"),
    ],
)
def test_bad_keys_are_one_line(text: str, message: str) -> None:
    with pytest.raises(NrflabError) as err:
        parse_attack(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_python_specs_and_flags_refuse_what_does_not_apply() -> None:
    with pytest.raises(NrflabError, match="^the attack pgd-l2 takes no version"):
        AttackSpec(kind="pgd-l2", version="custom")
    with pytest.raises(NrflabError, match="^the attack autoattack takes no steps"):
        AttackSpec(kind="autoattack", steps=3)
    with pytest.raises(NrflabError, match="^the attack autoattack takes no steps"):
        attack_from_parts("autoattack", eps=0.1, steps=20)
    with pytest.raises(NrflabError, match="^the attack autoattack takes no targeted"):
        attack_from_parts("autoattack", eps=0.1, targeted=True)
    with pytest.raises(NrflabError, match="own losses"):
        AttackSpec(kind="autoattack").build(mlp(), loss_fn=lambda m, x, y: m(x).sum(1))


def test_model_rngs_and_inputs_are_unchanged() -> None:
    model = mlp()
    x, y = images(model, 8)
    model.train()  # the attack runs in eval mode and gives the model back in train mode
    before = state_snapshot(model)
    x_before = x.clone()
    rng = torch.get_rng_state()
    x_adv = parse_attack("autoattack:eps=0.05,attacks=apgd-ce,seed=0").build(model)(x, y)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert_same_state(model, before)
    assert torch.equal(x, x_before) and torch.equal(torch.get_rng_state(), rng)
    assert (x_adv - x).abs().max().item() <= 0.05 + 1e-7 and 0 <= x_adv.min() and x_adv.max() <= 1


def test_fp32_only() -> None:
    model = mlp().double()
    x, y = images(mlp(), 2)
    with pytest.raises(NrflabError, match="^autoattack runs in fp32; the model has torch.float64"):
        parse_attack("autoattack:eps=0.1,attacks=apgd-ce").build(model)(x, y)


def test_progress_goes_to_nrflab_logger(caplog: pytest.LogCaptureFixture) -> None:
    model = mlp()
    x, y = images(model, 4)
    with caplog.at_level(logging.INFO, logger="nrflab"):
        parse_attack("autoattack:eps=0.05,attacks=apgd-ce,seed=0").build(model)(x, y)
    lines = [r.getMessage() for r in caplog.records if r.name == "nrflab.attacks.autoattack"]
    assert any(line.startswith("autoattack: apgd-ce - 1/1") for line in lines)
    assert any("robust accuracy after APGD-CE" in line for line in lines)
    assert not logging.getLogger("auto-attack").handlers


def test_a_resumed_run_gives_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = mlp()
    x, y = images(model)
    spec = parse_attack(CUSTOM)
    state = tmp_path / "autoattack-state"
    original = pyautoattack.AutoAttack.run_standard_evaluation
    calls: list[list[str]] = []

    def stop_at_the_second(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(self.attacks_to_run))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is killed while APGD-T runs
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        spec.build(model, state_dir=state)(x, y)
    assert calls == [["apgd-ce"], ["apgd-t"]] and len(list(state.glob("autoattack-*.pt"))) == 1
    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", original)

    resumed = spec.build(model, state_dir=state)(x, y)  # APGD-CE is not run again
    assert_same_as_direct(model, spec, resumed, x, y)

    def never(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished state runs nothing")

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", never)
    assert torch.equal(spec.build(model, state_dir=state)(x, y), resumed)
    other = mlp(seed=1)  # another model: another state file, never the first one's result
    with pytest.raises(AssertionError, match="runs nothing"):
        spec.build(other, state_dir=state)(x, y)


def test_a_corrupt_state_is_one_line(tmp_path: Path) -> None:
    model = mlp()
    x, y = images(model, 2)
    attack = parse_attack("autoattack:eps=0.05,attacks=apgd-ce").build(model, state_dir=tmp_path)
    attack(x, y)
    (path,) = tmp_path.glob("autoattack-*.pt")
    path.write_bytes(b"not a state")
    with pytest.raises(NrflabError, match="^cannot read the AutoAttack state .*; delete it to start over$"):
        attack(x, y)


def test_evaluate_takes_an_autoattack_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nrflab.cli import main
    from nrflab.models import create_model
    from nrflab.models.checkpoint import save_model

    model = create_model("smallcnn", "bn", 10, 1, width=0.125, mean=(0.1307,), std=(0.3081,), seed=0)
    ckpt = save_model(model, tmp_path / "tiny.safetensors")
    out = tmp_path / "eval.json"
    text = "autoattack:eps=0.1,attacks=apgd-ce,seed=0"
    argv = ["evaluate", "-c", ckpt, "-d", "mnist5k", "--limit", 8, "--no-ligs", "-a", text, "-o", out]
    code = main([str(a) for a in argv])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    label = parse_attack(text).label
    assert record["attacks"][label] == parse_attack(text).to_string()
    assert f"robust_acc[{label}]" in record["metrics"]
    assert "autoattack: initial accuracy" in capsys.readouterr().out  # pyautoattack's progress, on stdout

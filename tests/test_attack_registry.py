"""The attack registry and the @final entry point: an attack registered in this file is accepted by
``parse_attack``/``AttackSpec`` and the CLI grammar, and however badly its ``_perturb`` behaves (stepping far
outside the ball and [0,1], writing into its input, switching the model to train mode), what the caller gets
lies in the eps-ball and [0,1], the input is untouched and the model is restored."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from nrflab.attacks import (
    PGD,
    Attack,
    AttackSpec,
    attack_from_parts,
    attack_kind,
    list_attacks,
    parse_attack,
    register_attack,
)
from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry

from conftest import assert_same_state, state_snapshot, tiny_model


@register_attack("test-outside-l2", norm="l2")
@register_attack("test-outside-linf", norm="linf")
class OutsideAttack(Attack):
    """A deliberately bad attack: jumps far outside the ball and [0,1], scribbles on its input and leaves the
    model in train mode."""

    name = "outside"

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.model.train()
        x.add_(5.0)  # the copy it was handed, never the caller's tensor
        return x * 3 - 1


@register_attack("test-steps", norm="l2")
class StepsAttack(Attack):
    """An iterative toy: a spec of it needs steps >= 1, and its own settings reach it through from_spec."""

    iterative: ClassVar[bool] = True

    def __init__(self, model: nn.Module, *, steps: int = 1, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.steps = steps

    @classmethod
    def from_spec(cls, spec: AttackSpec, model: nn.Module, *, seed: int = 0, **kwargs: Any) -> StepsAttack:
        return cls(model, steps=spec.steps, eps=spec.eps, norm=spec.norm, seed=seed, **kwargs)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + 0.01 * self.steps


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 8, 8, generator=gen), torch.randint(0, 10, (6,), generator=gen)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_a_registered_attack_is_parsed_built_and_held_to_the_ball(norm: str) -> None:
    model = tiny_model(seed=0)
    model.eval()
    x, y = _batch()
    x_before = x.clone()
    before = state_snapshot(model)
    spec = parse_attack(f"test-outside-{norm}:eps=0.3")
    assert (spec.kind, spec.norm, spec.eps, spec.label) == (
        f"test-outside-{norm}",
        norm,
        0.3,
        f"test-outside-{norm}_0.3",
    )
    assert parse_attack(spec.to_string()) == spec
    attack = spec.build(model, seed=4)
    assert isinstance(attack, OutsideAttack) and attack.norm == norm and attack.seed == 4
    x_adv = attack(x, y)
    assert torch.equal(x, x_before)  # the caller's tensor is untouched
    assert not model.training
    assert_same_state(model, before)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= 0.3 + 1e-5
    assert float(size.min()) > 0.1  # projected back onto the ball, not refused or zeroed


def test_registered_attacks_are_listed_and_found_by_pattern() -> None:
    assert list_attacks()[:5] == ["pgd-linf", "pgd-l2", "fgsm", "fgm-l2", "none"]
    assert list_attacks("test-outside-*") == ["test-outside-linf", "test-outside-l2"]
    assert list_attacks("pgd-*") == ["pgd-linf", "pgd-l2"]
    assert attack_kind("pgd-l2").attack is PGD and attack_kind("pgd-l2").norm == "l2"
    with pytest.raises(NrflabError, match=re.escape("unknown attack 'cw'; choose one of pgd-linf, pgd-l2, fgsm")):
        parse_attack("cw:eps=1")


def test_a_registered_attack_reaches_the_command_line_grammar() -> None:
    spec = attack_from_parts("test-steps", eps=0.5, steps=3)
    assert (spec.kind, spec.steps, spec.norm) == ("test-steps", 3, "l2")
    attack = spec.build(tiny_model(seed=0))
    assert isinstance(attack, StepsAttack) and attack.steps == 3
    with pytest.raises(NrflabError, match="steps must be >= 1 for test-steps"):
        parse_attack("test-steps:eps=0.5,steps=0")
    with pytest.raises(NrflabError, match="eps must be > 0 for test-outside-l2"):
        AttackSpec(kind="test-outside-l2", eps=0.0)


def test_the_entry_point_cannot_be_replaced() -> None:
    with pytest.raises(TypeError, match="overrides Attack.__call__; implement _perturb"):

        class Sneaky(Attack):
            def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[misc]
                return x

            def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return x

    with pytest.raises(TypeError, match="overrides Attack.apply"):

        class Sneakier(Attack):
            def apply(self, x: torch.Tensor, y: torch.Tensor, *, check_inputs: bool = True) -> torch.Tensor:  # type: ignore[misc]
                return x

            def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return x


def test_a_result_of_the_wrong_shape_is_refused() -> None:
    class Cropping(Attack):
        def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x[:, :, 1:]

    x, y = _batch()
    with pytest.raises(NrflabError, match=r"returned \(6, 1, 7, 8\) for inputs of shape \(6, 1, 8, 8\)"):
        Cropping(tiny_model(seed=0), eps=0.1)(x, y)


def test_bad_registrations_are_refused() -> None:
    class Other(OutsideAttack):
        pass

    register_attack("test-outside-l2", norm="l2")(OutsideAttack)  # the same entry again: a no-op
    with pytest.raises(NrflabError, match="attack 'test-outside-l2' is already registered"):
        register_attack("test-outside-l2", norm="l2")(Other)
    with pytest.raises(NrflabError, match="unknown norm 'l1'"):
        register_attack("test-l1", norm="l1")  # type: ignore[arg-type]
    with pytest.raises(NrflabError, match="must be lower case"):
        register_attack("Test:x", norm="l2")
    with pytest.raises(NrflabError, match="decorates an Attack subclass"):
        register_attack("test-not-an-attack", norm="l2")(int)  # type: ignore[type-var]
    assert "test-not-an-attack" not in list_attacks()


def test_generic_registry() -> None:
    reg: Registry[int] = Registry("number")
    reg.add("one", 1)
    reg.register("two", lambda f: 2)(print)
    assert reg.names() == ["one", "two"] and reg.names("t*") == ["two"] and reg.get("two") == 2
    assert "one" in reg and len(reg) == 2 and list(reg) == ["one", "two"]
    with pytest.raises(NrflabError, match=re.escape("unknown number 'three'; choose one of one, two")):
        reg.get("three")


def test_adversarial_training_is_described_by_an_attack_spec() -> None:
    from nrflab.training import make_config

    assert make_config(dataset="mnist5k").adversarial() is None
    paper = make_config(dataset="mnist5k", adv_train="targeted-l2").adversarial()
    assert paper == AttackSpec(kind="pgd-l2", eps=0.5, steps=7, step_size=0.1, random_start=False, targeted=True)
    linf = make_config(dataset="mnist5k", adv_train="pgd-linf", adv_eps=0.1, adv_steps=4).adversarial()
    assert linf == AttackSpec(kind="pgd-linf", eps=0.1, steps=4, step_size=2.5 * 0.1 / 4, random_start=True)
    with pytest.raises(NrflabError, match="adv_eps must be > 0 for adversarial training"):
        make_config(dataset="mnist5k", adv_train="pgd-l2", adv_eps=0)


def test_feature_builds_are_described_by_an_attack_spec_with_the_old_card_layout() -> None:
    from nrflab.features import KIND_DEFAULTS, make_settings

    s = make_settings(
        "d_rand", steps=4, eps=0.5, step_size=0.1, seed=3, limit=10
    )  # the step given: 0.1 is no longer the default for 4 steps
    assert s.attack == AttackSpec(kind="pgd-l2", eps=0.5, steps=4, step_size=0.1, targeted=True)
    assert KIND_DEFAULTS["d_r"].steps == 1000 and KIND_DEFAULTS["d_r"].eps == 1000.0
    assert list(s.to_dict())[:4] == ["kind", "steps", "eps", "step_size"]
    assert s.digest() == "bc376198615d291c"  # as before AttackSpec: earlier builds still resume
    assert s.with_(steps=5).attack.steps == 5

"""The typed training config: one run, fully described, validated where the values enter.

Defaults are the paper's CIFAR recipe; a dataset preset adjusts the fields the user did not set (the
preset used is recorded). The same schema validates recipe files, command-line flags and the config
recorded in a run directory, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from nrflab.attacks import AttackSpec, parse_attack
from nrflab.core.accel import CompileMode
from nrflab.core.errors import NrflabError
from nrflab.core.io import read_yaml_mapping
from nrflab.core.schema import Schema, one_line
from nrflab.core.validation import WIDTH_MAX, Seed
from nrflab.data.defaults import PAPER_EVAL_ATTACKS, PRESETS, preset_for

AdvTrainKind = Literal["none", "targeted-l2", "pgd-linf", "pgd-l2"]
AmpMode = Literal["none", "bf16"]

#: Fields that may differ between a run and the config that resumes or reuses it: where the data and the
#: computation live and how it is scheduled, not what is computed.
PLACEMENT_FIELDS = ("device", "data_root", "eval_batch_size", "compile")


class TrainConfig(Schema):
    """One training run. Defaults are the paper's CIFAR recipe; a dataset preset adjusts the fields the
    user did not set (recorded in ``preset``). On the settings base (unknown keys refused, no NaN or
    infinity); unlike the base it stays assignable, each assignment validated, as it always was."""

    model_config = ConfigDict(validate_assignment=True, frozen=False)

    dataset: str = "cifar10"
    data_root: Optional[str] = None
    arch: str = "resnet18"
    norm: str = "bn"
    width: float = Field(default=1.0, gt=0, le=WIDTH_MAX)
    init: str = "auto"
    epochs: int = Field(default=150, ge=1)
    batch_size: int = Field(default=128, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: Literal["multistep", "onecycle", "cosine", "constant"] = "multistep"
    milestones: list[int] = Field(default_factory=lambda: [50, 100])
    gamma: float = Field(default=0.1, gt=0)
    warmup_epochs: float = Field(default=0.0, ge=0)
    augment: bool = True
    flip: bool = True
    seed: Seed = 1337
    device: str = "auto"
    eval_attacks: list[str] = Field(default_factory=lambda: list(PAPER_EVAL_ATTACKS))
    ligs: bool = True
    ligs_sigma: float = Field(default=0.01, ge=0)
    eval_size: Optional[int] = Field(default=None, ge=1)
    eval_batch_size: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = "auto"
    eval_shifted_labels: bool = False
    probe_every: int = Field(default=0, ge=0)
    probe_epochs: int = Field(default=1, ge=0)
    adv_train: AdvTrainKind = "none"
    adv_eps: Optional[float] = Field(default=None, ge=0)
    adv_steps: Optional[int] = Field(default=None, ge=1)
    adv_step_size: Optional[float] = Field(default=None, gt=0)
    attack_mode: Literal["eval", "train"] = "eval"
    keep_checkpoints: int = Field(default=0, ge=0)
    channels_last: bool = False
    amp: AmpMode = "none"
    compile: Literal["none", CompileMode] = "none"
    preset: Optional[str] = None

    @field_validator("eval_attacks")
    @classmethod
    def _check_attacks(cls, v: list[str]) -> list[str]:
        for text in v:
            try:
                parse_attack(text)
            except NrflabError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _check_adversarial(self) -> TrainConfig:
        if self.adv_train != "none" and self.adv_eps == 0:
            raise ValueError("adv_eps must be > 0 for adversarial training (adv_train none trains without attack)")
        return self

    @field_validator("milestones")
    @classmethod
    def _check_milestones(cls, v: list[int]) -> list[int]:
        if sorted(v) != list(v) or any(m < 1 for m in v):
            raise ValueError("milestones must be increasing epochs >= 1")
        return v

    def attack_specs(self) -> list[AttackSpec]:
        return [parse_attack(t) for t in self.eval_attacks]

    def adversarial(self) -> AttackSpec | None:
        """The attack of adversarial training (None for standard training), with the paper's/Madry's defaults:
        PGD-L2 eps 0.5 (``targeted-l2``: toward a random class, no random start) or PGD-Linf eps 8/255, 7 steps;
        a given eps without a step size gets the step 2.5 eps / steps."""
        if self.adv_train == "none":
            return None
        l2 = self.adv_train in ("targeted-l2", "pgd-l2")
        eps, steps, step = (0.5, 7, 0.1) if l2 else (8 / 255, 7, 2 / 255)
        eps = self.adv_eps if self.adv_eps is not None else eps
        steps = self.adv_steps if self.adv_steps is not None else steps
        if self.adv_step_size is not None:
            step = self.adv_step_size
        elif self.adv_eps is not None:
            step = 2.5 * eps / steps
        targeted = self.adv_train == "targeted-l2"
        return AttackSpec(
            kind="pgd-l2" if l2 else "pgd-linf",
            eps=eps,
            steps=steps,
            step_size=step,
            random_start=not targeted,
            targeted=targeted,
        )

    def identity(self) -> dict[str, object]:
        """What makes two runs the same run: every field except where data and computation live."""
        return {k: v for k, v in self.model_dump().items() if k not in PLACEMENT_FIELDS}

    def differences(self, recorded: Mapping[str, object]) -> list[str]:
        """``field: recorded -> new`` for every identity field in which this recipe differs from a run's
        recorded config (what :meth:`nrflab.runs.rundir.RunDir.is_finished_with` asks)."""
        from nrflab.runs.rundir import config_diff

        return config_diff(recorded_identity(recorded), self.identity())


def validation_message(exc: ValidationError) -> str:
    """One line from a pydantic error: the first problem, with its field (see :func:`nrflab.core.schema.one_line`)."""
    return one_line(exc, model=TrainConfig, where="invalid config")


def make_config(base_dataset: str | None = None, **fields: Any) -> TrainConfig:
    """Build a TrainConfig: paper defaults, then the dataset's preset, then the given fields."""
    try:
        user = TrainConfig(**fields)
    except ValidationError as exc:
        raise NrflabError(validation_message(exc)) from None
    preset = user.preset or preset_for(user.dataset, base_dataset)
    if preset not in PRESETS:
        raise NrflabError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    merged = {**PRESETS[preset], **user.model_dump(exclude_unset=True), "preset": preset}
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        raise NrflabError(validation_message(exc)) from None


def load_config_file(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML/JSON recipe (a run's recorded config.json works too); explicit overrides win."""
    data = read_yaml_mapping(path, "config file")
    data.pop("resolved", None)
    return make_config(**{**data, **overrides})


def recorded_identity(recorded: Mapping[str, object]) -> dict[str, object]:
    """The identity of a recorded config; fields added to TrainConfig since it was written take their
    defaults (a run from an older nrflab is still the same run)."""
    defaults = TrainConfig().model_dump()
    return {k: recorded.get(k, defaults[k]) for k in defaults if k not in PLACEMENT_FIELDS} | {
        k: v for k, v in recorded.items() if k not in defaults and k not in ("resolved", *PLACEMENT_FIELDS)
    }


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package

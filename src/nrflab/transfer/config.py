"""The transfer recipe: one typed, validated description of a transfer job.

The same schema reads ``nrflab transfer --recipe FILE`` and the command's flags (flags override the file),
so they cannot drift apart. Unknown keys and values of the wrong type are refused in one line naming the
key, before any model is loaded or any file written.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from nrflab.attacks import AttackSpec, attack_from_parts
from nrflab.core.errors import NrflabError
from nrflab.core.schema import Schema, one_line
from nrflab.core.validation import Seed, resolve_device
from nrflab.transfer.boosts import Boost, EarlyStop, check_boost
from nrflab.transfer.refs import OutsideModelOptions


def _rule_parses(value: str) -> str:
    EarlyStop.parse(value)
    return value


#: An early-stop rule as text (``epoch=K``, ``frac=X``, ``ligs=F``), checked where it is read (one-line errors).
EarlyStopRule = Annotated[str, AfterValidator(_rule_parses)]


class TransferConfig(Schema):
    """A transfer job: which models, which data, which attack, which boost.

    ``attack`` is a registered kind (``nrflab.attacks.list_attacks()``: ``pgd-linf``, ``fgm-l2``, ...; then ``eps``
    is required and ``steps``/``step_size`` optional) or a full spec like ``pgd-linf:eps=0.1,steps=10``: either
    way one :class:`AttackSpec` (:meth:`attack_spec`). ``limit`` attacks a
    random subset of that many test images drawn with ``seed`` (kept in test-set order), not the first N.
    ``arch``/``norm``/``num_classes``/``width``/``mean``/``std`` apply to models from outside nrflab (bare
    state dicts, models that expect normalized inputs). ``out`` is the output directory.
    """

    model_config = ConfigDict(strict=True)  # on top of Schema's: frozen, unknown keys refused, finite numbers

    sources: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    dataset: Optional[str] = None
    data_root: Optional[str] = None
    attack: str = "pgd-linf"
    eps: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    steps: Optional[int] = Field(None, ge=1)
    step_size: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    targeted: bool = False
    target_policy: Literal["next", "random"] = "next"
    source_epoch: Optional[int] = Field(None, ge=0)
    boost: Boost = "none"
    early_stop: EarlyStopRule = "frac=0.9"
    twin_candidates: list[str] = Field(default_factory=list)
    twins: list[str] = Field(default_factory=list)
    limit: Optional[int] = Field(None, ge=1)
    seed: Seed = 0
    device: str = "auto"
    batch_size: int = Field(256, ge=1)
    include_self: bool = False
    arch: Optional[str] = None
    norm: Optional[str] = None
    num_classes: Optional[int] = Field(None, ge=2)
    width: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    out: Optional[str] = None

    @field_validator("sources", "targets", "twin_candidates", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        """One path is a list of one; paths may be ``os.PathLike``."""
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        return value

    @field_validator("twins", mode="before")
    @classmethod
    def _as_pairs(cls, value: Any) -> Any:
        """``SOURCE=TWIN`` texts (a mapping reads as its pairs); each side a model reference."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, Mapping):
            value = [f"{os.fspath(k)}={os.fspath(v)}" for k, v in value.items()]
        if isinstance(value, (list, tuple)):
            for text in value:
                source, sep, twin = str(text).partition("=")
                if not sep or not source.strip() or not twin.strip():
                    raise ValueError(f"bad twin {text!r}: give SOURCE=TWIN (a source model and its no-BN twin)")
        return value

    @field_validator("dataset", "data_root", "out", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("boost", mode="before")
    @classmethod
    def _check_boost(cls, value: Any) -> Any:
        if isinstance(value, str):
            check_boost(value)
        return value

    @field_validator("target_policy", mode="before")
    @classmethod
    def _check_policy(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("next", "random"):
            raise ValueError(f"unknown target policy {value!r}; choose next or random")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        resolve_device(value)
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> TransferConfig:
        if self.source_epoch is not None and self.boost in ("early-stop", "both"):
            raise ValueError(
                "--source-epoch and --boost early-stop both choose the source epoch; use --early-stop epoch=K"
            )
        if self.twins and self.boost not in ("no-bn-twin", "both"):
            raise ValueError("--twin names a no-BN twin: it needs --boost no-bn-twin or both")
        named = {os.path.normpath(s) for s in self.sources}
        stray = [a for a, _ in self.twin_pairs() if os.path.normpath(a) not in named]
        if stray:
            raise ValueError(f"--twin {stray[0]}=...: {stray[0]} is not among the sources ({', '.join(self.sources)})")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std (per channel), or neither")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel each, got {len(self.mean)} and {len(self.std)}")
        self.attack_spec()
        return self

    # -- derived values ----------------------------------------------------------------------------
    def attack_spec(self) -> AttackSpec:
        """The attack as a spec: a full spec (``kind:key=value,...``) as written, or a kind completed by
        ``eps`` (required), ``steps`` (default 10) and ``step_size``."""
        return attack_from_parts(
            self.attack, eps=self.eps, steps=self.steps, step_size=self.step_size, targeted=self.targeted
        )

    @property
    def is_targeted(self) -> bool:
        """Targeted by the flag or by the attack spec (``targeted=1``)."""
        return self.targeted or self.attack_spec().targeted

    def twin_pairs(self) -> list[tuple[str, str]]:
        """The ``--twin SOURCE=TWIN`` pairs, as (source reference, twin reference)."""
        return [(a.strip(), b.strip()) for a, _, b in (t.partition("=") for t in self.twins)]

    def early_stop_rule(self) -> EarlyStop:
        return EarlyStop.parse(self.early_stop)

    def model_options(self) -> OutsideModelOptions:
        return OutsideModelOptions(
            arch=self.arch,
            norm=self.norm,
            num_classes=self.num_classes,
            width=self.width,
            mean=None if self.mean is None else tuple(self.mean),
            std=None if self.std is None else tuple(self.std),
        )

    # -- construction with one-line errors ---------------------------------------------------------
    @classmethod
    def build(cls, **fields: Any) -> TransferConfig:
        """A config from keyword fields; bad values raise :class:`NrflabError` in one line naming the key."""
        return cls.from_mapping(fields)

    @classmethod
    def parse(
        cls, data: Mapping[str, Any], *, where: str = "transfer settings", flags: Collection[str] = ()
    ) -> TransferConfig:
        """:meth:`Schema.parse` with the transfer wording (see :meth:`from_mapping`)."""
        return cls.from_mapping(data, where=where, flags=frozenset(flags))

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, where: str = "transfer settings", flags: frozenset[str] = frozenset()
    ) -> TransferConfig:
        """A config from a mapping (a recipe file's keys, ``-`` read as ``_``); errors name ``where`` and the
        key (as ``--flag`` when it is among ``flags``, the keys given on the command line)."""
        fields = {str(k).replace("-", "_"): v for k, v in data.items()}
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise NrflabError(config_error(exc, where=where, flags=flags)) from None


def config_error(exc: ValidationError, *, where: str, flags: frozenset[str] = frozenset()) -> str:
    """One line for the first problem of a validation error: where, which key, what is wrong."""
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err.get("loc") else ""
    if key in ("sources", "targets") and err.get("type") in ("missing", "too_short"):
        return f"no {key} given (--{key} MODEL ...)"
    return one_line(exc, model=TransferConfig, where=where, flags=flags, noun="key")


__all__ = ["EarlyStopRule"]

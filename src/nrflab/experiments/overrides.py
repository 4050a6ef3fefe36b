"""An experiment's settings from a scale preset, recipe files, common flags and ``--set key=value``.

Precedence, later wins: the scale's preset (``--scale``, or the scale a recipe names), the recipe file
(``--recipe``), the common flags (``--dataset``, ``--data-root``, ``--arch``, ``--width``, ``--device``,
``--epochs``, ``--seed``), then ``--set`` assignments with dotted keys into the settings
(``--set twins.epochs=40``; in ``nrflab reproduce`` a key may start with the experiment's name:
``--set features.twins.lr=0.05``). Values are read as YAML scalars (``40``, ``0.1``, ``true``, ``null``,
``[1, 2]``); anything else stays a string. Unknown keys and wrong types are one-line errors, raised before
anything trains.

A recipe file is YAML: ``{experiment: NAME, scale: SCALE, settings: {...}}`` for one experiment (the
settings are applied over that scale's preset), or ``{scale: SCALE, experiments: {NAME: {...}, ...}}`` for a
chain. ``nrflab/recipes/<experiment>/<scale>.yaml`` (shipped with the package) hold every preset written
out in full; ``--recipe cpu`` or ``--recipe transfer/paper`` name them without a path.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from nrflab.core.errors import NrflabError
from nrflab.core.io import read_yaml_mapping
from nrflab.core.logs import get_logger
from nrflab.core.schema import one_line
from nrflab.experiments.spec import ALL_SCALES, ExperimentSpec
from nrflab.models import check_arch

log = get_logger("experiments")


@dataclass(frozen=True)
class Recipe:
    """A recipe file: settings for one or several experiments, each over the preset of ``scale``."""

    path: str
    scale: Optional[str]
    experiments: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Overrides:
    """What the user changes, by precedence (later wins): ``scale``'s preset, recipes, flags, assignments."""

    scale: str = "cpu"
    recipes: Sequence[Recipe] = ()
    dataset: Optional[str] = None
    data_root: Optional[str] = None
    arch: Optional[str] = None
    width: Optional[float] = None
    device: Optional[str] = None
    epochs: Optional[int] = None
    seeds: Sequence[int] = ()
    assignments: Sequence[str] = ()

    def common(self) -> dict[str, Any]:
        """The common flags that were given, as settings keys."""
        values = {
            "dataset": self.dataset,
            "data_root": self.data_root,
            "arch": self.arch,
            "width": self.width,
            "device": self.device,
            "seeds": list(self.seeds) or None,
        }
        return {k: v for k, v in values.items() if v is not None}

    def checked(self) -> Overrides:
        """These overrides, checked before anything runs: a known scale and architecture, epochs >= 1."""
        if self.scale not in ALL_SCALES:
            raise NrflabError(f"unknown scale {self.scale!r}; choose one of cpu, paper (or quick)")
        if self.arch is not None:
            check_arch(self.arch)
        if self.epochs is not None and self.epochs < 1:
            raise NrflabError(f"--epochs must be >= 1, got {self.epochs}")
        return self


@dataclass(frozen=True)
class Assignment:
    """One ``--set`` assignment: the dotted key (split) and the parsed value."""

    text: str
    keys: tuple[str, ...]
    value: Any = field(compare=False)


def parse_assignment(text: str) -> Assignment:
    """``key.sub=value`` -> keys ``(key, sub)`` and the value read as a YAML scalar (else the raw string)."""
    key, sep, raw = str(text).partition("=")
    keys = tuple(k.strip().replace("-", "_") for k in key.strip().split("."))
    if not sep or not all(keys):
        raise NrflabError(f"--set needs KEY=VALUE with a dotted key (e.g. twins.epochs=40), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dict, set)) or (value is not None and not isinstance(value, (str, int, float, bool, list))):
        value = raw
    return Assignment(str(text), keys, value)


#: The recipe files shipped with nrflab (package data): ``<experiment>/<scale>.yaml``.
PACKAGED_RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def packaged_recipe(name: str) -> list[Path]:
    """The shipped recipe files a name means, when no such file exists: ``cpu`` or ``paper`` (every
    experiment's file of that scale), ``transfer/cpu``, or ``recipes/transfer/cpu.yaml`` as the README
    writes it. Empty when the name is none of these."""
    text = name.strip().removeprefix("./").removeprefix("recipes/").removesuffix(".yaml")
    if re.fullmatch(r"[a-z]+", text):
        return sorted(PACKAGED_RECIPES.glob(f"*/{text}.yaml"))
    if re.fullmatch(r"[a-z_]+/[a-z]+", text) and (PACKAGED_RECIPES / f"{text}.yaml").is_file():
        return [PACKAGED_RECIPES / f"{text}.yaml"]
    return []


def read_recipes(paths: Sequence[str | Path]) -> tuple[Recipe, ...]:
    """Every recipe file of ``paths`` (``--recipe``, repeatable), read and checked in order."""
    return tuple(read_recipe(p) for p in paths)


def read_recipe(path: str | Path) -> Recipe:
    """Read a recipe file (see the module docstring), or the shipped recipes a name means (``--recipe cpu``,
    ``--recipe transfer/paper``: :func:`packaged_recipe`); one-line errors for anything malformed."""
    packaged = [] if Path(path).exists() else packaged_recipe(str(path))
    if len(packaged) == 1:
        return _read_recipe_file(packaged[0])
    if packaged:
        parts = [_read_recipe_file(p) for p in packaged]
        return Recipe(str(path), parts[0].scale, {k: v for r in parts for k, v in r.experiments.items()})
    return _read_recipe_file(path)


def _read_recipe_file(path: str | Path) -> Recipe:
    data = read_yaml_mapping(path, "recipe file")
    unknown = sorted(set(data) - {"experiment", "scale", "settings", "experiments", "description"})
    if unknown:
        raise NrflabError(
            f"recipe {path}: unknown key(s) {', '.join(unknown)} (known: experiment, scale, "
            "settings, experiments, description)"
        )
    scale = data.get("scale")
    if scale is not None and scale not in ALL_SCALES:
        raise NrflabError(f"recipe {path}: unknown scale {scale!r}; choose one of {', '.join(ALL_SCALES)}")
    if "experiments" in data:
        if "experiment" in data or "settings" in data:
            raise NrflabError(f"recipe {path}: give either experiment + settings or experiments, not both")
        chain = data["experiments"]
        if not isinstance(chain, dict) or not all(isinstance(v, dict) for v in chain.values()):
            raise NrflabError(f"recipe {path}: experiments must map experiment names to settings")
        return Recipe(str(path), scale, {str(k): dict(v) for k, v in chain.items()})
    name = data.get("experiment")
    if not isinstance(name, str) or not name:
        raise NrflabError(f"recipe {path} names no experiment (add `experiment: NAME`)")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise NrflabError(f"recipe {path}: settings must be a mapping")
    return Recipe(str(path), scale, {name: settings})


def check_recipes(recipes: Sequence[Recipe], known: Sequence[str], *, selected: Sequence[str] | None = None) -> None:
    """Every experiment a recipe names exists and (given ``selected``) is one of the experiments that run."""
    for r in recipes:
        for name in r.experiments:
            if name not in known:
                raise NrflabError(f"recipe {r.path}: unknown experiment {name!r}; choose one of {', '.join(known)}")
    if selected is not None:
        check_recipes_run(recipes, selected)


def check_recipes_run(recipes: Sequence[Recipe], selected: Sequence[str]) -> None:
    """A recipe for an experiment that does not run is an error, never silently ignored."""
    for r in recipes:
        if not set(r.experiments) & set(selected):
            theirs = ", ".join(r.experiments)
            raise NrflabError(
                f"recipe {r.path} is for {theirs}, which this command does not run (it runs {', '.join(selected)}); "
                f"drop --recipe {r.path} or select {theirs}"
            )


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in (mappings merged key by key, everything else replaced)."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _parent(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The group of settings that holds the last of ``keys`` (groups missing on the way are created);
    a one-line error where a key on the way is a value."""
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise NrflabError(f"setting {'.'.join(keys)}: {k!r} is a value, not a group of settings")
        node = child
    return node


def _assign(data: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    _parent(data, keys)[keys[-1]] = value


def scoped_assignments(
    spec: ExperimentSpec, assignments: Sequence[Assignment], *, chain: Sequence[str] = ()
) -> list[Assignment]:
    """The assignments for ``spec``: those prefixed with its name (prefix removed) and the unprefixed ones
    whose first key is one of its settings. ``chain`` lists every experiment name (for prefix detection)."""
    fields = spec.settings_type.model_fields
    own: list[Assignment] = []
    for a in assignments:
        if a.keys[0] == spec.name and len(a.keys) > 1:
            own.append(Assignment(a.text, a.keys[1:], a.value))
        elif a.keys[0] not in chain and a.keys[0] in fields:
            own.append(a)
    return own


def check_assignments_used(specs: Sequence[ExperimentSpec], assignments: Sequence[Assignment]) -> None:
    """Every assignment applies to at least one selected experiment."""
    names = [s.name for s in specs]
    for a in assignments:
        if any(scoped_assignments(s, [a], chain=names) for s in specs):
            continue
        if a.keys[0] in names:
            raise NrflabError(
                f"--set {a.text}: give a setting of {a.keys[0]} after its name (e.g. {a.keys[0]}.seeds=[0])"
            )
        known = sorted({k for s in specs for k in s.settings_type.model_fields})
        raise NrflabError(f"--set {a.text}: unknown setting {a.keys[0]!r} (known: {', '.join(known)})")


def settings_for(
    spec: ExperimentSpec, overrides: Overrides, *, strict: bool = True, chain: Sequence[str] = ()
) -> BaseModel:
    """``spec``'s validated settings under ``overrides``.

    ``strict``: a common flag the experiment has no setting for is an error (``nrflab experiment``);
    otherwise it is skipped for this experiment (``nrflab reproduce`` applies flags where they fit).
    """
    if strict:
        check_recipes_run(overrides.recipes, chain or [spec.name])
    recipes = [r for r in overrides.recipes if spec.name in r.experiments]
    scale = next((r.scale for r in reversed(recipes) if r.scale), None) or overrides.scale
    data = spec.preset(scale).model_dump()
    for r in recipes:
        data = deep_merge(data, r.experiments[spec.name])
    fields = spec.settings_type.model_fields
    common = overrides.common()
    if overrides.epochs is not None:
        if not spec.epoch_keys and strict:
            raise NrflabError(f"experiment {spec.name!r} has no training epochs to set (--epochs)")
        for key in spec.epoch_keys:
            for note in derive_epochs(data, key.split("."), overrides.epochs):
                log.info("%s: %s", spec.name, note)
    for key, value in common.items():
        if key in fields:
            data[key] = value
        elif strict:
            flag = "--seed" if key == "seeds" else "--" + key.replace("_", "-")
            raise NrflabError(f"experiment {spec.name!r} has no {key} setting ({flag} does not apply to it)")
    parsed = [parse_assignment(a) for a in overrides.assignments]
    own = scoped_assignments(spec, parsed, chain=chain or [spec.name])
    if strict:
        for a in parsed:
            if a not in own and not (a.keys[0] == spec.name and len(a.keys) > 1):
                raise NrflabError(
                    f"--set {a.text}: experiment {spec.name!r} has no setting {a.keys[0]!r} "
                    f"(known: {', '.join(fields)})"
                )
    for a in own:
        _assign(data, a.keys, a.value)
    settings = validate_settings(spec, data)
    check_chain_settings(spec, settings, prefix="" if strict else f"{spec.name}.")
    return settings


def derive_epochs(data: dict[str, Any], keys: Sequence[str], epochs: int) -> list[str]:
    """Set the training stage at ``keys`` (``twins.epochs``) to ``epochs`` and make what depends on the
    epoch count follow: milestones scaled and kept below ``epochs``, ``keep_checkpoints`` scaled (at least
    1 where it was set). Returns one note per derived change (the caller prints them)."""
    stage = _parent(data, keys)
    where = ".".join(keys[:-1])
    before = stage.get(keys[-1])
    stage[keys[-1]] = epochs
    if not isinstance(before, int) or before == epochs or len(keys) < 2:
        return []
    notes = []
    milestones = stage.get("milestones")
    if isinstance(milestones, list) and milestones:
        scaled = sorted({max(1, round(m * epochs / before)) for m in milestones if isinstance(m, int)})
        scaled = [m for m in scaled if m < epochs]
        if scaled != milestones:
            stage["milestones"] = scaled
            notes.append(f"{where}.milestones {milestones} -> {scaled} (follow --epochs {epochs})")
    keep = stage.get("keep_checkpoints")
    if isinstance(keep, int) and keep > 0:
        derived = max(1, round(keep * epochs / before))
        if derived != keep:
            stage["keep_checkpoints"] = derived
            notes.append(f"{where}.keep_checkpoints {keep} -> {derived} (follow --epochs {epochs})")
    return notes


def check_chain_settings(spec: ExperimentSpec, settings: BaseModel, *, prefix: str) -> None:
    """The experiment's own up-front check of what its chain depends on (``spec.check``): a problem is one
    line naming the ``--set`` that fixes it, as the user types it (``prefix``: the experiment's name in
    ``nrflab reproduce``)."""
    if spec.check is None:
        return
    for problem, fix in spec.check(settings):
        raise NrflabError(f"experiment {spec.name}: {problem}; add --set {prefix}{fix}")


def validate_settings(spec: ExperimentSpec, data: Mapping[str, Any]) -> BaseModel:
    """Validate ``data`` as ``spec``'s settings; the first problem as one line."""
    try:
        return spec.settings_type.model_validate(dict(data))
    except ValidationError as exc:
        raise NrflabError(f"experiment {spec.name}: {settings_error(spec.settings_type, exc)}") from None


def settings_error(model: type[BaseModel], exc: ValidationError) -> str:
    """``setting KEY: problem`` for the first error; unknown keys list the known ones at their level."""
    return one_line(exc, model=model)


__all__ = ["Overrides", "read_recipes", "settings_for"]

"""Function-style experiments in the registry: a module with ``run(out_dir, *, quick, seeds, progress[,
settings])`` becomes an :class:`ExperimentSpec` whose one task calls that function.

The settings are the function's own (a frozen dataclass ``Settings`` in the module, when it has one),
flattened into a pydantic model with ``seeds`` and ``quick``, so ``--set``, recipes and the common flags
work on them as on any experiment. Presets: ``cpu`` = the dataclass defaults, ``quick`` = the module's
``QUICK`` (or ``quick: true``), ``paper`` = the module's ``PAPER`` when it has one, else the CPU settings
(the report says so).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from nrflab.core.validation import Seed
from nrflab.experiments.engine import CallTask, Task
from nrflab.experiments.spec import AnalysisContext, ExperimentSpec
from nrflab.report.document import Section

_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True)


def _dataclass_fields(cls: type) -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ...
        out[f.name] = (hints.get(f.name, Any), default)
    return out


def function_spec(
    name: str, module_name: str, *, summary: str, home: str | None = None, claims: tuple[str, ...] = ()
) -> ExperimentSpec:
    """The spec of the function-style experiment ``module_name`` (see the module docstring)."""
    module = importlib.import_module(module_name)
    run = module.run
    params = inspect.signature(run).parameters
    seeds_default = (
        list(params["seeds"].default)
        if "seeds" in params and params["seeds"].default is not inspect.Parameter.empty
        else [0]
    )
    settings_cls: Any = getattr(module, "Settings", None)
    has_dataclass = settings_cls is not None and dataclasses.is_dataclass(settings_cls) and "settings" in params
    fields: dict[str, Any] = {}
    if has_dataclass:
        fields.update(_dataclass_fields(settings_cls))
    fields.setdefault("seeds", (list[Seed], Field(default_factory=lambda: list(seeds_default), min_length=1)))
    fields["quick"] = (bool, False)
    model: type[BaseModel] = create_model(f"{name.title()}Settings", __config__=_CONFIG, **fields)

    def preset(source: Any, quick: bool) -> BaseModel:
        values: dict[str, Any] = {"quick": quick, "seeds": seeds_default}
        if has_dataclass and source is not None:
            values.update({f.name: getattr(source, f.name) for f in dataclasses.fields(source)})
        return model.model_validate(values)

    default = settings_cls() if has_dataclass else None
    quick_src = getattr(module, "QUICK", None) if has_dataclass else None
    paper_src = getattr(module, "PAPER", None) if has_dataclass else None
    presets = {
        "cpu": preset(default, False),
        "quick": preset(quick_src if dataclasses.is_dataclass(quick_src) else default, True),
        "paper": preset(paper_src if dataclasses.is_dataclass(paper_src) else default, False),
    }
    notes = (
        {}
        if dataclasses.is_dataclass(paper_src)
        else {"paper": f"`{name}` has no paper scale of its own: its paper preset is its CPU preset."}
    )
    ignores = tuple(k for k in ("dataset", "data_root", "arch", "width", "device") if k not in model.model_fields)

    def plan(settings: BaseModel, home_dir: Path) -> list[Task]:
        return [
            CallTask(
                str(home_dir / ".experiment"),
                "nrflab.experiments.adapter:call_experiment",
                {"module_name": module_name, "out_dir": str(home_dir), "values": settings.model_dump()},
            )
        ]

    def analyze(settings: BaseModel, ctx: AnalysisContext) -> list[Section]:
        result = ctx.results.get(str(ctx.home / ".experiment"))
        value = result.value if result is not None else None
        if not isinstance(value, list) or not all(isinstance(s, Section) for s in value):
            return [Section(summary, f"`{name}` returned no report sections.")]
        return value

    return ExperimentSpec(
        name=name,
        summary=summary,
        settings_type=model,
        presets=presets,
        plan=plan,
        analyze=analyze,
        home=home if home is not None else name,
        claims=claims,
        epoch_keys=tuple(k for k in ("epochs",) if k in model.model_fields),
        ignores=ignores,
        scale_notes=notes,
    )


def call_experiment(*, module_name: str, out_dir: str, values: Mapping[str, Any], progress: bool) -> Any:
    """Call a function-style experiment with its settings (run in a worker process or a Ray task)."""
    module = importlib.import_module(module_name)
    values = dict(values)
    quick = bool(values.pop("quick", False))
    seeds = tuple(values.pop("seeds"))
    kwargs: dict[str, Any] = {"quick": quick, "seeds": seeds, "progress": progress}
    settings_cls: Any = getattr(module, "Settings", None)
    params = inspect.signature(module.run).parameters
    if isinstance(settings_cls, type) and dataclasses.is_dataclass(settings_cls) and "settings" in params:
        names = {f.name for f in dataclasses.fields(settings_cls)}
        if "seeds" in names:
            values["seeds"] = seeds
        kwargs["settings"] = settings_cls(**{k: _native(v) for k, v in values.items() if k in names})
    return module.run(Path(out_dir), **kwargs)


def _native(value: Any) -> Any:
    return tuple(_native(v) for v in value) if isinstance(value, list) else value


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package

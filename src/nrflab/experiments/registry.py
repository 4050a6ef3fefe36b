"""The registry of the paper's experiments, in the order ``nrflab reproduce`` runs them.

``experiments()`` maps names to :class:`ExperimentSpec`; ``select("features,transfer")`` resolves a
user's list (``norms`` stands for adversarial, family and corruptions). Every experiment module holds a
``SPEC``; an experiment whose module is not installed is left out.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache

from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry
from nrflab.experiments.spec import ExperimentSpec

#: (name, module) in chain order; each module's ``SPEC`` is the experiment.
CHAIN: tuple[tuple[str, str], ...] = (
    ("core", "nrflab.experiments.core"),
    ("adversarial", "nrflab.experiments.adversarial"),
    ("family", "nrflab.experiments.family"),
    ("corruptions", "nrflab.experiments.corruptions"),
    ("features", "nrflab.experiments.features"),
    ("transfer", "nrflab.experiments.transfer"),
    ("planted", "nrflab.experiments.planted"),
)

#: Names that stand for several experiments.
ALIASES = {"norms": ("adversarial", "family", "corruptions")}

EXPERIMENTS: Registry[ExperimentSpec] = Registry("experiment")
"""Every installed experiment by name, in chain order (filled when :func:`experiments` first runs)."""


def register_experiment(spec: ExperimentSpec) -> ExperimentSpec:
    """Add an experiment under its name (registering the same spec again is a no-op)."""
    return EXPERIMENTS.add(spec.name, spec)


def list_experiments(filter: str | None = None) -> list[str]:
    """Installed experiment names in chain order; ``filter`` is a shell pattern (``"plant*"``)."""
    experiments()
    return EXPERIMENTS.names(filter)


@lru_cache(maxsize=1)
def experiments() -> dict[str, ExperimentSpec]:
    """Every installed experiment, by name, in chain order."""
    found: dict[str, ExperimentSpec] = {}
    for name, module_name in CHAIN:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not installed (yet)
            raise
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, ExperimentSpec):
            raise NrflabError(f"experiment module {module_name} has no SPEC")
        found[name] = spec
        register_experiment(spec)
    return found


def get_spec(name: str) -> ExperimentSpec:
    """The experiment called ``name``, or a one-line error listing the choices."""
    found = experiments()
    if name not in found:
        raise NrflabError(f"unknown experiment {name!r}; choose one of {', '.join([*found, *ALIASES])}")
    return found[name]


def select(only: str | Sequence[str] | None) -> list[ExperimentSpec]:
    """The experiments named in ``only`` (comma-separated or a list; aliases expanded), in chain order;
    every experiment when ``only`` is empty."""
    found = experiments()
    if not only:
        return list(found.values())
    items = [p.strip() for p in (only.split(",") if isinstance(only, str) else only) if p.strip()]
    wanted: list[str] = []
    for item in items:
        for name in ALIASES.get(item, (item,)):
            get_spec(name)
            wanted.append(name)
    return [spec for name, spec in found.items() if name in wanted]


__all__ = ["ALIASES", "EXPERIMENTS", "experiments", "list_experiments", "select"]

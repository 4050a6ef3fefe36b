"""The registry of the paper's experiments, in the order ``nrflab reproduce`` runs them.

``experiments()`` maps names to :class:`ExperimentSpec`; ``select("features,transfer")`` resolves a
user's list (``norms`` stands for adversarial, family and corruptions).

Experiments register themselves: an experiment module declares
``SPEC = register_experiment(ExperimentSpec(..., order=N))`` and nothing else lists it. The first call of
:func:`experiments` imports every module of this package once (``pkgutil``), which registers them; the
chain runs them by ``order``. A module that fails to import raises: an experiment is never left out silently
(every package the experiments use is a required dependency).
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Sequence
from functools import cache

from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry
from nrflab.experiments.spec import ExperimentSpec

#: Names that stand for several experiments.
ALIASES = {"norms": ("adversarial", "family", "corruptions")}

EXPERIMENTS: Registry[ExperimentSpec] = Registry("experiment")
"""Every installed experiment by name, in import order (:func:`experiments` gives them in chain order)."""

_PACKAGE = "nrflab.experiments"


def register_experiment(spec: ExperimentSpec) -> ExperimentSpec:
    """Add an experiment under its name and return it (registering the same spec again is a no-op)."""
    return EXPERIMENTS.add(spec.name, spec)


@cache
def discover(package_name: str = _PACKAGE) -> tuple[str, ...]:
    """Import every module of ``package_name`` and of its subpackages once, so each experiment in it registers
    itself (an experiment may be a package, as ``planted`` is); the names of the modules imported. An import
    error is raised, never skipped."""
    package = importlib.import_module(package_name)
    names = tuple(info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."))
    for module_name in names:
        importlib.import_module(module_name)
    return names


def experiments() -> dict[str, ExperimentSpec]:
    """Every installed experiment, by name, in chain order (by ``order``, then name)."""
    discover()
    specs = sorted((EXPERIMENTS.get(name) for name in EXPERIMENTS), key=lambda s: (s.order, s.name))
    return {spec.name: spec for spec in specs}


def list_experiments(filter: str | None = None) -> list[str]:
    """Installed experiment names in chain order; ``filter`` is a shell pattern (``"plant*"``)."""
    names = list(experiments())
    return names if filter is None else [n for n in names if fnmatch.fnmatchcase(n, filter)]


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


__all__ = ["select"]

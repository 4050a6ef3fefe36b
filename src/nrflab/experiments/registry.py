"""The registry of the paper's experiments, in the order ``nrflab reproduce`` runs them.

``experiments()`` maps names to :class:`ExperimentSpec`; ``select("features,transfer")`` resolves a
user's list (``norms`` stands for adversarial, family and corruptions). Experiments written as one
``run`` function (see :mod:`nrflab.experiments.adapter`) are registered through the adapter; the
planted-feature experiment joins when its module is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache

from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry
from nrflab.experiments.spec import ExperimentSpec

#: (name, module, summary) in chain order; modules with a ``SPEC`` register it, others go through the adapter.
CHAIN: tuple[tuple[str, str, str], ...] = (
    ("core", "nrflab.experiments.core", ""),
    ("adversarial", "nrflab.experiments.adversarial", ""),
    ("family", "nrflab.experiments.family", ""),
    ("corruptions", "nrflab.experiments.corruptions", ""),
    ("features", "nrflab.experiments.features", ""),
    (
        "transfer",
        "nrflab.experiments.transfer",
        "transfer matrix of a BN/no-BN zoo and early-stopped sources (transfer boosts, claim 6)",
    ),
    (
        "planted",
        "nrflab.experiments.planted",
        "planted robust and non-robust features: the feature claims against ground truth",
    ),
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
    from nrflab.experiments.adapter import function_spec

    found: dict[str, ExperimentSpec] = {}
    for name, module_name, summary in CHAIN:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not installed (yet)
            raise
        spec = getattr(module, "SPEC", None)
        found[name] = spec if isinstance(spec, ExperimentSpec) else function_spec(name, module_name, summary=summary)
        register_experiment(found[name])
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


__all__ = [
    "ALIASES",
    "EXPERIMENTS",
    "experiments",
    "get_spec",
    "list_experiments",
    "register_experiment",
    "select",
]

"""Experiments register themselves: a module that registers a spec joins the chain in its ``order``, and
discovery imports every module of the package, raising (never skipping) when one fails to import."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nrflab.core.registry import Registry
from nrflab.experiments import registry
from nrflab.experiments.registry import experiments, get_spec, list_experiments

CHAIN = ["core", "adversarial", "family", "corruptions", "features", "transfer", "planted"]

NEW_EXPERIMENT = """
from pydantic import BaseModel

from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import ExperimentSpec


class Settings(BaseModel):
    size: int = 1


SPEC = register_experiment(
    ExperimentSpec(
        name="probe",
        summary="a probe experiment",
        settings_type=Settings,
        presets={"cpu": Settings(), "paper": Settings(), "quick": Settings()},
        plan=lambda settings, home: [],
        analyze=lambda settings, context: [],
        home="probe",
        order=45,
    )
)
"""


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on ``sys.path`` and a copy of the experiment registry, both undone after the test."""
    experiments()  # the installed experiments are registered before the copy is taken
    copy: Registry = Registry("experiment")
    for name in registry.EXPERIMENTS:
        copy.add(name, registry.EXPERIMENTS.get(name))
    monkeypatch.setattr(registry, "EXPERIMENTS", copy)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("probe_"):
            del sys.modules[name]


def test_the_chain_runs_in_the_specs_order():
    assert list_experiments() == CHAIN
    assert [get_spec(n).order for n in CHAIN] == sorted(get_spec(n).order for n in CHAIN)
    assert list_experiments("*o*") == ["core", "corruptions"]


def test_a_module_that_registers_a_spec_joins_the_chain_in_its_order(scratch: Path):
    (scratch / "probe_experiment.py").write_text(NEW_EXPERIMENT)
    __import__("probe_experiment")
    names = list_experiments()
    assert names == [*CHAIN[:4], "probe", *CHAIN[4:]]  # order 45: between corruptions (40) and features (50)
    assert get_spec("probe").summary == "a probe experiment"
    assert list_experiments("pro*") == ["probe"]


def test_the_registry_is_back_to_the_installed_experiments_after_a_temporary_registration():
    assert "probe" not in list_experiments()
    assert list_experiments() == CHAIN


def _package(root: Path, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, text in modules.items():
        (root / name / f"{module}.py").write_text(textwrap.dedent(text))


def test_discovery_imports_every_module_of_the_package(scratch: Path):
    _package(scratch, "probe_fine", {"one": "VALUE = 1\n", "two": "VALUE = 2\n"})
    assert set(registry.discover("probe_fine")) == {"probe_fine.one", "probe_fine.two"}
    assert sys.modules["probe_fine.two"].VALUE == 2


def test_discovery_raises_for_a_module_whose_package_is_missing(scratch: Path):
    _package(scratch, "probe_optional", {"needs_extra": "import probe_not_installed_anywhere\n"})
    with pytest.raises(ModuleNotFoundError, match="probe_not_installed_anywhere"):
        registry.discover("probe_optional")


def test_discovery_raises_for_a_module_that_imports_a_missing_nrflab_module(scratch: Path):
    _package(scratch, "probe_broken", {"bad": "import nrflab.no_such_room\n"})
    with pytest.raises(ModuleNotFoundError, match="nrflab.no_such_room"):
        registry.discover("probe_broken")


def test_discovery_raises_for_a_module_that_fails_for_another_reason(scratch: Path):
    _package(scratch, "probe_failing", {"bad": "raise RuntimeError('broken experiment module')\n"})
    with pytest.raises(RuntimeError, match="broken experiment module"):
        registry.discover("probe_failing")

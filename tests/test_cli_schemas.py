"""The command-line options of ``train``, ``transfer``, ``build-dataset``, ``evaluate`` and ``bn-analysis``
are generated from their settings schemas: every field has an option with help, the values given reach the
schema as they were typed, and a short flag means one option across commands."""

from __future__ import annotations

from typing import Literal, Optional

import pytest
import typer
import typer.main
from pydantic import Field
from typer.testing import CliRunner

from nrflab.cli.schema_flags import Flag, Given, Schemalike, schema_command, schema_fields
from nrflab.core.schema import Schema
from nrflab.features import make_settings
from nrflab.measure.evaluation import BnAnalysisSettings, EvaluateSettings
from nrflab.training import TrainConfig
from nrflab.transfer import TransferConfig

COMMANDS = [
    ("train", TrainConfig, ()),
    ("transfer", TransferConfig, ()),
    ("build-dataset", make_settings, ("kind",)),
    ("evaluate", EvaluateSettings, ()),
    ("bn-analysis", BnAnalysisSettings, ("model",)),
]


def _commands() -> dict[str, typer.main.click.Command]:
    from nrflab.cli import app

    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("command", "schema", "own"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_field_is_an_option_with_help(command, schema, own) -> None:
    """Build settings are typed through ``make_settings`` (its keywords: steps, eps, step size, ...), the
    constructor of ``BuildSettings`` (whose ``attack`` field they describe)."""
    params = {p.name: p for p in _commands()[command].params}
    for field in schema_fields(schema):
        if field.name in own:
            continue
        assert field.name in params, f"{schema.__name__}.{field.name} has no option in `nrflab {command}`"
        assert getattr(params[field.name], "help", ""), f"--{field.name} of {command} has no help"


def test_every_option_of_every_command_has_help() -> None:
    missing = [(name, p.name) for name, c in _commands().items() for p in c.params if not getattr(p, "help", None)]
    assert missing == []


class Toy(Schema):
    name: str = Field("a", description="A name.")
    kind: Literal["x", "y"] = "x"
    flag: bool = True
    sizes: list[int] = Field(default_factory=list)
    count: Optional[int] = Field(None, ge=1)
    pair: Optional[list[float]] = None


def test_options_follow_the_fields_and_only_given_values_arrive() -> None:
    app = typer.Typer()
    seen: list[Given] = []

    @schema_command(app, "toy", Toy, flags={"pair": Flag(parse=lambda t: [float(v) for v in t.split(",")])})
    def toy(given: Given, loud: bool = typer.Option(False, "--loud")) -> None:
        seen.append(dict(given, loud=loud))

    @app.command()
    def other() -> None:  # two commands, so Typer keeps the command names
        pass

    runner = CliRunner()
    result = runner.invoke(app, ["toy", "--kind", "y", "--no-flag", "--sizes", "1", "--sizes", "2", "--pair", "0.5,1"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == {"kind": "y", "flag": False, "sizes": [1, 2], "pair": [0.5, 1.0], "loud": False}
    assert runner.invoke(app, ["toy"]).exit_code == 0 and seen[-1] == {"loud": False}
    help_text = runner.invoke(app, ["toy", "--help"], env={"COLUMNS": "200"}).output
    assert "A name." in help_text and "one of x, y" in help_text and "--no-flag" in help_text
    assert Toy.model_validate({k: v for k, v in seen[0].items() if k != "loud"}).kind == "y"


def stale_flags(schema: Schemalike, flags: dict[str, Flag]) -> set[str]:
    """Entries of ``flags`` that name no field of ``schema`` (left behind when a field was removed)."""
    return set(flags) - {f.name for f in schema_fields(schema)}


def test_no_flag_entry_outlives_its_field() -> None:
    from nrflab.cli import bn_analysis, evaluate, flags
    from nrflab.experiments.overrides import Overrides

    assert stale_flags(Toy, {"nope": Flag(), "kind": Flag()}) == {"nope"}
    for schema, entries in (
        (TrainConfig, flags.TRAIN_FLAGS),
        (TransferConfig, flags.TRANSFER_FLAGS),
        (make_settings, flags.BUILD_FLAGS),
        (Overrides, flags.EXPERIMENT_FLAGS),
        (EvaluateSettings, evaluate.FLAGS),
        (BnAnalysisSettings, bn_analysis.FLAGS),
    ):
        assert stale_flags(schema, entries) == set(), schema.__name__


def _options_by_flag() -> dict[str, dict[str, set[str]]]:
    """For every command, each short or long flag and the full set of names of the option it belongs to."""
    found: dict[str, dict[str, set[str]]] = {}
    for name, command in _commands().items():
        flags: dict[str, set[str]] = {}
        for param in command.params:
            names = set(getattr(param, "opts", [])) | set(getattr(param, "secondary_opts", []))
            for flag in names:
                flags[flag] = names
        found[name] = flags
    return found


def test_a_short_flag_means_the_same_option_in_every_command() -> None:
    """``-s`` is the source model(s), ``-d`` the dataset, ``-o`` the output directory, ``-a`` an attack,
    ``-q`` quiet, wherever the flag exists; the plural and singular spellings are one option."""
    meaning = {"-s": "--source", "-d": "--dataset", "-o": "--out", "-a": "--attack", "-q": "--quiet"}
    seen = {flag: 0 for flag in meaning}
    for command, flags in _options_by_flag().items():
        for short, long in meaning.items():
            if short in flags:
                seen[short] += 1
                names = flags[short]
                assert long in names or f"{long}s" in names, (command, short, names)
                if f"{long}s" in names:
                    assert long in names, f"{command}: {long}s without the {long} spelling"
    assert all(count >= 2 for count in seen.values()), seen


class Inner(Schema):
    epochs: int = Field(1, ge=1)


class Outer(Schema):
    twins: Inner = Inner()
    lr: float = Field(0.1, gt=0)
    name: str = "x"


def _error(data: dict) -> Exception:
    from pydantic import ValidationError

    try:
        Outer.model_validate(data)
    except ValidationError as exc:
        return exc
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("data", "kwargs", "line"),
    [
        ({"lr": -1}, {"where": "invalid config"}, "invalid config: lr: Input should be greater than 0 (got -1)"),
        (
            {"lr": -1},
            {"where": "recipe r.yaml", "flags": {"lr"}},
            "option --lr: Input should be greater than 0 (got -1)",
        ),
        ({"lr": -1}, {}, "setting lr: Input should be greater than 0 (got -1)"),
        (
            {"twins": {"epochs": "many"}},
            {},
            "setting twins.epochs: Input should be a valid integer, unable to parse string as an integer (got 'many')",
        ),
        (
            {"colour": 1},
            {"where": "recipe r.yaml", "noun": "key"},
            "recipe r.yaml: unknown key 'colour' (known: twins, lr, name)",
        ),
        ({"twins": {"epochz": 1}}, {}, "unknown setting twins.epochz (known: epochs)"),
    ],
)
def test_one_line_names_where_which_key_and_what_was_given(data, kwargs, line) -> None:
    from nrflab.core.schema import one_line

    assert one_line(_error(data), model=Outer, **kwargs) == line


def test_schema_parse_is_frozen_and_refuses_unknown_keys() -> None:
    from pydantic import ValidationError

    from nrflab.core.errors import NrflabError

    outer = Outer.parse({"lr": 0.5, "twins": {"epochs": 2}})
    assert outer.twins.epochs == 2
    with pytest.raises(ValidationError, match="frozen"):
        outer.lr = 1.0  # type: ignore[misc]
    with pytest.raises(NrflabError, match=r"^options: unknown setting 'colour'"):
        Outer.parse({"colour": 1}, where="options")
    with pytest.raises(NrflabError, match=r"^option --lr: Input should be a finite number"):
        Outer.parse({"lr": float("inf")}, where="options", flags={"lr"})

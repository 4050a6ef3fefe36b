"""The command-line flags of ``train`` and ``transfer`` and the library's typed configs cannot drift apart:
every flag is a config field (or one of a few command-only options), and every config field has a flag."""

from __future__ import annotations

import inspect

import pytest

from nrflab.cli.train import train
from nrflab.cli.transfer import transfer
from nrflab.training import TrainConfig
from nrflab.transfer import TransferConfig

#: Options of the command itself (where to write, how to treat an existing run, what to print).
COMMAND_ONLY = {"config", "recipe", "download", "out", "overwrite", "resume", "quiet"}
#: Flags whose parameter name differs from the config field they set.
RENAMED = {"compile_mode": "compile", "eval_attack": "eval_attacks"}


@pytest.mark.parametrize(("command", "schema"), [(train, TrainConfig), (transfer, TransferConfig)])
def test_every_flag_is_a_config_field_and_every_field_a_flag(command, schema) -> None:
    fields = set(schema.model_fields)
    flags = {RENAMED.get(name, name) for name in inspect.signature(command).parameters} - (COMMAND_ONLY - fields)
    assert flags - fields == set(), f"flags that set no {schema.__name__} field"
    assert fields - flags == set(), f"{schema.__name__} fields that no flag sets"


def _options_by_flag() -> dict[str, dict[str, set[str]]]:
    """For every command, each short or long flag and the full set of names of the option it belongs to."""
    import typer.main

    from nrflab.cli import app

    group = typer.main.get_command(app)
    found: dict[str, dict[str, set[str]]] = {}
    for name, command in group.commands.items():
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

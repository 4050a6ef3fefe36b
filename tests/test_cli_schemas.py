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

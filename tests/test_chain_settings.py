"""Everything a chain depends on is resolved before the first task: derived settings follow ``--epochs``
(milestones, kept checkpoints), and what cannot be derived is refused in one line naming the fix."""

from __future__ import annotations

import pytest

from nrflab.core.errors import NrflabError
from nrflab.experiments.overrides import Overrides, settings_for
from nrflab.experiments.registry import get_spec
from nrflab.experiments.reproduce import resolve_chain
from nrflab.experiments.transfer import NOT_TESTED, check


def _chain(**overrides: object) -> dict[str, object]:
    return {spec.name: s for spec, s in resolve_chain(None, Overrides(**overrides))}  # type: ignore[arg-type]


def test_milestones_and_kept_checkpoints_follow_epochs() -> None:
    chain = _chain(scale="paper", epochs=10)
    assert chain["core"].twins.milestones == [3, 7]  # type: ignore[attr-defined]
    zoo = chain["transfer"].zoo  # type: ignore[attr-defined]
    assert (zoo.epochs, zoo.milestones, zoo.keep_checkpoints) == (10, [3, 7], 1)


def test_a_one_epoch_paper_chain_resolves_and_its_early_stop_claim_is_not_tested() -> None:
    chain = _chain(scale="paper", epochs=1)
    zoo = chain["transfer"].zoo  # type: ignore[attr-defined]
    assert (zoo.epochs, zoo.milestones, zoo.keep_checkpoints) == (1, [], 1)
    assert check(chain["transfer"]) == []  # type: ignore[arg-type]
    assert NOT_TESTED == "not tested (no checkpoint before the last epoch)"


def test_epochs_equal_to_the_preset_change_nothing() -> None:
    paper = get_spec("core").preset("paper")
    assert settings_for(get_spec("core"), Overrides(scale="paper", epochs=150)) == paper


@pytest.mark.parametrize(
    ("strict", "fix"),
    [(True, "--set zoo.keep_checkpoints=1"), (False, "--set transfer.zoo.keep_checkpoints=1")],
)
def test_no_kept_checkpoint_is_refused_with_the_fix_in_the_users_command(strict: bool, fix: str) -> None:
    prefix = "" if strict else "transfer."
    ov = Overrides(scale="cpu", assignments=[f"{prefix}zoo.epochs=3", f"{prefix}zoo.keep_checkpoints=5"])
    with pytest.raises(NrflabError) as err:
        settings_for(get_spec("transfer"), ov, strict=strict, chain=["transfer"] if strict else ["core", "transfer"])
    assert fix in str(err.value) and "\n" not in str(err.value)


def test_an_early_stop_epoch_that_is_not_kept_is_refused() -> None:
    ov = Overrides(scale="cpu", assignments=["zoo.epochs=4", "early_stop=epoch=7"])
    with pytest.raises(NrflabError, match="early_stop=frac=0.9"):
        settings_for(get_spec("transfer"), ov)


def test_dry_run_lists_the_tasks_and_writes_nothing(tmp_path, capsys) -> None:
    from nrflab.cli import main

    out = tmp_path / "r"
    assert main(["reproduce", "--scale", "quick", "--only", "core,transfer", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train  runs/mnist5k-smallcnn-bn-s0" in text and "(after transfer/runs/" in text
    assert "settings of transfer:" in text and "zoo.keep_checkpoints = 1" in text
    assert "this machine" in text and "--scale paper on an NVIDIA H200: about" in text
    assert not out.exists()
    assert main(["experiment", "core", "--quick", "--dry-run", "--out", str(out)]) == 0
    assert "twins.epochs = 1" in capsys.readouterr().out and not out.exists()


def test_show_settings_gives_every_key_its_value_and_meaning(capsys) -> None:
    from nrflab.cli import main

    assert main(["experiment", "transfer", "--show-settings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "limit = 300  # attacked test images" in lines
    assert "zoo.epochs = 6  # Training epochs." in lines


def test_reproduce_overwrite_replaces_a_run_of_a_changed_recipe(tmp_path, capsys) -> None:
    from nrflab.cli import main

    out = tmp_path / "r"
    base = ["reproduce", "--scale", "quick", "--only", "core", "--dataset", "digits", "--out", str(out), "-q"]
    base += ["--set", "core.twins.eval_size=16", "--set", "core.final_attacks=[]"]
    assert main(base) == 0
    assert main([*base, "--epochs", "2"]) == 2  # refused without --overwrite
    assert main([*base, "--epochs", "2", "--overwrite"]) == 0
    metrics = (out / "runs" / "digits-smallcnn-bn-s0" / "metrics.csv").read_text().splitlines()  # header, epochs 0-2
    assert len(metrics) == 4 and not (out / ".nrflab-previous").exists()


def test_shipped_recipes_resolve_by_name_from_any_directory(tmp_path, monkeypatch) -> None:
    from nrflab.experiments.overrides import read_recipe

    monkeypatch.chdir(tmp_path)
    assert read_recipe("transfer/paper").experiments.keys() == {"transfer"}
    assert read_recipe("recipes/transfer/cpu.yaml").scale == "cpu"  # the README's spelling
    chain = read_recipe("cpu")
    assert {"core", "transfer", "planted"} <= set(chain.experiments) and chain.scale == "cpu"
    got = settings_for(get_spec("core"), Overrides(scale="quick", recipes=(read_recipe("paper"),)))
    assert got == get_spec("core").presets["paper"]
    with pytest.raises(NrflabError, match="not found"):
        read_recipe("nope/cpu")

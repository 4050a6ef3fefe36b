"""The library calls behind the thinner commands write what the commands write: ``write_evaluation`` (JSON +
CSV), ``write_bn_analysis`` (JSON + Markdown), ``write_comparison`` (JSON, CSV, Markdown; an earlier result is
refused before anything runs), ``heat_maps_of`` (every input checked first), ``run_sweep`` on the command line's
grid text, and the small file-format helpers other rooms use instead of constants."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from _byom_helpers import trained_digits_model
from nrflab.core.errors import NrflabError
from nrflab.data.built import BuiltLayout, is_built_dataset
from nrflab.measure.bn_analysis import write_bn_analysis
from nrflab.measure.compare import CompareSettings, open_comparison, write_comparison
from nrflab.measure.evaluation import BnAnalysisSettings, EvaluateSettings, open_bn_analysis, open_evaluation
from nrflab.measure.evaluation_files import write_evaluation
from nrflab.measure.fourier_models import heat_maps_of
from nrflab.measure.transfer_rate import DEFINITIONS, transfer_rate
from nrflab.models.checkpoint import has_model_config, save_model
from nrflab.runs.rundir import is_input_file
from nrflab.training.sweep import parse_grid, parse_sets, run_sweep
from nrflab.transfer.results import DEFINITIONS as TRANSFER_DEFINITIONS


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "a.safetensors"
    save_model(trained_digits_model(), path)
    return path


def test_write_evaluation_writes_the_record_and_a_csv_row_per_metric(weights: Path, tmp_path: Path) -> None:
    s = EvaluateSettings(
        model=str(weights), dataset="digits", limit=16, sanity=False, attacks=["pgd-l2:eps=0.5,steps=2"]
    )
    record, (json_path, csv_path) = write_evaluation(open_evaluation(s), s, target=tmp_path / "e.json")
    assert (json_path, csv_path) == (tmp_path / "e.json", tmp_path / "e.csv")
    assert json.loads(json_path.read_text())["metrics"] == pytest.approx(record.metrics)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["metric"] for r in rows] == list(record.metrics)
    assert {r["num_images"] for r in rows} == {"16"}


def test_write_bn_analysis_writes_json_and_markdown_into_a_new_folder(weights: Path, tmp_path: Path) -> None:
    s = BnAnalysisSettings(model=str(weights), dataset="digits", limit=16, attacks=["pgd-l2:eps=0.5,steps=2"])
    folder = tmp_path / "new" / "bn"
    result, paths = write_bn_analysis(open_bn_analysis(s), s, folder=folder)
    assert paths == (folder / "bn_analysis.json", folder / "bn_analysis.md")
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(result.to_dict()))
    assert paths[1].read_text() == result.markdown()


def test_write_comparison_refuses_an_earlier_result_before_measuring(weights: Path, tmp_path: Path) -> None:
    s = CompareSettings(a=[str(weights)], b=[str(weights)], dataset="digits", limit=12, attacks=["fgsm:eps=0.1"])
    opened = open_comparison(s)
    result, paths = write_comparison(*opened, s, folder=tmp_path)
    assert [p.name for p in paths] == ["compare.json", "compare.csv", "compare.md"]
    assert paths[2].read_text() == result.markdown()
    assert next(csv.reader(paths[1].open()))[0] == "quantity"
    before = paths[0].stat().st_mtime_ns
    with pytest.raises(NrflabError, match=r"compare\.json exists: give --overwrite"):
        write_comparison(*opened, s, folder=tmp_path)
    assert paths[0].stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "--eps must be > 0"),
        ({"limit": 0}, "--limit must be >= 1"),
        ({"precision": "fp8"}, "--precision"),
    ],
)
def test_heat_maps_of_checks_its_inputs_before_loading_a_model(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(NrflabError, match=message):
        next(heat_maps_of(["no/such/model.safetensors"], dataset="digits", **kwargs))  # type: ignore[arg-type]


def test_heat_maps_of_numbers_the_slugs_of_several_models(weights: Path) -> None:
    maps = list(heat_maps_of([str(weights), str(weights)], dataset="digits", eps=1.0, limit=4, stride=4))
    assert [slug.split("-")[0] for slug, _ in maps] == ["1", "2"]
    assert maps[0][1].rows() == maps[1][1].rows()  # the same model on the same images and signs
    assert all(m.n_images == 4 for _, m in maps)


def test_the_sweep_reads_the_command_lines_grid_text(tmp_path: Path) -> None:
    assert parse_grid(["norm=bn,none", "seed=0,1"]) == {"norm": ["bn", "none"], "seed": [0, 1]}
    assert parse_sets(["epochs=5"]) == {"epochs": 5}
    with pytest.raises(NrflabError, match="--grid expects key=value"):
        run_sweep(None, ["norm"], tmp_path / "s")
    with pytest.raises(NrflabError, match="seed is both a grid key and a fixed override"):
        run_sweep(None, ["seed=0,1"], tmp_path / "s", overrides=["seed=3"])
    assert not (tmp_path / "s").exists()  # refused before anything is written


def test_file_format_helpers(weights: Path, tmp_path: Path) -> None:
    assert has_model_config(weights)
    bare = tmp_path / "bare.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(bare))
    assert not has_model_config(bare)
    assert is_input_file(tmp_path / "x.pt") and is_input_file(tmp_path / "metrics.csv")
    assert not is_input_file(tmp_path / "result.json")
    layout = BuiltLayout(tmp_path)
    assert layout.card.name == "dataset.json" and not is_built_dataset(tmp_path)
    assert layout.shard(3) == tmp_path / BuiltLayout.shard_names(4)[3]
    assert BuiltLayout.shard_names(2) == ["shard_00000.safetensors", "shard_00001.safetensors"]


def test_transfer_records_define_eligible_and_success_in_their_place() -> None:
    keys = list(TRANSFER_DEFINITIONS)
    assert keys[:3] == ["target_accuracy", "eligible", "transfer_success"]
    assert {k: TRANSFER_DEFINITIONS[k] for k in DEFINITIONS} == DEFINITIONS


def test_white_box_success_is_transfer_to_the_source_itself() -> None:
    y = torch.tensor([0, 1, 2, 3, 4])
    clean = torch.tensor([0, 1, 2, 0, 4])  # wrong on the 4th
    adv = torch.tensor([1, 1, 0, 0, 0])  # fools the 1st, 3rd and 5th
    rate = transfer_rate(source_clean=clean, source_adv=adv, target_clean=clean, target_adv=adv, labels=y)
    assert (rate.eligible, rate.successes) == (3, 3)

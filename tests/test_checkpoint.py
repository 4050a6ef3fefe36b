"""Tests for nrflab.models.checkpoint: save/load round trips, run directories, every kind of bad file, atomic writes."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import nrflab.core.io
from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_save_tensors, atomic_write_json, atomic_write_text, load_tensors, read_json
from nrflab.models.checkpoint import load_model, load_model_config, save_model

from conftest import tiny_model


@pytest.fixture()
def model():
    """A tiny BN model whose running statistics have moved away from their initial values."""
    m = tiny_model("bn", seed=1)
    with torch.no_grad():
        m.train()(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    return m.eval()


def inputs() -> torch.Tensor:
    return torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def assert_same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        assert torch.equal(a.eval()(inputs()), b.eval()(inputs()))


def test_round_trip_file(model, tmp_path) -> None:
    path = save_model(model, tmp_path / "m.safetensors")
    assert path == tmp_path / "m.safetensors" and (tmp_path / "m.json").is_file()
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert int(loaded.net.bn1.num_batches_tracked) == 1
    assert_same_model(loaded, model)
    assert json.loads((tmp_path / "m.json").read_text()) == model.config.to_dict()


def test_round_trip_run_directory(model, tmp_path) -> None:
    run = tmp_path / "run"
    path = save_model(model, run)
    assert path == run / "model.safetensors"
    assert_same_model(load_model(run), model)
    assert load_model_config(run) == model.config


def test_config_from_metadata_alone_or_sidecar_alone(model, tmp_path) -> None:
    path = save_model(model, tmp_path / "m.safetensors")
    path.with_suffix(".json").unlink()
    assert_same_model(load_model(path), model)
    # Weights without metadata but with the JSON sidecar load too.
    bare = tmp_path / "bare.safetensors"
    save_file(model.state_dict(), str(bare))
    atomic_write_json(bare.with_suffix(".json"), model.config.to_dict())
    assert_same_model(load_model(bare), model)


def test_missing_files_raise(tmp_path) -> None:
    with pytest.raises(NrflabError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(NrflabError, match="no checkpoint"):
        load_model(tmp_path / "empty_run")
    with pytest.raises(NrflabError, match="not found"):
        load_tensors(tmp_path / "nope.safetensors")
    with pytest.raises(NrflabError, match="not found"):
        read_json(tmp_path / "nope.json")


def _write_random(path: Path, valid: Path) -> None:
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )


def _write_truncated(path: Path, valid: Path) -> None:
    data = valid.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_header_only(path: Path, valid: Path) -> None:
    data = valid.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    path.write_bytes(data[: header + 3])


def _write_pickle(path: Path, valid: Path) -> None:
    torch.save(load_tensors(valid), path)


def _write_empty(path: Path, valid: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "writer",
    [_write_random, _write_truncated, _write_header_only, _write_pickle, _write_empty],
    ids=["random-bytes", "truncated", "header-only", "torch-pickle", "empty"],
)
def test_corrupt_files_raise_one_line(model, tmp_path, writer) -> None:
    valid = save_model(model, tmp_path / "valid.safetensors")
    bad = tmp_path / "bad.safetensors"
    writer(bad, valid)
    for load in (load_model, load_tensors, load_model_config):
        with pytest.raises(NrflabError, match=r"bad\.safetensors is not a valid safetensors file") as info:
            load(bad)
        assert "\n" not in str(info.value) and "bad.safetensors" in str(info.value)


class _Tripwire:
    """Unpickling this touches a file: proof that a loader executed pickle code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_malicious_pickle_is_never_unpickled(tmp_path) -> None:
    tripwire = tmp_path / "pwned"
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps({"net.conv1.weight": _Tripwire(tripwire)}))
    (tmp_path / "model.json").write_text(json.dumps(tiny_model().config.to_dict()))
    with pytest.raises(NrflabError, match=r"model\.safetensors is not a valid safetensors file"):
        load_model(tmp_path)
    assert not tripwire.exists()


def test_file_without_config_raises(model, tmp_path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(model.state_dict(), str(path))
    with pytest.raises(NrflabError, match="no model config"):
        load_model(path)


@pytest.mark.parametrize(
    "config_text, in_metadata, in_sidecar",
    [
        ("{not json", "has a corrupt model config", "is not valid JSON"),
        (json.dumps({"arch": "resnet19"}), "unknown arch 'resnet19'", "unknown arch 'resnet19'"),
        (
            json.dumps({"arch": "smallcnn", "depth": 3}),
            "model config has unknown fields ['depth']",
            "model config has unknown fields ['depth']",
        ),
        (json.dumps({}), "model config lacks its arch", "model config lacks its arch"),
        (
            json.dumps(["smallcnn"]),
            "model config must be a mapping, not list",
            "model config must be a mapping, not list",
        ),
        (json.dumps({"arch": "smallcnn", "norm": "batchnorm"}), "unknown norm 'batchnorm'", "unknown norm 'batchnorm'"),
    ],
    ids=["bad-json", "unknown-arch", "unknown-field", "no-arch", "a-list", "unknown-norm"],
)
def test_corrupt_config_raises(model, tmp_path, config_text, in_metadata, in_sidecar) -> None:
    path = tmp_path / "m.safetensors"
    atomic_save_tensors(path, model.state_dict(), {"nrflab_model_config": config_text})
    with pytest.raises(NrflabError, match=re.escape(in_metadata)):
        load_model(path)
    # The same text as a sidecar (no metadata).
    side = tmp_path / "side.safetensors"
    save_file(model.state_dict(), str(side))
    side.with_suffix(".json").write_text(config_text)
    with pytest.raises(NrflabError, match=re.escape(in_sidecar)):
        load_model(side)


@pytest.mark.parametrize("change", ["other-width", "missing-key", "extra-key", "other-classes"])
def test_state_dict_that_does_not_fit_raises(model, tmp_path, change) -> None:
    state = dict(model.state_dict())
    config = model.config.to_dict()
    if change == "other-width":
        config["width"] = 0.25
    elif change == "missing-key":
        del state["net.conv2.weight"]
    elif change == "extra-key":
        state["net.extra.weight"] = torch.zeros(3)
    else:
        config["num_classes"] = 5
    path = tmp_path / "m.safetensors"
    atomic_save_tensors(path, state, {"nrflab_model_config": json.dumps(config)})
    with pytest.raises(NrflabError, match="does not fit") as info:
        load_model(path)
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------------------------
# Atomic writes


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_text_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch) -> None:
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "old")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nrflab.core.io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left on device"):
        atomic_write_text(target, "new" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _no_temp_files(tmp_path)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _no_temp_files(tmp_path)


def test_atomic_write_json_serializes_paths_tuples_and_tensors(tmp_path) -> None:
    atomic_write_json(
        tmp_path / "a.json", {"p": Path("x/y"), "t": (1, 2), "v": torch.tensor([0.5]), "s": torch.tensor(3)}
    )
    assert read_json(tmp_path / "a.json") == {"p": "x/y", "t": [1, 2], "v": [0.5], "s": 3}
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(NrflabError, match="not valid JSON"):
        read_json(tmp_path / "b.json")


def test_a_save_that_fails_midway_keeps_the_old_model(model, tmp_path, monkeypatch) -> None:
    path = save_model(model, tmp_path / "m.safetensors")
    old_bytes = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nrflab.core.io, "save_file", half_written)
    other = tiny_model("bn", seed=9)
    with pytest.raises(OSError, match="No space left on device"):
        save_model(other, path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert_same_model(load_model(path), model)
    assert _no_temp_files(tmp_path)


def test_a_failed_rename_of_tensors_leaves_no_temp_file(model, tmp_path, monkeypatch) -> None:
    path = tmp_path / "t.safetensors"
    atomic_save_tensors(path, {"a": torch.ones(2)})
    monkeypatch.setattr(nrflab.core.io.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        atomic_save_tensors(path, {"a": torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(load_tensors(path)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["t.safetensors"]

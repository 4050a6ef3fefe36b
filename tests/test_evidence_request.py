"""An engine measurement task's arguments: :func:`measure_run` and :func:`measured` read the same request, with
:func:`measure`'s defaults for what the request leaves out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nrflab.data
from nrflab.experiments import analysis, evidence


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """:func:`evidence.measure` and :func:`evidence.cache_path` replaced by recorders, on stand-in images."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(nrflab.data, "load_dataset", lambda name, root=None: (name, root))
    monkeypatch.setattr(analysis, "test_images", lambda data, n: (torch.zeros(n or 1, 1), torch.zeros(n or 1)))

    def record(what: str):
        def call(run_dir, x, y, **keys):
            calls.append({"what": what, "run_dir": run_dir, "n": len(x), **keys})
            return Path("/nonexistent/outcomes.safetensors")

        return call

    monkeypatch.setattr(evidence, "measure", record("measure"))
    monkeypatch.setattr(evidence, "cache_path", record("cache_path"))
    return calls


def test_measure_run_fills_measures_defaults(recorded, tmp_path):
    out = evidence.measure_run(run_dir=str(tmp_path), dataset="mnist5k", data_root=None, test_size=3, seed=2)
    assert out == str(tmp_path)
    (call,) = recorded
    assert call["n"] == 3 and call["device"] == "auto" and call["seed"] == 2
    assert call["protocol"].name == "paper"
    assert (call["attacks"], call["ligs_sigma"], call["corruptions"], call["severities"]) == ((), None, (), ())
    assert call["autoattack_size"] is None


def test_measured_is_false_without_a_model_and_reads_the_same_keys_with_one(recorded, tmp_path):
    request = dict(dataset="mnist5k", data_root=None, test_size=4, attacks=["pgd-l2:eps=1"], ligs_sigma=0.01)
    assert evidence.measured(run_dir=str(tmp_path), **request) is False
    assert recorded == []  # no model: the images are not even loaded
    from nrflab.runs.rundir import RunDir

    RunDir(tmp_path).model_path.write_bytes(b"")
    assert evidence.measured(run_dir=str(tmp_path), device="cpu", **request) is False  # no cache file
    evidence.measure_run(run_dir=str(tmp_path), device="cpu", **request)
    cache, run = recorded
    assert cache["what"] == "cache_path" and run["what"] == "measure"
    assert {k: v for k, v in cache.items() if k != "what"} == {
        k: v for k, v in run.items() if k not in ("what", "device")
    }
    assert run["attacks"] == ["pgd-l2:eps=1"] and run["ligs_sigma"] == 0.01 and run["device"] == "cpu"

"""Tests for the feature-dataset builders (nrflab.features), built-dataset loading, the CLI and the experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.core.io import load_tensors
from nrflab.data import load_dataset
from nrflab.data.defaults import preset_for
from nrflab.features import build_dataset, make_settings
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model
from nrflab.training import make_config, train

torch.set_num_threads(1)
N = 32


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def source(tmp_path_factory, mnist) -> Path:
    """A tiny BN smallcnn briefly fit on 512 mnist5k images (so targeted attacks have a real model)."""
    model = create_model(
        "smallcnn", "bn", 10, 1, width=0.25, mean=mnist.mean, std=mnist.std, input_shape=mnist.input_shape, seed=0
    )
    x, y = mnist.train.subset(range(512)).tensors()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(6):
        for i in range(0, 512, 64):
            loss = nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return save_model(model.eval(), tmp_path_factory.mktemp("src") / "model.safetensors")


def _build(kind, source, out, **kw):
    args = dict(steps=8, limit=N, shard_size=12, batch_size=16, progress=False)
    if kind in ("d_r", "d_nr"):
        args["step_size"] = 0.5
    else:
        args.update(eps=3.0, step_size=0.5)
    args.update(kw)
    return build_dataset(kind, source, None if kind == "conflicting" else "mnist5k", out, **args)


def _shards(out: Path) -> list[dict[str, torch.Tensor]]:
    return [load_tensors(p) for p in sorted(out.glob("shard_*.safetensors"))]


@pytest.fixture(scope="module")
def d_r(tmp_path_factory, source) -> Path:
    out = tmp_path_factory.mktemp("sets") / "d_r"
    _build("d_r", source, out)
    return out


@pytest.mark.parametrize("kind", ["d_nr", "d_rand", "d_det"])
def test_builder_shapes_range_labels(tmp_path, source, mnist, kind):
    res = _build(kind, source, tmp_path / kind)
    arrays = _shards(tmp_path / kind)
    assert [a["labels"].shape[0] for a in arrays] == [12, 12, 8]
    images = torch.cat([a["images"] for a in arrays])
    assert images.shape == (N, 1, 28, 28) and images.dtype == torch.uint8
    labels, orig = torch.cat([a["labels"] for a in arrays]), torch.cat([a["orig_labels"] for a in arrays])
    src_idx = torch.cat([a["source_indices"] for a in arrays])
    # --limit: a seeded random subset, in the training set's order (the same for every kind).
    expected = torch.randperm(len(mnist.train), generator=torch.Generator().manual_seed(0))[:N].sort().values
    assert torch.equal(src_idx, expected)
    assert torch.equal(orig, mnist.train.labels[expected])
    if kind == "d_det":
        assert torch.equal(labels, (orig + 1) % 10)
    if kind == "d_rand":
        assert torch.equal(labels, torch.cat([a["targets"] for a in arrays])) and len(set(labels.tolist())) > 3
    if kind == "d_nr":
        assert torch.equal(labels, orig)
        starts = torch.cat([a["start_indices"] for a in arrays])
        assert not torch.equal(starts, src_idx) and bool((starts != src_idx).all())
    assert res.card["complete"] and res.card["num_images"] == N


def test_targeted_builders_reach_targets(tmp_path, source):
    for kind in ("d_rand", "d_det"):
        res = _build(kind, source, tmp_path / kind, steps=50, eps=6.0, step_size=0.2)
        assert res.card["sanity"]["attack_success_rate"] > 0.7, (kind, res.card["sanity"])
        assert res.card["sanity"]["source_acc_vs_stored_labels"] == res.card["sanity"]["attack_success_rate"]


def test_inversion_reduces_representation_distance(d_r):
    card = json.loads((d_r / "dataset.json").read_text())
    sanity = card["sanity"]
    assert sanity["mean_rep_distance_after"] < 0.7 * sanity["mean_rep_distance_before"]


def test_float_dtype_and_prediction_label_policy(tmp_path, source):
    res = _build("d_det", source, tmp_path / "f", dtype="float32", label_policy="prediction")
    arrays = _shards(tmp_path / "f")
    images = torch.cat([a["images"] for a in arrays])
    assert images.dtype == torch.float32 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert res.card["sanity"]["source_acc_vs_stored_labels"] == 1.0  # labels are the source's predictions
    assert res.card["label_policy"] == "prediction"


def test_determinism_and_resume_after_kill(tmp_path, source):
    whole = _build("d_rand", source, tmp_path / "whole")

    def kill(i, n):
        if i == 1:
            raise KeyboardInterrupt("killed after shard 1")

    with pytest.raises(KeyboardInterrupt, match="killed after shard 1"):
        _build("d_rand", source, tmp_path / "cut", on_shard=kill)
    assert len(_shards(tmp_path / "cut")) == 2
    (tmp_path / "cut" / "shard_00001.safetensors").unlink()  # as if the kill hit shard 1 mid-write
    with pytest.raises(NrflabError, match="incomplete"):
        load_dataset(str(tmp_path / "cut"))
    resumed = _build("d_rand", source, tmp_path / "cut", resume=True)
    assert resumed.built_shards == [1, 2]
    for a, b in zip(_shards(tmp_path / "whole"), _shards(tmp_path / "cut")):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.card["sanity"] == whole.card["sanity"]


def test_the_step_follows_eps_and_steps_unless_given_and_a_resume_keeps_the_recorded_one(tmp_path, source):
    assert make_settings("d_rand").attack.step_size == 0.1  # the paper's step for the paper's eps and steps
    assert make_settings("d_rand", eps=3.0, steps=8).attack.step_size == pytest.approx(2.5 * 3.0 / 8)  # evaluate's
    assert make_settings("d_rand", eps=3.0, steps=8, step_size=0.3).attack.step_size == 0.3
    assert make_settings("d_r", steps=8).attack.step_size == 0.1  # an unbounded radius: no ball to cross

    def kill(i, n):
        raise KeyboardInterrupt("killed after shard 0")

    with pytest.raises(KeyboardInterrupt):  # started with step 0.5, as a build made before the rule
        _build("d_rand", source, tmp_path / "cut", on_shard=kill)
    args = dict(steps=8, eps=3.0, limit=N, shard_size=12, batch_size=16, progress=False)
    resumed = build_dataset("d_rand", source, "mnist5k", tmp_path / "cut", resume=True, **args)
    assert resumed.card["identity"]["settings"]["step_size"] == 0.5 and resumed.built_shards == [1, 2]


def test_resume_with_other_settings_and_nonempty_dir_refused(tmp_path, source):
    _build("d_det", source, tmp_path / "a")
    with pytest.raises(NrflabError, match="different .*settings.steps"):
        _build("d_det", source, tmp_path / "a", steps=3, resume=True)
    with pytest.raises(NrflabError, match="--resume"):
        _build("d_det", source, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("x")
    with pytest.raises(NrflabError, match="not empty"):
        _build("d_det", source, tmp_path / "b")
    assert _build("d_det", source, tmp_path / "b", overwrite=True).card["complete"]


def test_card_holds_settings_and_source(d_r, source):
    card = json.loads((d_r / "dataset.json").read_text())
    s = card["settings"]
    assert (s["kind"], s["steps"], s["eps"], s["step_size"], s["seed"], s["limit"]) == ("d_r", 8, 1000.0, 0.5, 0, N)
    assert card["shard_size"] == 12 and card["num_images"] == N and card["dtype"] == "uint8"
    assert card["label_policy"] == "target" and card["base_dataset"]["name"] == "mnist5k"
    assert card["source"]["model_config"]["arch"] == "smallcnn" and len(card["source"]["sha256"]) == 64
    assert card["source"]["adversarially_trained"] is None  # no run config beside a bare checkpoint
    assert card["nrflab_version"] and card["seeds"]["seed"] == 0


def test_conflicting_from_d_r(tmp_path, source, d_r):
    res = _build("conflicting", source, tmp_path / "c", base=d_r)
    arrays = _shards(tmp_path / "c")
    base = _shards(d_r)
    orig = torch.cat([a["orig_labels"] for a in arrays])
    assert torch.equal(orig, torch.cat([a["labels"] for a in base]))
    assert torch.equal(torch.cat([a["labels"] for a in arrays]), (orig + 1) % 10)
    assert res.card["base_set"]["kind"] == "d_r"
    with pytest.raises(NrflabError, match="needs a d_r set"):
        _build("conflicting", source, tmp_path / "c2", base=tmp_path / "c")
    with pytest.raises(NrflabError, match="--base"):
        _build("conflicting", source, tmp_path / "c3")


def test_user_module_with_layer_hook(tmp_path, mnist):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    res = _build("d_nr", net, tmp_path / "u", layer="2", limit=8, shard_size=8)
    assert res.card["sanity"]["mean_rep_distance_after"] < res.card["sanity"]["mean_rep_distance_before"]
    with pytest.raises(NrflabError, match="no .features"):
        _build("d_nr", net, tmp_path / "u2", limit=8)


def test_load_built_dataset_and_train_one_epoch(tmp_path, d_r, mnist):
    bundle = load_dataset(str(d_r))
    assert len(bundle.train) == N and len(bundle.test) == len(mnist.test)
    assert torch.equal(bundle.test.labels, mnist.test.labels)
    assert (bundle.num_classes, bundle.input_shape, bundle.mean) == (10, (1, 28, 28), mnist.mean)
    assert bundle.info["base_dataset"] == "mnist5k" and bundle.info["kind"] == "d_r"
    assert preset_for(str(d_r)) == "mnist"
    cfg = make_config(
        dataset=str(d_r),
        arch="smallcnn",
        width=0.25,
        epochs=1,
        eval_size=32,
        eval_attacks=["pgd-l2:eps=1.0,step=0.5,steps=1"],
        device="cpu",
        eval_shifted_labels=True,
    )
    assert cfg.preset == "mnist" and cfg.batch_size == 64
    result = train(cfg, tmp_path / "run", progress=False)
    assert len(result.history) == 2 and 0.0 <= result.history[-1]["shifted_acc"] <= 1.0


def test_corrupt_or_missing_shard_is_an_error(tmp_path, source):
    out = tmp_path / "x"
    _build("d_det", source, out)
    (out / "shard_00002.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(NrflabError, match="not a valid safetensors"):
        load_dataset(str(out))
    (out / "shard_00002.safetensors").unlink()
    with pytest.raises(NrflabError, match="not found"):
        load_dataset(str(out))


def test_bad_inputs(tmp_path, source, mnist):
    with pytest.raises(NrflabError, match="unknown dataset kind"):
        _build("d_foo", source, tmp_path / "k")
    wrong = create_model("smallcnn", "bn", 7, 1, width=0.25, input_shape=(1, 28, 28), seed=0)
    with pytest.raises(NrflabError, match="does not fit"):
        _build("d_rand", save_model(wrong, tmp_path / "w.safetensors"), tmp_path / "k")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NrflabError, match="not a directory"):
        _build("d_rand", source, tmp_path / "file")


def test_cli(tmp_path, source, d_r, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "build-dataset",
                "d_det",
                "--source",
                str(source),
                "--dataset",
                "mnist5k",
                "--out",
                str(out),
                "--limit",
                "8",
                "--steps",
                "2",
                "--eps",
                "2",
                "--step-size",
                "0.5",
                "-q",
            ]
        )
        == 0
    )
    assert json.loads((out / "dataset.json").read_text())["num_images"] == 8
    bad = [
        ["build-dataset", "d_foo", "--source", str(source), "--dataset", "mnist5k", "--out", str(tmp_path / "a")],
        ["build-dataset", "d_rand", "--source", str(source), "--dataset", "mnist5k", "--out", str(tmp_path / "cli")],
        ["build-dataset", "conflicting", "--source", str(source), "--out", str(tmp_path / "b")],
        ["build-dataset", "conflicting", "--source", str(source), "--base", str(out), "--out", str(tmp_path / "c")],
        [
            "build-dataset",
            "d_rand",
            "--source",
            str(source),
            "--dataset",
            "mnist5k",
            "--out",
            str(tmp_path / "cli" / "dataset.json"),
        ],
    ]
    for argv in bad:
        capsys.readouterr()
        assert main(argv + ["-q", "--limit", "4", "--steps", "1"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
    assert main(["build-dataset", "--help"]) == 0
    assert "--label-policy" in capsys.readouterr().out


@pytest.mark.slow  # an experiment end to end at its quick scale: with the slow tests in CI
def test_experiment_quick(tmp_path):
    from nrflab.experiments.features import QUICK, SPEC
    from nrflab.experiments.reproduce import run_chain
    from nrflab.runs.jobs import Execution

    result = run_chain([(SPEC, QUICK)], tmp_path, Execution(progress=False))
    result.raise_for_failures()
    section = result.sections[0]
    md = section.markdown
    assert "| D_rand | BN |" in md and "acc vs y+1" in md and "Built sets" in md
    assert "(BN with batch statistics): acc vs y / vs y+1 / top-class share" in md and "Finding: on D_rand" in md
    # Claim 5 (two claims) and three conflicting-set claims under the paper's protocol; the two with BN again with
    # batch statistics.
    assert len(section.verdicts) == 7 and md.count(": this run ") == 7
    assert sum(v.protocol.startswith("the batch-statistics protocol") for v in section.verdicts) == 2
    assert [v.claim_id for v in section.verdicts] == [
        "features.d_rand_hardly",
        "features.d_rand_more",
        "features.conflicting_rf",
        "features.conflicting_nrf_more",
        "features.conflicting_turn",
        "features.d_rand_more",
        "features.conflicting_nrf_more",
    ]
    # One epoch on 96 images: no twin trains, so the guard voids every claim (before one seed leaves it untested).
    assert all(v.outcome == "void" and "did not train" in v.reason for v in section.verdicts)
    assert all(v.family == "claim 5: feature datasets" and v.unit == "points" for v in section.verdicts)
    assert all(Path(p).is_file() for p in section.images) and len(section.images) == 4
    twin = json.loads((tmp_path / "features" / "runs" / "conflicting_bn_s0" / "config.json").read_text())
    assert twin["dataset"] == str(tmp_path / "features" / "sets" / "conflicting") and twin["eval_shifted_labels"]
    assert twin["preset"] == "mnist"  # the built set's base dataset decides the preset

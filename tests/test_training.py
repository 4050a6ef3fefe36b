"""The trainer: run directory contents, exact resume, atomic saves, refusals, divergence, config errors,
schedules, kept checkpoints, plots and the shifted-label column, on a tiny MNIST problem."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import yaml

import nrflab.core.io
from nrflab import training as T
from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.core.io import load_tensors
from nrflab.data import DatasetBundle, load_dataset
from nrflab.models import checkpoint as ckpt
from nrflab.models.checkpoint import load_model
from nrflab.runs.rundir import RunStatus
from nrflab.training.evaluation import metrics_columns
from nrflab.training.schedule import lr_at

torch.set_num_threads(1)

ATTACK = "pgd-l2:eps=1.0,step=0.5,steps=2"
TIMING = ("epoch_time", "eval_time", "wall_time")


@pytest.fixture(scope="module")
def tiny() -> DatasetBundle:
    """256 training and 64 test images of mnist5k, drawn at random (the files are sorted by class)."""
    b = load_dataset("mnist5k")
    g = torch.Generator().manual_seed(0)
    train = b.train.subset(torch.randperm(len(b.train), generator=g)[:256])
    test = b.test.subset(torch.randperm(len(b.test), generator=g)[:64])
    return dataclasses.replace(b, train=train, test=test)


def config(**fields) -> T.TrainConfig:
    base = dict(
        dataset="mnist5k", arch="smallcnn", width=0.25, epochs=3, eval_size=64, eval_attacks=[ATTACK], device="cpu"
    )
    return T.make_config(**{**base, **fields})


def run(cfg: T.TrainConfig, out: Path, bundle: DatasetBundle, **kw) -> T.TrainResult:
    return T.train(cfg, out, bundle=bundle, progress=False, **kw)


def untimed(rows: list[dict]) -> list[dict]:
    """Rows without the timing columns, NaN (epoch 0's train loss) as None so rows compare equal."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items() if k not in TIMING}
        for r in rows
    ]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> T.TrainResult:
    """An uninterrupted 3-epoch run that the resumed runs must reproduce bit for bit."""
    return run(config(), tmp_path_factory.mktemp("ref") / "run", tiny)


def test_smoke_run_writes_a_complete_run_directory(reference, tiny):
    out, cfg = reference.run_dir, reference.config
    with (out / "metrics.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header == metrics_columns(cfg)
    rows = T.read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert math.isnan(rows[0]["train_loss"]) and all(math.isfinite(r["train_loss"]) for r in rows[1:])
    assert rows[-1]["train_loss"] < rows[1]["train_loss"]
    # The recorded lr is the one of each epoch's last step.
    steps = math.ceil(256 / cfg.batch_size)
    for r in rows[1:]:
        assert r["lr"] == pytest.approx(lr_at(cfg, int(r["epoch"]) - 1, steps - 1, steps), rel=1e-5)

    recorded = json.loads((out / "config.json").read_text())
    assert {k: recorded[k] for k in cfg.model_dump()} == json.loads(cfg.model_dump_json())
    assert recorded["preset"] == "mnist" and recorded["batch_size"] == 64 and recorded["schedule"] == "onecycle"
    assert recorded["init"] == "auto" and recorded["resolved"]["model"]["init"] == "kaiming"
    assert recorded["resolved"]["model"]["norm"] == "bn"
    assert recorded["resolved"]["dataset"]["train_size"] == 256
    assert yaml.safe_load((out / "config.yaml").read_text()) == recorded

    loaded = load_model(out)
    x = tiny.test.tensors()[0][:16]
    with torch.no_grad():
        assert torch.equal(loaded(x), reference.model.eval()(x))
    assert T.run_status(out) == RunStatus(3, 3, True)


def test_killed_run_resumes_to_the_uninterrupted_result(reference, tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = T.Trainer._train_epoch
    calls = []

    def killed_on_second_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed in the second epoch")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(T.Trainer, "_train_epoch", killed_on_second_epoch)
    with pytest.raises(KeyboardInterrupt, match="killed in the second epoch"):
        run(config(), out, tiny)
    monkeypatch.undo()
    assert T.run_status(out) == RunStatus(1, 3, False)
    assert len(T.read_metrics(out)) == 2

    resumed = run(config(), out, tiny, resume=True)
    assert untimed(T.read_metrics(out)) == untimed(T.read_metrics(reference.run_dir))
    assert untimed(resumed.history) == untimed(reference.history)
    assert_same_weights(weights(out), weights(reference.run_dir))
    assert_same_weights(
        load_tensors(out / "checkpoint.safetensors"), load_tensors(reference.run_dir / "checkpoint.safetensors")
    )


@pytest.mark.parametrize("target", ["checkpoint.safetensors", "model.safetensors", "metrics.csv", "partial"])
def test_crash_while_saving_epoch_two_keeps_epoch_one(reference, tiny, tmp_path, monkeypatch, target):
    out = tmp_path / "run"
    real_replace, real_save = os.replace, nrflab.core.io.save_file
    seen: dict[str, int] = {}

    def crashing_replace(src, dst):
        name = Path(dst).name
        seen[name] = seen.get(name, 0) + 1
        if name == target and seen[name] == 3:  # saves of epochs 0, 1, then 2
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    def half_written_save(tensors, path, metadata=None):
        """Write a truncated file, then die: a crash in the middle of writing the checkpoint."""
        real_save(tensors, path, metadata=metadata)
        if metadata and "history" in metadata and json.loads(metadata["epoch"]) == 2:
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt("killed while writing the checkpoint")

    if target == "partial":
        monkeypatch.setattr(nrflab.core.io, "save_file", half_written_save)
        crash = "killed while writing the checkpoint"
    else:
        monkeypatch.setattr(nrflab.core.io.os, "replace", crashing_replace)
        crash = "No space left on device"
    with pytest.raises((OSError, KeyboardInterrupt), match=crash):
        run(config(), out, tiny)
    monkeypatch.undo()

    assert T.run_status(out) == RunStatus(1, 3, False)
    state = load_tensors(out / "checkpoint.safetensors")
    assert any(k.startswith("optim.") for k in state)
    load_model(out)  # the model file is complete (epoch 1 or 2)
    rows = T.read_metrics(out)
    assert [r["epoch"] for r in rows][:2] == [0, 1]
    assert not list(out.glob(".*.tmp"))

    run(config(), out, tiny, resume=True)
    assert untimed(T.read_metrics(out)) == untimed(T.read_metrics(reference.run_dir))
    assert_same_weights(weights(out), weights(reference.run_dir))


def test_refuses_to_overwrite_or_to_resume_with_another_config(tiny, tmp_path):
    out = tmp_path / "run"
    cfg = config(epochs=1, ligs=False, eval_attacks=[])
    run(cfg, out, tiny)
    with pytest.raises(NrflabError, match="already holds a finished run"):
        run(cfg, out, tiny)
    with pytest.raises(NrflabError, match=r"it is a different run \(lr: 0.05 -> 0.01\)"):
        run(config(epochs=1, ligs=False, eval_attacks=[], lr=0.01), out, tiny, resume=True)
    again = run(config(epochs=1, ligs=False, eval_attacks=[], lr=0.01), out, tiny, overwrite=True)
    assert len(again.history) == 2 and T.read_run_config(out)["lr"] == 0.01


def test_diverging_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    cfg = config(norm="none", lr=1e10, schedule="constant", ligs=False, eval_attacks=[])
    with pytest.raises(T.NonFiniteLoss, match=r"training diverged at epoch 1 .*try a lower --lr") as info:
        run(cfg, out, tiny)
    assert isinstance(info.value, NrflabError) and "\n" not in str(info.value)
    assert T.run_status(out) == RunStatus(0, 3, False)
    model = load_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len(T.read_metrics(out)) == 1


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(lr=-1), "lr"),
        (dict(learning_rate=0.1), "learning_rate"),
        (dict(eval_attacks=["pgd-l3:eps=1"]), "unknown attack"),
        (dict(eval_attacks=["pgd-l2:eps=1,foo=2"]), "bad attack option"),
        (dict(milestones=[100, 50]), "milestones"),
        (dict(schedule="linear"), "schedule"),
    ],
)
def test_config_errors_are_one_clear_line(fields, words):
    with pytest.raises(NrflabError, match=rf"^invalid config: .*{re.escape(words)}") as info:
        T.make_config(**fields)
    message = str(info.value)
    assert words in message and "\n" not in message


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_cli_rejects_bad_values_with_one_error_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--lr", "-1"]) == 2
    assert "lr" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_cli_config_file_with_flag_overrides(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            dict(
                dataset="mnist5k",
                arch="smallcnn",
                width=0.25,
                norm="none",
                epochs=5,
                lr=0.2,
                eval_size=8,
                ligs=False,
                eval_attacks=[ATTACK],
                device="cpu",
            )
        )
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(out), "--epochs", "1", "--lr", "0.01", "-q"]) == 0
    recorded = T.read_run_config(out)
    assert (recorded["epochs"], recorded["lr"], recorded["norm"], recorded["width"]) == (1, 0.01, "none", 0.25)
    assert len(T.read_metrics(out)) == 2

    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\nepochs: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "run2")]) == 2
    assert "not valid YAML" in one_error_line(capsys)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("lr: 0.1\nbatchsize: 3\n")
    assert main(["train", "--config", str(unknown), "--out", str(tmp_path / "run3")]) == 2
    assert "batchsize" in one_error_line(capsys)


def test_lr_schedules_follow_their_definitions():
    multi = T.make_config(lr=0.1, schedule="multistep", milestones=[2, 4], epochs=6)
    assert [lr_at(multi, e, 0, 10) for e in range(6)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_at(multi, 1, 9, 10) == 0.1  # constant within an epoch

    one = T.make_config(lr=0.1, schedule="onecycle", epochs=10)
    lrs = [lr_at(one, e, s, 10) for e in range(10) for s in range(10)]
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1) and peak == 30
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :]))
    assert lrs[-1] < 0.1 / 1000 and lrs[-1] > 0.1 / 1e4

    cos = T.make_config(lr=0.1, schedule="cosine", epochs=4)
    lrs = [lr_at(cos, e, s, 5) for e in range(4) for s in range(5)]
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.002

    const = T.make_config(lr=0.3, schedule="constant", epochs=4)
    assert {lr_at(const, e, 3, 5) for e in range(4)} == {0.3}


def test_keep_checkpoints_keeps_every_nth_epoch_including_zero(tiny, tmp_path):
    out = tmp_path / "run"
    result = run(config(keep_checkpoints=2, ligs=False, eval_attacks=[]), out, tiny)
    kept = sorted(p.name for p in (out / "checkpoints").glob("*.safetensors"))
    assert kept == ["epoch_0000.safetensors", "epoch_0002.safetensors"]
    first, middle = load_model(out / "checkpoints" / kept[0]), load_model(out / "checkpoints" / kept[1])
    assert ckpt.read_metadata(out / "checkpoints" / kept[1])["epoch"] == "2"
    final = result.model.state_dict()
    assert not torch.equal(middle.state_dict()["net.conv1.weight"], final["net.conv1.weight"])
    assert not torch.equal(first.state_dict()["net.conv1.weight"], middle.state_dict()["net.conv1.weight"])


def test_plot_command_writes_valid_png_and_svg(reference, tiny, tmp_path, capsys):
    other = run(config(norm="none", epochs=1), tmp_path / "none", tiny).run_dir
    stem = tmp_path / "figs" / "fig3"
    assert main(["plot", str(reference.run_dir), str(other), "--out", str(stem.parent), "--name", "fig3"]) == 0
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 100
    text = svg.read_text()  # matplotlib draws text as paths and names each one in a comment
    assert "smallcnn/bn" in text and "smallcnn/none" in text and "LIGS" in text


def test_shifted_label_accuracy_is_recorded(tiny, tmp_path):
    result = run(config(epochs=1, eval_shifted_labels=True, ligs=False), tmp_path / "run", tiny)
    assert "shifted_acc" in metrics_columns(result.config)
    rows = T.read_metrics(result.run_dir)
    x, y = tiny.test.tensors()
    with torch.no_grad():
        pred = result.model.eval()(x).argmax(1)
    assert rows[-1]["shifted_acc"] == pytest.approx(float((pred == (y + 1) % 10).float().mean()), abs=1e-6)
    assert rows[-1]["clean_acc"] == pytest.approx(float((pred == y).float().mean()), abs=1e-6)
    assert "shifted_acc" not in metrics_columns(config())


def test_train_or_reuse_reuses_the_same_recipe_and_refuses_another(tmp_path, logged):
    from nrflab.core.errors import NrflabError
    from nrflab.training import make_config, train_or_reuse

    fields = dict(
        dataset="digits", arch="smallcnn", width=0.25, epochs=1, eval_size=16, eval_attacks=[], ligs=False, device="cpu"
    )
    run = tmp_path / "run"
    train_or_reuse(make_config(**fields), run, progress=False)
    stamp = (run / "checkpoint.safetensors").stat().st_mtime_ns
    train_or_reuse(make_config(**fields), run, progress=False)
    assert logged[-1] == f"reusing finished run {run}"
    assert (run / "checkpoint.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(NrflabError, match=r"holds a run of another recipe \(lr: 0.05 -> 0.01\)"):
        train_or_reuse(make_config(**{**fields, "lr": 0.01}), run, progress=False)

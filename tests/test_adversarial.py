"""Adversarial training, the attack mode used while crafting training attacks, every normalization
training a step, and the normalization-family experiment in quick mode."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nrflab import training as T
from nrflab.attacks import PGD
from nrflab.data import DatasetBundle, ImageTensorDataset, load_dataset
from nrflab.models import create_model
from nrflab.models.checkpoint import load_model
from nrflab.report.document import Section

torch.set_num_threads(1)


def pick(data: ImageTensorDataset, classes: list[int], n: int, seed: int) -> ImageTensorDataset:
    """``n`` random images of the given classes (the mnist5k files are sorted by class)."""
    idx = torch.nonzero(torch.isin(data.labels, torch.tensor(classes))).flatten()
    return data.subset(idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:n]])


@pytest.fixture(scope="module")
def mnist() -> DatasetBundle:
    return load_dataset("mnist5k")


def small(bundle: DatasetBundle, classes: list[int], n_train: int, n_test: int) -> DatasetBundle:
    return dataclasses.replace(
        bundle, train=pick(bundle.train, classes, n_train, 0), test=pick(bundle.test, classes, n_test, 1)
    )


def run(bundle: DatasetBundle, out, **fields) -> T.TrainResult:
    base = dict(
        dataset="mnist5k",
        arch="smallcnn",
        width=0.25,
        epochs=1,
        device="cpu",
        ligs=False,
        eval_attacks=[],
        eval_size=16,
    )
    return T.train(T.make_config(**{**base, **fields}), out, bundle=bundle, progress=False)


def bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_adversarial_training_raises_robust_accuracy(mnist, tmp_path):
    # 0 vs 1, PGD-L2 eps 1.5: a standard model keeps about half its test images (48 %), the adversarially
    # trained one nearly all (96 %), at the same clean accuracy (99-100 %).
    data = small(mnist, [0, 1], 512, 100)
    attack = "pgd-l2:eps=1.5,step=0.375,steps=10"
    common = dict(norm="bn", epochs=3, batch_size=32, eval_attacks=[attack], eval_size=100)
    std = run(data, tmp_path / "std", **common).history[-1]
    adv = run(data, tmp_path / "adv", adv_train="pgd-l2", adv_eps=1.5, adv_steps=5, **common).history[-1]
    key = "robust_acc[pgd-l2_1.5]"
    assert std["clean_acc"] > 0.95 and adv["clean_acc"] > 0.95
    assert adv[key] > std[key] + 0.25
    assert adv[key] > 0.85


def test_pgd_train_mode_updates_bn_statistics_only_when_asked(mnist):
    model = create_model("smallcnn", "bn", 10, 1, width=0.25, seed=0)
    x, y = mnist.test.tensors()[0][:32], mnist.test.labels[:32]
    model.eval()
    before = bn_buffers(model)

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    PGD(model, norm="l2", eps=1.0, steps=3, mode="eval")(x, y)
    assert same(before, bn_buffers(model)) and not model.training
    PGD(model, norm="l2", eps=1.0, steps=3, mode="train", keep_buffers=True)(x, y)
    assert same(before, bn_buffers(model)) and not model.training
    PGD(model, norm="l2", eps=1.0, steps=3, mode="train", keep_buffers=False)(x, y)
    after = bn_buffers(model)
    assert not model.training
    assert int(after["net.bn1.num_batches_tracked"]) == 3
    assert not torch.equal(after["net.bn1.running_mean"], before["net.bn1.running_mean"])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_trainer_honours_the_attack_mode(mnist, tmp_path, monkeypatch, mode):
    data = small(mnist, list(range(10)), 64, 16)  # one batch of 64: one training step
    real = T.Trainer._adversarial
    changed = []

    def spy(self, model, x, y, gen):
        before = bn_buffers(model)
        out = real(self, model, x, y, gen)
        changed.append(any(not torch.equal(v, bn_buffers(model)[k]) for k, v in before.items()))
        assert model.training  # the trainer's mode is back for the training step
        return out

    monkeypatch.setattr(T.Trainer, "_adversarial", spy)
    result = run(data, tmp_path / mode, adv_train="targeted-l2", adv_eps=1.0, adv_steps=3, attack_mode=mode)
    assert changed == [mode == "train"]
    tracked = int(result.model.state_dict()["net.bn1.num_batches_tracked"])
    assert tracked == (1 + 3 if mode == "train" else 1)  # the training step plus one per attack step
    recorded = json.loads((result.run_dir / "config.json").read_text())
    assert recorded["attack_mode"] == mode and recorded["adv_train"] == "targeted-l2"
    assert recorded["resolved"]["adversarial_training"] == {"eps": 1.0, "steps": 3, "step_size": pytest.approx(2.5 / 3)}


def test_standard_runs_record_no_adversarial_settings(mnist, tmp_path):
    result = run(small(mnist, list(range(10)), 64, 16), tmp_path / "std")
    assert T.read_run_config(result.run_dir)["resolved"]["adversarial_training"] is None


@pytest.mark.parametrize(
    "arch, norm, width, init",
    [("smallcnn", n, 0.25, "kaiming") for n in ("bn", "none", "gn", "ln", "in", "bn-eval")]
    + [("resnet18", "fixup", 0.125, "fixup")],
)
def test_every_norm_trains_a_step_and_is_recorded(mnist, tmp_path, arch, norm, width, init):
    data = small(mnist, list(range(10)), 64, 16)
    initial = create_model(
        arch, norm, 10, 1, width=width, mean=mnist.mean, std=mnist.std, seed=1337, input_shape=mnist.input_shape
    )
    result = run(data, tmp_path / norm, arch=arch, norm=norm, width=width, batch_size=32)
    assert torch.isfinite(torch.tensor(result.history[-1]["train_loss"]))
    recorded = T.read_run_config(result.run_dir)
    assert (recorded["arch"], recorded["norm"]) == (arch, norm)
    assert recorded["resolved"]["model"]["init"] == init and recorded["resolved"]["model"]["norm"] == norm
    loaded = load_model(result.run_dir)
    assert (loaded.config.norm, loaded.config.init) == (norm, init)
    start, end = initial.state_dict(), loaded.state_dict()
    assert start.keys() == end.keys()
    assert any(not torch.equal(start[k], end[k]) for k in start if k.endswith("weight"))


@pytest.mark.slow  # an experiment end to end at its quick scale: with the slow tests in CI
def test_norms_experiments_quick_share_one_zoo_and_write_their_sections(tmp_path):
    from nrflab.experiments.registry import select
    from nrflab.experiments.reproduce import run_chain
    from nrflab.runs.jobs import Execution

    selected = [(spec, spec.presets["quick"]) for spec in select("norms")]
    result = run_chain(selected, tmp_path, Execution(progress=False))
    sections = result.sections
    assert [s.title for s in sections] == [
        "Adversarial training with and without BN",
        "The normalization family",
        "The normalization family in the Fourier lens",
        "Corruption robustness",
    ]
    runs = [k for k in result.results if "#" not in k]
    assert len(runs) == 4  # std and AT, bn and none: one run each, shared by the three experiments
    for s in sections:
        assert isinstance(s, Section)
        assert "|---|" in s.markdown and ": this run " in s.markdown and s.verdicts
        assert s.images and all(p.is_file() and p.suffix == ".png" for p in s.images)
    ids = [[v.claim_id for v in s.verdicts] for s in sections]
    assert ids == [
        ["adversarial.ligs_gain", "adversarial.ligs_gain", "adversarial.bn_cost"],
        ["family.vulnerability"],
        ["family.frequency"],
        ["corruptions.drop"],
    ]
    for v in (v for s in sections for v in s.verdicts):  # one seed: void exactly when the guard failed a model
        assert v.outcome == ("void" if any(not c.passed for c in v.guard) else "not tested") and v.n_seeds == 1
    assert "| AT bn |" in sections[0].markdown and "| standard none |" in sections[0].markdown
    assert "gaussian_noise" in sections[3].markdown
    recorded = T.read_run_config(tmp_path / "norms" / "runs" / "at-bn-s0")
    assert recorded["adv_train"] == "targeted-l2" and recorded["attack_mode"] == "train"
    assert recorded["resolved"]["dataset"]["train_size"] == 1000  # the seeded subset
    # A second call reuses every finished run and stored measurement.
    again = run_chain(selected, tmp_path, Execution(progress=False))
    assert {r.status for r in again.results.values()} == {"reused"}
    assert [s.markdown for s in again.sections] == [s.markdown for s in sections]

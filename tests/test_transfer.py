"""Tests for nrflab.transfer: the transfer matrix, its definitions, caching/resume, boosts, the output
directory's safety (validate first, one writer, overwrite that keeps the old results), the config, and the CLI."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nrflab.attacks import Attack, parse_attack
from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.core.stats import wilson
from nrflab.data import DatasetBundle, ImageTensorDataset, register_dataset
from nrflab.measure.metrics import robust_accuracy
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model
from nrflab.runs.rundir import LOCK_FILE, RunDir
from nrflab.training import make_config, train
from nrflab.transfer import (
    EarlyStop,
    NamedModel,
    PairNumbers,
    PairResult,
    SourceFacts,
    TargetFacts,
    TransferConfig,
    TransferResult,
    TransferSettings,
    find_no_bn_twin,
    resolve_model,
    run_transfer,
    transfer_matrix,
)
from nrflab.transfer.results import ModelInfo

TINY = "transfer-tiny"


def _tiny_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes of 1x8x8 images: class c has a bright 4x4 quadrant c, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 0.6
    return x.clamp(0, 1), y


@register_dataset(TINY)
def _tiny_bundle(root=None, download=False) -> DatasetBundle:
    xtr, ytr = _tiny_images(128, 0)
    xte, yte = _tiny_images(48, 1)
    return DatasetBundle(TINY, ImageTensorDataset(xtr, ytr), ImageTensorDataset(xte, yte), 4, (1, 8, 8), (0.3,), (0.3,))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    """Trained tiny runs (2 epochs, every checkpoint kept, LIGS on): BN and no-BN twins of seed 0, BN of seed 1."""
    root = tmp_path_factory.mktemp("zoo")
    runs = {}
    for norm, seed in (("bn", 0), ("none", 0), ("bn", 1)):
        cfg = make_config(
            dataset=TINY,
            arch="smallcnn",
            norm=norm,
            width=0.25,
            epochs=2,
            batch_size=32,
            lr=0.05,
            schedule="constant",
            augment=False,
            flip=False,
            eval_attacks=[],
            ligs=True,
            seed=seed,
            keep_checkpoints=1,
            device="cpu",
        )
        runs[f"{norm}{seed}"] = train(cfg, root / f"{norm}_s{seed}", progress=False).run_dir
    return runs


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return _tiny_bundle().test.tensors()


ATTACK = "pgd-linf:eps=0.15,step=0.05,steps=5"


class TableModel(nn.Module):
    """Predicts from a lookup table: pixel (0,0) encodes the sample id, pixel (0,1) > 0.5 marks 'attacked'."""

    def __init__(self, clean: list[int], adv: list[int], num_classes: int = 4):
        super().__init__()
        self.register_buffer("table", torch.tensor([clean, adv]))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = (x[:, 0, 0, 0] * 10).round().long()
        attacked = (x[:, 0, 0, 1] > 0.5).long()
        pred = self.table[attacked, ids]
        return nn.functional.one_hot(pred, self.num_classes).float()


class MarkAttack(Attack):
    """Sets the 'attacked' marker pixel; the table models then answer from their adversarial row."""

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, 0, 0, 1] = 1.0
        return x


def _id_data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n, 1, 4, 4)
    x[:, 0, 0, 0] = torch.arange(n) / 10
    return x, torch.zeros(n, dtype=torch.long)


class CountingFactory:
    def __init__(self):
        self.calls = 0

    def __call__(self, model: nn.Module) -> Attack:
        counter = self

        class Counted(MarkAttack):
            def _perturb(self, x, y):
                counter.calls += 1
                return super()._perturb(x, y)

        return Counted(model, eps=math.inf)


# Label 0 everywhere. Source: right on clean for ids 0-5, fooled on adv for ids 0-3 (and 6, 7, which it
# already gets wrong clean). Target: right on clean for 1, 2, 3, 6, 7; wrong on adv for 2 and 6.
SOURCE = TableModel([0, 0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0, 1, 1])
TARGET = TableModel([1, 0, 0, 0, 1, 1, 0, 0], [1, 0, 2, 0, 1, 1, 3, 0])
BROKEN = TableModel([1] * 8, [1] * 8)


def test_success_counts_only_eligible_examples(tmp_path):
    res = transfer_matrix(
        [NamedModel("src", SOURCE)],
        [NamedModel("tgt", TARGET), NamedModel("src_as_target", SOURCE)],
        _id_data(),
        lambda m: MarkAttack(m, eps=math.inf),
        tmp_path,
        attack_name="mark",
        progress=False,
    )
    p = res.pair("src", "tgt")
    assert p.numbers.eligible == 3  # ids 1, 2, 3: source right clean and fooled, target right clean
    assert p.numbers.successes == 1 and p.transfer_success == pytest.approx(1 / 3)  # id 2
    assert p.target_accuracy == pytest.approx(3 / 8)  # the target's adversarial row is 0 (right) at ids 1, 3, 7
    assert p.numbers.transfer_success_ci == pytest.approx(wilson(1, 3))
    src = res.sources[0]
    assert src.clean_correct == 6 and src.fooled == 4 and src.whitebox_success == pytest.approx(4 / 6)
    assert res.pair("src", "src_as_target").transfer_success == 1.0
    assert res.pair("src", "src_as_target").numbers.eligible == 4


def test_target_that_fails_on_clean_data_is_reported(tmp_path, logged):
    res = transfer_matrix(
        [NamedModel("src", SOURCE)],
        [NamedModel("broken", BROKEN)],
        _id_data(),
        lambda m: MarkAttack(m, eps=math.inf),
        tmp_path,
        attack_name="mark",
        progress=False,
    )
    assert res.targets[0].clean_accuracy == 0.0 and res.targets[0].clean_correct == 0
    p = res.pair("src", "broken")
    assert p.numbers.eligible == 0 and math.isnan(p.transfer_success)
    assert any("broken" in line and "no clean example" in line for line in logged)


def test_self_transfer_reproduces_whitebox_robust_accuracy(tmp_path, data):
    model = create_model("smallcnn", "bn", 4, 1, width=0.25, mean=(0.3,), std=(0.3,), input_shape=(1, 8, 8), seed=0)
    res = transfer_matrix(
        [NamedModel("m", model)], [NamedModel("m", model)], data, ATTACK, tmp_path, include_self=True, progress=False
    )
    expected = robust_accuracy(model, data, parse_attack(ATTACK).build(model, seed=0))
    assert res.pair("m", "m").target_accuracy == pytest.approx(expected)
    assert res.sources[0].robust_accuracy == pytest.approx(expected)


def test_matrix_shape_labels_and_outputs(tmp_path, zoo, data):
    sources = [zoo["bn0"], zoo["none0"]]
    targets = [zoo["bn0"], zoo["none0"], zoo["bn1"]]
    run = run_transfer(
        TransferConfig.build(sources=sources, targets=targets, attack=ATTACK),
        out_dir=tmp_path,
        data=data,
        progress=False,
    )
    result, paths = run.result, run.paths
    m = result.matrix("transfer_success")
    assert len(m) == 2 and all(len(row) == 3 for row in m)
    assert [s.name for s in result.sources] == ["bn_s0", "none_s0"]
    assert [t.name for t in result.targets] == ["bn_s0", "none_s0", "bn_s1"]
    assert result.pair("bn_s0", "bn_s0").is_self and not result.pair("bn_s0", "bn_s1").is_self
    assert [r.targets for r in result.per_source()] == [2, 2]  # self pairs left out of averages
    assert {s.group for s in result.sources} == {"smallcnn/bn", "smallcnn/none"}
    record = json.loads(paths.json.read_text())
    assert record["matrices"]["columns"] == ["bn_s0", "none_s0", "bn_s1"]
    assert "eligible" in record["definitions"] and "target_accuracy" in record["definitions"]
    assert record["pairs"][0]["self"] is True and record["recipe"]["attack"] == ATTACK
    summary = paths.summary.read_text()
    assert "Eligible examples" in summary and "Per-source average" in summary
    for png in (paths.transfer_success_png, paths.target_accuracy_png):
        assert png.is_file() and png.with_suffix(".svg").is_file()
    assert run.boosts == ()


def test_resume_reuses_adversarial_examples_and_pairs(tmp_path):
    sources = [NamedModel("src", SOURCE)]
    targets = [NamedModel("tgt", TARGET), NamedModel("broken", BROKEN)]
    first = CountingFactory()
    res1 = transfer_matrix(sources, targets, _id_data(), first, tmp_path, attack_name="mark", progress=False)
    assert first.calls == 1
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*") if p.parent.name in ("adversarial", "pairs")}
    assert len(mtimes) == 3
    again = CountingFactory()
    res2 = transfer_matrix(
        sources, targets, _id_data(), again, tmp_path, attack_name="mark", resume=True, progress=False
    )
    assert again.calls == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert json.dumps(res2.to_dict()["pairs"]) == json.dumps(res1.to_dict()["pairs"])
    with pytest.raises(NrflabError, match="other settings"):
        transfer_matrix(
            sources, targets, _id_data(), again, tmp_path, attack_name="mark-v2", resume=True, progress=False
        )
    with pytest.raises(NrflabError, match="--resume"):
        transfer_matrix(sources, targets, _id_data(), again, tmp_path, attack_name="mark", resume=False, progress=False)
    transfer_matrix(
        sources, targets, _id_data(), again, tmp_path, attack_name="mark-v2", overwrite=True, progress=False
    )
    assert again.calls == 1


def test_changed_source_weights_are_recrafted(tmp_path, logged):
    factory = CountingFactory()
    transfer_matrix(
        [NamedModel("src", SOURCE)],
        [NamedModel("tgt", TARGET)],
        _id_data(),
        factory,
        tmp_path,
        attack_name="mark",
        progress=False,
    )
    changed = TableModel([0] * 8, [1] * 8)
    res = transfer_matrix(
        [NamedModel("src", changed)],
        [NamedModel("tgt", TARGET)],
        _id_data(),
        factory,
        tmp_path,
        attack_name="mark",
        resume=True,
        progress=False,
    )
    assert factory.calls == 2 and any("changed" in line for line in logged)
    assert res.sources[0].clean_correct == 8


def test_targeted_success_means_target_class(tmp_path):
    x, _ = _id_data()
    y = torch.zeros(8, dtype=torch.long)
    # Targeted, policy next: target class 1 for label 0. Source hits class 1 on ids 0-3 (adv row).
    src = TableModel([0] * 8, [1, 1, 1, 1, 2, 2, 2, 2])
    tgt = TableModel([0] * 8, [1, 2, 1, 3, 1, 1, 1, 1])
    res = transfer_matrix(
        [NamedModel("s", src)],
        [NamedModel("t", tgt)],
        (x, y),
        lambda m: MarkAttack(m, eps=math.inf, targeted=True),
        tmp_path,
        attack_name="mark",
        targeted=True,
        progress=False,
    )
    p = res.pair("s", "t")
    assert p.numbers.eligible == 4 and p.numbers.successes == 2  # ids 0 and 2 land on class 1 on the target too
    assert res.settings.target_policy == "next"


def test_kept_checkpoints_and_source_epoch(zoo):
    run = zoo["bn0"]
    assert sorted(p.name for p in (run / "checkpoints").glob("*.safetensors")) == [
        "epoch_0000.safetensors",
        "epoch_0001.safetensors",
        "epoch_0002.safetensors",
    ]
    ref = resolve_model(f"{run}@epoch=1")
    assert ref.epoch == 1 and ref.name == "bn_s0@e1" and ref.group == "smallcnn/bn@e1"
    assert ref.path == run / "checkpoints" / "epoch_0001.safetensors"
    assert resolve_model(run, epoch=2).epoch == 2 and resolve_model(run).epoch == 2
    with pytest.raises(NrflabError, match="epoch 7 .* was not kept; kept epochs: 0, 1, 2"):
        resolve_model(run, epoch=7)


def _fake_run(root: Path, accs: list[float], ligs: list[float], kept: list[int]) -> Path:
    """A run dir with a chosen metrics.csv and tiny checkpoints at the kept epochs."""
    run = root / "fake"
    model = create_model("smallcnn", "bn", 4, 1, width=0.25, input_shape=(1, 8, 8), seed=0)
    for e in kept:
        save_model(model, run / "checkpoints" / f"epoch_{e:04d}.safetensors", {"epoch": str(e)})
    save_model(model, run / "model.safetensors", {"epoch": str(len(accs) - 1)})
    (run / "config.json").write_text(json.dumps({"arch": "smallcnn", "norm": "bn", "seed": 0}))
    lines = ["epoch,clean_acc,ligs"] + [f"{i},{a},{g}" for i, (a, g) in enumerate(zip(accs, ligs, strict=True))]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_early_stop_selection_by_epoch_and_criterion(tmp_path):
    accs, ligs = [0.1, 0.5, 0.85, 0.9, 0.95], [1.0, 0.95, 0.9, 0.8, 0.7]
    run = _fake_run(tmp_path, accs, ligs, kept=[0, 1, 2, 3, 4])
    assert EarlyStop.parse("epoch=2").select(run) == 2
    assert EarlyStop.parse("frac=0.9").select(run) == 3  # first epoch >= 0.9 * 0.95
    assert EarlyStop.parse("ligs=0.8").select(run) == 2  # highest LIGS among clean acc >= 0.8
    assert EarlyStop.parse("frac=0.5").select(run) == 1  # epoch 0 never chosen by a criterion
    sparse = _fake_run(tmp_path / "sparse", accs, ligs, kept=[0, 2, 4])
    assert EarlyStop.parse("frac=0.9").select(sparse) == 4  # epoch 3 was not kept
    with pytest.raises(NrflabError, match="not kept"):
        EarlyStop.parse("epoch=3").select(sparse)
    with pytest.raises(NrflabError, match="bad early-stop"):
        EarlyStop.parse("best")


def test_twin_finding_and_boosts(tmp_path, zoo, data):
    assert find_no_bn_twin(zoo["bn0"], [zoo["bn0"].parent]) == zoo["none0"]
    assert find_no_bn_twin(zoo["none0"], []) == zoo["none0"]
    with pytest.raises(NrflabError, match="no no-BN twin"):
        find_no_bn_twin(zoo["bn1"], [zoo["bn0"].parent])  # seed 1 has no no-BN run
    config = TransferConfig.build(
        sources=[zoo["bn0"]],
        targets=[zoo["bn1"], zoo["none0"]],
        attack=ATTACK,
        boost="both",
        early_stop="epoch=1",
        out=tmp_path,
    )
    boosts = run_transfer(config, data=data, progress=False).boosts
    assert [(b.boost, b.model) for b in boosts] == [
        ("none", "bn_s0"),
        ("no-bn-twin", "none_s0"),
        ("early-stop", "bn_s0@e1"),
        ("both", "none_s0@e1"),
    ]
    assert all(b.targets == 1 for b in boosts)  # the twin's own run is not a common target
    assert "Boosts" in (tmp_path / "summary.md").read_text()


def test_user_twins_replace_the_search(tmp_path, zoo, data, capsys):
    """--twin A=B: B is A's twin even where the search finds another (a run) or none (a model file)."""
    common = dict(attack=ATTACK, boost="no-bn-twin", limit=16, out=tmp_path / "a")
    twins = [f"{zoo['bn0']}={zoo['bn1']}"]
    config = TransferConfig.build(sources=[zoo["bn0"]], targets=[zoo["none0"]], twins=twins, **common)
    boosts = run_transfer(config, data=data, progress=False).boosts
    assert [(b.boost, b.model) for b in boosts] == [("none", "bn_s0"), ("no-bn-twin", "bn_s1")]
    twin_file = RunDir(zoo["none0"]).model_path
    args = ["transfer", "-s", f"{zoo['bn1']}/", "-t", str(zoo["bn0"]), "-d", TINY, "-a", ATTACK, "--limit", "16"]
    args += ["--boost", "no-bn-twin", "--twin", f"{zoo['bn1']}={twin_file}", "-o", str(tmp_path / "b"), "-q"]
    assert main(args) == 0, capsys.readouterr().err
    assert "on bn_s1: " in capsys.readouterr().out  # seed 1 has no no-BN run: only the given twin exists
    record = json.loads((tmp_path / "b" / "transfer.json").read_text())
    assert record["recipe"]["twins"] == [f"{zoo['bn1']}={twin_file}"]


def test_bad_inputs_raise_one_clear_error(tmp_path, data):
    four = NamedModel("four", create_model("smallcnn", "bn", 4, 1, width=0.25, input_shape=(1, 8, 8), seed=0))
    three = NamedModel("three", create_model("smallcnn", "bn", 3, 1, width=0.25, input_shape=(1, 8, 8), seed=0))
    big = NamedModel("big", create_model("smallcnn", "bn", 4, 1, width=0.25, input_shape=(1, 28, 28), seed=0))
    with pytest.raises(NrflabError, match="no source"):
        transfer_matrix([], [four], data, ATTACK, tmp_path / "a", progress=False)
    with pytest.raises(NrflabError, match="3 classes"):
        transfer_matrix([four], [three], data, ATTACK, tmp_path / "b", progress=False)
    with pytest.raises(NrflabError, match="expects inputs of shape"):
        transfer_matrix([big], [four], data, ATTACK, tmp_path / "c", progress=False)
    with pytest.raises(NrflabError, match="unique"):
        transfer_matrix([four, four], [four], data, ATTACK, tmp_path / "d", progress=False)


def test_cli_writes_outputs_and_resumes(tmp_path, zoo, capsys):
    out = tmp_path / "cli"
    args = [
        "transfer",
        "--sources",
        f"{zoo['bn0']},{zoo['none0']}",
        "--targets",
        str(zoo["bn1"]),
        "--dataset",
        TINY,
        "--attack",
        "pgd-linf",
        "--eps",
        "8/255",
        "--steps",
        "3",
        "--limit",
        "32",
        "--out",
        str(out),
        "-q",
    ]
    assert main(args) == 0
    header = (out / "pairs.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["transfer_success_ci_lo", "transfer_success_ci_hi"]  # one number a cell
    assert "eps=8/255" in (out / "summary.md").read_text()
    for name in (
        "transfer.json",
        "pairs.csv",
        "matrix_transfer_success.csv",
        "heatmap_transfer_success.png",
        "heatmap_target_accuracy.svg",
        "summary.md",
    ):
        assert (out / name).is_file(), name
    mtime = (out / "adversarial" / "bn_s0.safetensors").stat().st_mtime_ns
    assert main(args + ["--resume"]) == 0
    assert (out / "adversarial" / "bn_s0.safetensors").stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert main(args) == 2  # results exist, no --resume
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--resume" in err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--targets", "RUN"], "no sources"),
        (["--sources", "RUN", "--targets", "RUN", "--seed", str(2**32)], "--seed"),
        (["--sources", "RUN", "--targets", "RUN", "--seed", str(2**63)], "4294967295"),
        (["--sources", "RUN", "--targets", "RUN", "--device", "mps"], "mps"),
        (["--sources", "RUN", "--targets", "RUN", "--attack", "pgd-linf:eps=1e999"], "eps"),
        (["--sources", "RUN@epoch=9", "--targets", "RUN"], "was not kept"),
        (
            ["--sources", "RUN", "--targets", "RUN", "--source-epoch", "1", "--boost", "early-stop"],
            "--early-stop epoch=K",
        ),
        (["--sources", "RUN", "--targets", "RUN", "--boost", "magic"], "unknown boost"),
        (["-s", "RUN", "-t", "RUN", "--boost", "no-bn-twin", "--twin", "other=RUN"], "other is not among the sources"),
        (["-s", "RUN", "-t", "RUN", "--boost", "no-bn-twin", "--twin", "RUN=/no/such/twin.pt"], "/no/such/twin.pt"),
        (["-s", "RUN", "-t", "RUN", "--twin", "RUN=RUN"], "needs --boost no-bn-twin or both"),
        (["-s", "RUN", "-t", "RUN", "--boost", "both", "--twin", "RUN"], "give SOURCE=TWIN"),
    ],
)
def test_cli_bad_inputs(tmp_path, zoo, capsys, extra, message):
    extra = [e.replace("RUN", str(zoo["bn0"])) for e in extra]
    code = main(["transfer", *extra, "--dataset", TINY, "--eps", "0.1", "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_cli_class_count_mismatch(tmp_path, zoo, capsys):
    other = save_model(
        create_model("smallcnn", "bn", 3, 1, width=0.25, input_shape=(1, 8, 8), seed=0), tmp_path / "m3.safetensors"
    )
    code = main(
        [
            "transfer",
            "--sources",
            str(zoo["bn0"]),
            "--targets",
            str(other),
            "--dataset",
            TINY,
            "--eps",
            "0.1",
            "--out",
            str(tmp_path / "o"),
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "classes" in err[0]


def test_cli_recipe(tmp_path, zoo):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"sources: [{zoo['bn0']}]\ntargets: [{zoo['bn1']}]\ndataset: {TINY}\nattack: pgd-linf\n"
        f"eps: 0.1\nsteps: 2\nlimit: 16\nout: {tmp_path / 'r'}\n"
    )
    assert main(["transfer", "--recipe", str(recipe), "-q"]) == 0
    record = json.loads((tmp_path / "r" / "transfer.json").read_text())
    assert record["settings"]["num_samples"] == 16 and record["settings"]["attack"].startswith("pgd-linf:eps=0.1")


@pytest.mark.slow  # an experiment end to end at its quick scale: with the slow tests in CI
def test_experiment_quick(tmp_path):
    from nrflab.experiments.reproduce import run_experiment
    from nrflab.runs.jobs import Execution

    sections = run_experiment("transfer", tmp_path, scale="quick", execution=Execution(progress=False))
    assert len(sections) == 3
    assert "| source group |" in sections[0].markdown and sections[0].images
    assert all(Path(p).is_file() for s in sections for p in s.images)
    assert sections[2].markdown.count("- ") >= 2 and "this run" in sections[2].markdown
    # Two epochs on 1,000 images: the no-BN sources stay at chance, so the guard voids both claims (before the
    # two seeds would leave them not tested).
    verdicts = sections[2].verdicts
    assert [(v.claim_id, v.outcome) for v in verdicts] == [("transfer.no_bn", "void"), ("transfer.early_stop", "void")]
    assert all("smallcnn/none seed" in v.reason for v in verdicts) and "(epoch 1 vs epoch 2)" in verdicts[1].claim


# ---------------------------------------------------------------------------------------------
# The config: one-line errors naming the key, before any work


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"sources": ["a"], "targets": ["b"], "limt": 3}, "unknown key 'limt'"),
        ({"sources": ["a"], "targets": ["b"], "limit": "abc"}, "limit: Input should be a valid integer"),
        ({"sources": ["a"], "targets": ["b"], "targeted": "yes"}, "targeted: Input should be a valid boolean"),
        ({"sources": ["a"], "targets": ["b"], "seed": 2**32}, "seed: Input should be less than or equal to 4294967295"),
        ({"sources": ["a"], "targets": ["b"], "seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"sources": ["a"], "targets": ["b"], "boost": "magic"}, "unknown boost 'magic'"),
        ({"sources": ["a"], "targets": ["b"], "early_stop": "best"}, "early_stop: bad early-stop rule"),
        ({"sources": ["a"], "targets": ["b"], "eps": 0.1, "attack": "pgd-linf:eps=0.2"}, "full spec"),
        ({"targets": ["b"]}, "no sources given"),
    ],
)
def test_config_errors_are_one_line_and_name_the_key(fields, message):
    with pytest.raises(NrflabError, match=message) as info:
        TransferConfig.build(eps=fields.pop("eps", 0.1), **fields)
    assert "\n" not in str(info.value)


def test_config_resolves_attack_and_options():
    cfg = TransferConfig.build(sources="a", targets=["b"], attack="pgd-l2", eps=0.5, steps=3, mean=[0.5], std=[0.25])
    assert cfg.sources == ["a"] and cfg.attack_spec().to_string() == "pgd-l2:eps=0.5,steps=3"
    assert cfg.model_options().mean == (0.5,) and not cfg.is_targeted
    assert TransferConfig.build(sources=["a"], targets=["b"], attack="fgsm:eps=0.1,targeted=1").is_targeted


def test_cli_recipe_errors_name_the_key_before_any_work(tmp_path, zoo, capsys):
    out = tmp_path / "o"
    for extra, message in (
        ("limt: 3", "unknown key 'limt'"),
        ("limit: abc", "limit: Input should be a valid integer"),
        (f"seed: {2**63}", "seed: Input should be less than or equal to 4294967295"),
    ):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"sources: [{zoo['bn0']}]\ntargets: [{zoo['bn1']}]\ndataset: {TINY}\neps: 0.1\n{extra}\n")
        assert main(["transfer", "--recipe", str(recipe), "--out", str(out), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: recipe {recipe}") and message in err[0], err
        assert not out.exists()


# ---------------------------------------------------------------------------------------------
# The output directory: validate before writing, one writer, overwrite that keeps the old results


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE
    }


class ExplodingFactory:
    """An attack factory whose attack fails at the first batch (a job that dies before its first result)."""

    def __call__(self, model: nn.Module) -> Attack:
        class Boom(MarkAttack):
            def _perturb(self, x, y):
                raise RuntimeError("boom")

        return Boom(model, eps=math.inf)


def test_failed_transfer_leaves_no_manifest_and_rerun_needs_no_overwrite(tmp_path, zoo, capsys):
    out = tmp_path / "o"
    other = save_model(
        create_model("smallcnn", "bn", 3, 1, width=0.25, input_shape=(1, 8, 8), seed=0), tmp_path / "m3.safetensors"
    )
    base = [
        "transfer",
        "--sources",
        str(zoo["bn0"]),
        "--dataset",
        TINY,
        "--eps",
        "0.1",
        "--steps",
        "2",
        "--limit",
        "8",
        "--out",
        str(out),
        "-q",
    ]
    assert main([*base, "--targets", str(other)]) == 2  # fails validation: nothing written
    assert "classes" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(RuntimeError, match="boom"):  # fails while crafting: no result, so no manifest
        transfer_matrix(
            [NamedModel("src", SOURCE)],
            [NamedModel("tgt", TARGET)],
            _id_data(),
            ExplodingFactory(),
            tmp_path / "lib",
            attack_name="mark",
            progress=False,
        )
    assert _files(tmp_path / "lib") == {}
    transfer_matrix(
        [NamedModel("src", SOURCE)],
        [NamedModel("tgt", TARGET)],
        _id_data(),
        CountingFactory(),
        tmp_path / "lib",
        attack_name="mark",
        progress=False,
    )
    assert main([*base, "--targets", str(zoo["bn1"])]) == 0  # the corrected rerun, without --overwrite
    assert (out / "transfer_settings.json").is_file() and (out / "transfer.json").is_file()


def test_out_that_is_an_input_is_refused(tmp_path, zoo, capsys):
    built = tmp_path / "built"
    built.mkdir()
    (built / "dataset.json").write_text("{}")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    before = _files(zoo["bn0"])
    for out, message in (
        (zoo["bn0"], "training run directory"),
        (zoo["bn0"] / "model.safetensors", "model, checkpoint"),
        (zoo["bn0"] / "checkpoints" / "epoch_0001.safetensors", "model, checkpoint"),
        (built, "built dataset"),
        (foreign, "not empty and holds no transfer results"),
    ):
        code = main(
            [
                "transfer",
                "--sources",
                str(zoo["bn0"]),
                "--targets",
                str(zoo["bn1"]),
                "--dataset",
                TINY,
                "--eps",
                "0.1",
                "--out",
                str(out),
                "-q",
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (out, err)
    assert _files(zoo["bn0"]) == before
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_overwrite_restores_old_results_when_the_new_job_fails_first(tmp_path):
    sources, targets = [NamedModel("src", SOURCE)], [NamedModel("tgt", TARGET)]
    transfer_matrix(sources, targets, _id_data(), CountingFactory(), tmp_path, attack_name="mark", progress=False)
    before = _files(tmp_path)
    assert "transfer_settings.json" in before and len(before) == 3
    with pytest.raises(RuntimeError, match="boom"):
        transfer_matrix(
            sources,
            targets,
            _id_data(),
            ExplodingFactory(),
            tmp_path,
            attack_name="mark-v2",
            overwrite=True,
            progress=False,
        )
    assert _files(tmp_path) == before  # byte for byte, and no stash left behind
    assert not any(p.name.startswith(".nrflab-previous") for p in tmp_path.iterdir())
    again = CountingFactory()
    transfer_matrix(
        sources, targets, _id_data(), again, tmp_path, attack_name="mark-v2", overwrite=True, progress=False
    )
    assert again.calls == 1 and json.loads((tmp_path / "transfer_settings.json").read_text())["attack"] == "mark-v2"


def _hold_lock(directory: str, held, done) -> None:
    from nrflab.runs.rundir import DirLock

    lock = DirLock.acquire(directory, what="transfer directory")
    held.set()
    done.wait(30)
    lock.release()


def test_second_writer_gets_the_lock_error(tmp_path, zoo, capsys):
    import multiprocessing

    out = tmp_path / "o"
    ctx = multiprocessing.get_context("fork")
    held, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(out), held, done))
    holder.start()
    args = [
        "transfer",
        "--sources",
        str(zoo["bn0"]),
        "--targets",
        str(zoo["bn1"]),
        "--dataset",
        TINY,
        "--eps",
        "0.1",
        "--steps",
        "2",
        "--limit",
        "8",
        "--out",
        str(out),
        "-q",
    ]
    try:
        assert held.wait(30)
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"another nrflab process (pid {holder.pid})" in err[0], err
        assert not (out / "transfer_settings.json").exists()
    finally:
        done.set()
        holder.join(30)
    assert main(args) == 0  # the lock is free again


# ---------------------------------------------------------------------------------------------
# Typed results


class _NoScan(dict):
    """A pairs mapping that fails if anyone iterates it: lookups must go by key."""

    def __iter__(self):
        raise AssertionError("pairs were scanned")

    def values(self):
        raise AssertionError("pairs were scanned")

    def items(self):
        raise AssertionError("pairs were scanned")


def test_pair_lookup_is_by_key(tmp_path):
    res = transfer_matrix(
        [NamedModel("src", SOURCE), NamedModel("src2", BROKEN)],
        [NamedModel("tgt", TARGET), NamedModel("broken", BROKEN)],
        _id_data(),
        lambda m: MarkAttack(m, eps=math.inf),
        tmp_path,
        attack_name="mark",
        progress=False,
    )
    assert set(res.pairs) == {("src", "tgt"), ("src", "broken"), ("src2", "tgt"), ("src2", "broken")}
    keyed = replace(res, pairs=_NoScan(res.pairs))
    assert keyed.pair("src", "tgt") is res.pair("src", "tgt")
    assert keyed.matrix("target_accuracy") == res.matrix("target_accuracy")
    assert [r.targets for r in keyed.per_source()] == [2, 2]
    with pytest.raises(KeyError, match=re.escape("('src', 'nope')")):
        keyed.pair("src", "nope")


def _constructed(successes: dict[str, float]) -> TransferResult:
    """A matrix with one target per source whose transfer success is given (100 eligible examples)."""
    sources, pairs = [], {}
    for name, rate in successes.items():
        arch, norm, _ = name.split("_")
        group = f"{arch}/{norm}"
        sources.append(SourceFacts(ModelInfo(name, group, name), 1.0, 100, 100, 1.0, (0.96, 1.0), 0.0))
        k = round(100 * rate)
        pairs[(name, "t")] = PairResult(
            name,
            "t",
            group,
            "other/bn",
            False,
            PairNumbers.count(clean_correct=100, adv_correct=100 - k, total=100, eligible=100, successes=k),
        )
    target = TargetFacts(ModelInfo("t", "other/bn", "t"), 1.0, 100)
    return TransferResult(TransferSettings("x", False, "none", 0, 100, "d"), tuple(sources), (target,), pairs)


def test_experiment_verdicts_follow_the_interval_rule():
    from nrflab.experiments.guard import check
    from nrflab.experiments.transfer_claims import EarlyVsFinal, SourceTwins, early_stop_claim, no_bn_claim
    from nrflab.experiments.transfer_sections import ZooRun, twins

    # twins reads each source's mean success over targets and pairs BN with no-BN of the same arch and seed.
    runs = {"cnn_bn_s0": 0.50, "cnn_none_s0": 0.60, "cnn_bn_s1": 0.50, "cnn_none_s1": 0.45}
    result = _constructed(runs)
    zoo, finals = [], []
    for name in runs:
        arch, norm, seed = name.split("_")
        zoo.append(ZooRun(Path(name), arch, norm, int(seed[1:])))
        finals.append(type("Ref", (), {"name": name})())
    pairs = twins(result, zoo, finals)
    assert [(t.arch, t.seed, t.bn, t.none) for t in pairs] == [("cnn", 0, 0.5, 0.6), ("cnn", 1, 0.5, 0.45)]
    assert (pairs[0].bn_on, pairs[0].none_on) == ((("t", 0.5),), (("t", 0.6),))  # the crossed cells, per target
    # Two seeds: reported, not tested (a claim about models needs three paired seeds).
    assert no_bn_claim(pairs, guard=check()).outcome == "not tested"
    more = [*pairs, SourceTwins("cnn", 2, 0.5, 0.55)]
    verdict = no_bn_claim(more, guard=check())
    assert verdict.outcome == "inconclusive" and verdict.low < 0 < verdict.high
    assert verdict.difference == pytest.approx(0.1 / 3)  # (+10 - 5 + 5) / 3 points
    clear = [SourceTwins("cnn", s, 0.5, 0.6 + 0.01 * s) for s in range(3)]
    assert no_bn_claim(clear, guard=check()).outcome == "agrees"
    # The early-stop gain of a past report, now one run per seed: mean -2.0 points, interval across zero.
    gains = [-0.056, 0.016, -0.04, 0.0]
    rows = [EarlyVsFinal(f"r{i}", "g", 1, 2, 0.5 + g, 0.5, i) for i, g in enumerate(gains)]
    verdict = early_stop_claim(rows, guard=check(), early="epoch 1")
    assert verdict.difference == pytest.approx(-0.02) and verdict.low < 0 < verdict.high
    assert verdict.outcome == "inconclusive"
    worse = [EarlyVsFinal(f"r{i}", "g", 1, 2, 0.4 + d, 0.5, i) for i, d in enumerate((0.0, 0.01, -0.01))]
    assert early_stop_claim(worse, guard=check(), early="epoch 1").outcome == "disagrees"
    assert early_stop_claim(rows[:1], guard=check(), early="epoch 1").outcome == "not tested"  # one seed


# ---------------------------------------------------------------------------------------------
# Models from outside nrflab


def make_tiny_target() -> nn.Module:
    """A factory for the tests: a fresh 4-class smallcnn for 8x8 inputs."""
    return create_model("smallcnn", "bn", 4, 1, width=0.25, input_shape=(1, 8, 8), seed=3)


def test_outside_models_enter_the_matrix(tmp_path, zoo, data, capsys):
    model = create_model("smallcnn", "none", 4, 1, width=0.25, input_shape=(1, 8, 8), seed=2)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))  # no nrflab config
    ref = resolve_model(plain)
    assert ref.module is not None and ref.name == "plain" and ref.group == "smallcnn/none"
    assert resolve_model(plain).fingerprint == ref.fingerprint and len(ref.fingerprint) >= 16
    factory = resolve_model("test_transfer:make_tiny_target")
    assert factory.group == "smallcnn/bn" and factory.origin == "test_transfer:make_tiny_target"
    res = transfer_matrix([zoo["bn0"]], [ref, factory], data, ATTACK, tmp_path / "o", limit=8, progress=False)
    assert [t.name for t in res.targets] == ["plain", "test_transfer:make_tiny_target"]
    out = tmp_path / "cli"
    assert (
        main(
            [
                "transfer",
                "-s",
                str(zoo["bn0"]),
                "-t",
                str(plain),
                "--arch",
                "smallcnn",
                "--norm",
                "none",
                "--num-classes",
                "4",
                "--dataset",
                TINY,
                "--eps",
                "0.1",
                "--steps",
                "2",
                "--limit",
                "8",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert json.loads((out / "transfer.json").read_text())["targets"][0]["name"] == "plain"
    capsys.readouterr()
    assert (
        main(
            [
                "transfer",
                "-s",
                str(zoo["bn0"]),
                "-t",
                str(plain),
                "--arch",
                "vgg11",
                "--dataset",
                TINY,
                "--eps",
                "0.1",
                "--out",
                str(tmp_path / "bad"),
                "-q",
            ]
        )
        == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_the_transfer_recipe_is_a_schema_like_every_other_settings_object() -> None:
    """One settings base: frozen, unknown keys refused, no NaN; ``parse`` words its refusals as the command does."""
    from pydantic import ValidationError

    from nrflab.core.schema import Schema
    from nrflab.transfer import TransferConfig

    config = TransferConfig.parse({"sources": "a.safetensors", "targets": ["b"], "eps": 0.1})
    assert isinstance(config, Schema) and config.sources == ["a.safetensors"]
    with pytest.raises(ValidationError):
        config.eps = 0.2  # type: ignore[misc]  # frozen
    with pytest.raises(NrflabError, match=r"^transfer settings: unknown key 'epz'"):
        TransferConfig.parse({"sources": ["a"], "targets": ["b"], "epz": 1})
    with pytest.raises(NrflabError, match=r"^no sources given"):
        TransferConfig.parse({"targets": ["b"]})
    with pytest.raises(NrflabError, match="finite"):
        TransferConfig.parse({"sources": ["a"], "targets": ["b"], "eps": float("nan")})

"""The experiment engine: registry and presets, settings overrides and their errors, the task graph, the
validity guard and the verdicts it voids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nrflab.core.errors import NrflabError
from nrflab.experiments import engine
from nrflab.experiments.engine import CallTask, TrainTask, merge_tasks, topological_order
from nrflab.experiments.evidence import Outcomes, compare
from nrflab.experiments.guard import Health, verdict, void_reason
from nrflab.experiments.overrides import Overrides, check_assignments_used, parse_assignment, read_recipe, settings_for
from nrflab.experiments.registry import ALIASES, experiments, get_spec, select
from nrflab.experiments.reproduce import plan_chain, recipe_text
from nrflab.experiments.spec import Stage
from nrflab.runs.executor import execute
from nrflab.runs.jobs import Execution
from nrflab.runs.rundir import RunDir
from nrflab.training import TrainConfig

RECIPES = Path(__file__).resolve().parents[1] / "src" / "nrflab" / "recipes"
PAPER_CHAIN = ("core", "adversarial", "family", "corruptions", "features", "transfer")


# ---------------------------------------------------------------------------------------------------- registry


def test_every_experiment_of_the_paper_is_registered_in_chain_order():
    names = list(experiments())
    assert names[: len(PAPER_CHAIN)] == list(PAPER_CHAIN)
    assert set(names) <= {*PAPER_CHAIN, "planted"}
    assert [s.name for s in select("norms")] == list(ALIASES["norms"])
    assert [s.name for s in select("features,core")] == ["core", "features"]  # chain order, not the user's
    with pytest.raises(NrflabError, match="unknown experiment 'nope'; choose one of core"):
        select("core,nope")


@pytest.mark.parametrize("name", list(experiments()))
def test_every_preset_is_valid_and_plans_valid_recipes(name, tmp_path):
    spec = get_spec(name)
    assert {"cpu", "paper", "quick"} <= set(spec.presets)
    for scale, preset in spec.presets.items():
        again = spec.settings_type.model_validate(preset.model_dump())  # round trip through plain data
        assert again == preset, scale
        tasks = spec.plan(preset, spec.home_dir(tmp_path / scale))
        assert tasks, (name, scale)
        for t in tasks:
            if isinstance(t, TrainTask):
                TrainConfig.model_validate(dict(t.config))  # every run's recipe is complete and valid
        topological_order(merge_tasks(tasks))


@pytest.mark.parametrize("name", experiments())
def test_recipe_files_hold_the_presets(name):
    """recipes/<experiment>/<scale>.yaml are the presets written out; reading one gives the preset back."""
    spec = get_spec(name)
    for scale in ("cpu", "paper"):
        path = RECIPES / name / f"{scale}.yaml"
        recipe = read_recipe(path)
        got = settings_for(spec, Overrides(scale="quick", recipes=(recipe,)))
        assert got == spec.presets[scale], f"{path} is stale: regenerate it with scripts/write_recipes.py"


def test_paper_presets_carry_the_official_settings():
    core = get_spec("core").presets["paper"]
    assert (core.dataset, core.arch, core.twins.epochs, core.twins.lr, core.twins.milestones) == (
        "cifar10",
        "resnet18",
        150,
        0.1,
        [50, 100],
    )
    feats = get_spec("features").presets["paper"]
    assert (feats.build.nrf_eps, feats.build.nrf_steps, feats.build.nrf_step_size) == (0.5, 100, 0.1)
    assert (feats.build.inv_steps, feats.build.inv_step_size, feats.build.fake_relu) == (1000, 0.1, True)
    assert {k: v.lr for k, v in feats.per_set.items()} == {
        "d_r": 0.01,
        "d_rand": 0.01,
        "d_det": 0.1,
        "conflicting": 0.1,
    }
    adv = get_spec("adversarial").presets["paper"].adversarial
    assert (adv.adv_train, adv.adv_eps, adv.adv_steps, adv.adv_step_size, adv.attack_mode) == (
        "targeted-l2",
        0.5,
        7,
        0.1,
        "train",
    )


# ---------------------------------------------------------------------------------------------------- overrides


def test_common_flags_set_and_epochs_reach_every_stage():
    spec = get_spec("features")
    s = settings_for(
        spec,
        Overrides(
            scale="paper",
            dataset="imagefolder:root=/data/x",
            data_root="/d",
            arch="vgg11",
            width=0.5,
            device="cuda",
            epochs=2,
            seeds=(0, 1),
            assignments=("twins.lr=0.05", "build.limit=null", "per_set.d_r.augment=false"),
        ),
    )
    assert (s.dataset, s.data_root, s.arch, s.width, s.device, s.seeds) == (
        "imagefolder:root=/data/x",
        "/d",
        "vgg11",
        0.5,
        "cuda",
        [0, 1],
    )
    assert (s.source.epochs, s.robust_source.epochs, s.twins.epochs) == (2, 2, 2)
    assert s.twins.lr == 0.05 and s.build.limit is None and s.per_set["d_r"].augment is False
    assert s.per_set["d_r"].lr == 0.01  # merged, not replaced
    cfg = s.train_config(s.twins, norm="bn", seed=1)
    assert (cfg.arch, cfg.width, cfg.dataset, cfg.data_root, cfg.lr) == (
        "vgg11",
        0.5,
        "imagefolder:root=/data/x",
        "/d",
        0.05,
    )


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("twins.epochz=3", r"experiment core: unknown setting twins\.epochz \(known: .*epochs.*\)"),
        ("twins.epochs=many", r"experiment core: setting twins\.epochs: Input should be a valid integer.*'many'"),
        ("width=-1", r"experiment core: setting width: Input should be greater than 0"),
        ("nope=1", r"--set nope=1: experiment 'core' has no setting 'nope' \(known: dataset, "),
        ("twins", r"--set needs KEY=VALUE with a dotted key"),
        ("seeds=[]", r"setting seeds: List should have at least 1 item"),
    ],
)
def test_bad_settings_are_one_line_errors(assignment, message):
    with pytest.raises(NrflabError, match=message) as info:
        settings_for(get_spec("core"), Overrides(assignments=(assignment,)))
    assert "\n" not in str(info.value)


def test_values_are_read_as_yaml_scalars():
    assert parse_assignment("a.b=40").value == 40 and parse_assignment("a=0.1").value == 0.1
    assert parse_assignment("a=null").value is None and parse_assignment("a=[1, 2]").value == [1, 2]
    assert parse_assignment("twins.eval-size=5").keys == ("twins", "eval_size")
    spec = "pgd-l2:eps=1.0,step=0.5,steps=2"
    assert parse_assignment(f'twins.eval_attacks=["{spec}"]').value == [spec]


def test_flags_an_experiment_lacks_are_errors_in_experiment_and_skipped_in_reproduce():
    spec = get_spec("core")
    assert settings_for(spec, Overrides(epochs=3)).twins.epochs == 3
    check_assignments_used(
        [get_spec("core"), get_spec("features")],
        [parse_assignment("features.build.limit=10"), parse_assignment("twins.epochs=2")],
    )
    with pytest.raises(NrflabError, match=r"--set foo\.x=1: unknown setting 'foo'"):
        check_assignments_used([spec], [parse_assignment("foo.x=1")])
    chain = ["core", "features"]
    core = settings_for(
        spec, Overrides(assignments=("features.build.limit=10", "core.twins.epochs=3")), strict=False, chain=chain
    )
    assert core.twins.epochs == 3


def test_recipe_files_and_their_errors(tmp_path):
    good = tmp_path / "r.yaml"
    good.write_text(yaml.safe_dump({"experiment": "core", "scale": "paper", "settings": {"twins": {"epochs": 3}}}))
    s = settings_for(get_spec("core"), Overrides(scale="cpu", recipes=(read_recipe(good),)))
    assert s.dataset == "cifar10" and s.twins.epochs == 3 and s.twins.lr == 0.1  # over the recipe's scale
    s = settings_for(get_spec("core"), Overrides(recipes=(read_recipe(good),), epochs=5))
    assert s.twins.epochs == 5  # flags win over recipes
    for data, message in [
        ({"settings": {}}, "names no experiment"),
        ({"experiment": "core", "scale": "huge"}, "unknown scale 'huge'"),
        ({"experiment": "core", "colour": 1}, r"unknown key\(s\) colour"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(data))
        with pytest.raises(NrflabError, match=message):
            read_recipe(bad)
    # A written recipe reads back to the same settings.
    spec = get_spec("features")
    preset = spec.presets["paper"]
    (tmp_path / "f.yaml").write_text(recipe_text(spec, preset, "paper"))
    assert settings_for(spec, Overrides(recipes=(read_recipe(tmp_path / "f.yaml"),))) == preset


# ---------------------------------------------------------------------------------------------------- the task graph


def _train(key: str, after: tuple[str, ...] = (), epochs: int = 1) -> TrainTask:
    return TrainTask(key, {"dataset": "mnist5k", "epochs": epochs}, after=after)


def test_tasks_are_merged_ordered_and_conflicts_refused():
    a, b, c = _train("a"), _train("b", after=("a",)), _train("c", after=("a", "b"))
    assert [t.key for t in topological_order([c, b, a])] == ["a", "b", "c"]
    assert len(merge_tasks([a, b, _train("a")])) == 2  # the same run planned twice runs once
    with pytest.raises(NrflabError, match="two experiments plan a differently .*epochs: 1 -> 2"):
        merge_tasks([a, _train("a", epochs=2)])
    with pytest.raises(NrflabError, match="depends on x, which no experiment plans"):
        merge_tasks([_train("y", after=("x",))])
    with pytest.raises(NrflabError, match="cycle: "):
        topological_order([_train("p", after=("q",)), _train("q", after=("p",))])


def _ok(**kwargs):
    return kwargs["value"]


def _boom(**kwargs):
    raise NrflabError("broken on purpose")


def test_execute_runs_dependencies_first_and_skips_dependents_of_failures(monkeypatch):
    calls = []

    def record(**kwargs):
        calls.append(kwargs["value"])
        return kwargs["value"]

    monkeypatch.setattr(engine, "_resolve", lambda target: {"ok": record, "boom": _boom}[target])
    tasks = [
        CallTask("t3", "ok", {"value": 3}, after=("t1", "t2")),
        CallTask("t1", "ok", {"value": 1}),
        CallTask("t2", "boom"),
        CallTask("t4", "ok", {"value": 4}, after=("t1",)),
    ]
    results = execute(tasks, Execution(progress=False))
    assert calls == [1, 4]
    assert results["t1"].status == "finished" and results["t1"].value == 1
    assert results["t2"].status == "failed" and results["t2"].error == "broken on purpose"
    assert results["t3"].status == "skipped" and "t2" in results["t3"].error
    with pytest.raises(NrflabError, match="workers must be an integer >= 1"):
        execute(tasks, Execution(workers=0))
    with pytest.raises(NrflabError, match="unknown backend 'slurm'"):
        execute(tasks, Execution(backend="slurm"))  # type: ignore[arg-type]


def test_experiments_sharing_a_home_share_their_runs(tmp_path):
    specs = select("norms")
    plans = plan_chain([(s, s.presets["quick"]) for s in specs], tmp_path)
    runs = [t.key for tasks in plans.values() for t in tasks if isinstance(t, TrainTask)]
    assert len(set(runs)) == len(runs) // 3 == 4  # three experiments, one zoo
    with pytest.raises(NrflabError, match="two experiments plan .* differently"):
        other = specs[1].presets["quick"].model_copy(update={"standard": Stage(epochs=3)})
        plan_chain([(specs[0], specs[0].presets["quick"]), (specs[1], other)], tmp_path)


def test_a_directory_with_another_recipe_is_refused_before_anything_runs(tmp_path):
    from nrflab.training import make_config, train

    cfg = make_config(
        dataset="digits", arch="smallcnn", width=0.25, epochs=1, eval_size=16, eval_attacks=[], ligs=False, device="cpu"
    )
    train(cfg, tmp_path / "run", progress=False)
    same = TrainTask(str(tmp_path / "run"), cfg.model_dump())
    assert same.done()
    run = RunDir(tmp_path / "run")  # the one rule every reuse check asks
    assert run.is_finished_with(cfg) and not run.is_finished_with(cfg.model_copy(update={"epochs": 2}))
    assert not RunDir(tmp_path / "none").is_finished_with(cfg)
    other = TrainTask(str(tmp_path / "run"), {**cfg.model_dump(), "epochs": 2})
    with pytest.raises(NrflabError, match=r"holds a run of another recipe \(epochs: 1 -> 2\)"):
        other.check()
    subset = TrainTask(str(tmp_path / "run"), cfg.model_dump(), train_size=10)
    with pytest.raises(NrflabError, match="holds a run trained on .* images, not 10"):
        subset.check()


# ---------------------------------------------------------------------------------------------------- guard and verdicts


def _health(
    name: str, *, train_acc: float = 0.95, clean: float = 0.9, share: float = 0.12, finite: bool = True
) -> Health:
    return Health(name, 10, train_acc, clean, 3, share, finite)


def test_the_guard_names_every_reason_a_claim_cannot_be_judged():
    good, other = _health("BN twin"), _health("no BN twin", clean=0.85)
    assert void_reason(learners=[good, other], comparable=[([good], [other])]) is None
    assert "did not train (training accuracy 12.0 %, chance 10.0 %)" in void_reason(
        learners=[_health("x", train_acc=0.12, clean=0.11)]
    )
    assert "collapsed to one class on clean test images, paper protocol (class 3 takes 97.0 %" in void_reason(
        learners=[_health("x", share=0.97)]
    )
    assert "diverged" in void_reason(others=[_health("x", finite=False)])
    assert void_reason(others=[_health("x", train_acc=0.1, share=1.0)]) is None  # its failure may be the claim
    assert "usefulness very unequal (a 90.0 % vs b 40.0 %" in void_reason(
        comparable=[([_health("a")], [_health("b", clean=0.4)])]
    )


@given(st.lists(st.floats(-1, 1), min_size=3, max_size=12), st.floats(-1, 1))
def test_verdicts_follow_the_one_rule(diffs, shift):
    """One value per seed: the paired mean over seeds, and the rule on its interval."""
    seeds = list(range(len(diffs)))
    a = [torch.full((4,), d + shift, dtype=torch.float64) for d in diffs]
    b = [torch.zeros(4, dtype=torch.float64)] * len(diffs)
    c = compare(a, b, seeds=seeds)
    assert math.isclose(c.difference, sum(diffs) / len(diffs) + shift, abs_tol=1e-9)  # the paired mean
    assert c.n_seeds == len(diffs) and (not math.isfinite(c.low) or c.low <= c.difference + 1e-12 <= c.high + 2e-12)
    v = verdict("claim", c, "evidence.", protocol="p", seeds=seeds, void=None)
    if math.isfinite(c.low) and c.low > 0:
        assert v.outcome == "agrees"
    elif math.isfinite(c.high) and c.high < 0:
        assert v.outcome == "disagrees"
    else:
        assert v.outcome == "inconclusive"
    assert "Protocol" not in v.evidence and "seeds 0" in v.protocol and "paired seeds" in v.method
    void = verdict("claim", c, "evidence.", protocol="p", seeds=seeds, void="x did not learn")
    assert void.outcome == "void" and void.word == "void: x did not learn"


def test_intervals_pair_by_seed():
    per_seed = [torch.full((5,), v) for v in (0.5, 0.6, 0.7)]
    zeros = [torch.zeros(5)] * 3
    c = compare(per_seed, zeros, seeds=[0, 1, 2])
    assert "over 3 paired seeds (0, 1, 2)" in c.method and math.isclose(c.difference, 0.6, rel_tol=1e-6)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, 2) x sd 0.1 / sqrt(3): the per-seed t-interval
    assert math.isclose(c.low, 0.6 - half, rel_tol=1e-4) and math.isclose(c.high, 0.6 + half, rel_tol=1e-4)
    outcomes = Outcomes("paper", torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 3, 3]))
    assert outcomes.accuracy() == 0.5 and outcomes.accuracy(1, 4) == 0.5 and outcomes.top_class() == (3, 0.5)
    two = compare(per_seed[:2], zeros[:2], seeds=[0, 1])  # two seeds: never agree/disagree
    v = verdict("claim", two, "evidence.", protocol="p", seeds=[0, 1], void=None)
    assert v.outcome == "not tested" and v.reason.startswith("2 seeds; at least 3")


def test_an_untrainable_twin_makes_every_claim_void(tmp_path):
    """A twin trained with a learning rate too small to move it stays at chance: every claim that needs it
    is void, whatever the numbers say."""
    from nrflab.experiments.core import QUICK, SPEC
    from nrflab.experiments.reproduce import run_chain

    settings = QUICK.model_copy(
        update={
            "dataset": "digits",
            "twins": Stage(epochs=1, eval_size=64, lr=1e-7),
            "test_size": 100,
            "final_attacks": ["pgd-l2:eps=0.5,step=0.25,steps=2"],
        }
    )
    result = run_chain([(SPEC, settings)], tmp_path, Execution(progress=False))
    verdicts = result.sections[0].verdicts
    assert len(verdicts) == 4
    assert all(v.outcome == "void" and "did not train" in v.reason for v in verdicts), [v.word for v in verdicts]
    assert "is **void** (" in result.sections[0].markdown

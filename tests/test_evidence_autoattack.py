"""The experiments' final measurement with AutoAttack: its resumable state lives in the run directory, it can
run on a fixed seeded subset of the images (NaN elsewhere), and the per-threat ensemble is over that subset."""

from __future__ import annotations

import torch

from nrflab.core.seeds import seeded_subset
from nrflab.experiments.evidence import AUTOATTACK_SUBSET_SEED, measure, robust_under, strongest_note
from nrflab.measure.ensemble import Threat
from nrflab.models.checkpoint import save_model

PGD = "pgd-l2:eps=1.0,step=0.5,steps=2"
WEAK_PGD = "pgd-l2:eps=1.0,step=0.01,steps=1"  # leaves images for AutoAttack to attack
AA = "autoattack:version=custom,attacks=apgd-ce,norm=l2,eps=1.0,seed=0"
AA_LABEL = "autoattack-l2-apgd-ce_1"


def test_autoattack_keeps_its_state_in_the_run_directory_and_runs_on_the_subset(trained_model, test_batch, tmp_path):
    run = tmp_path / "run"
    save_model(trained_model, run)
    x, y = test_batch[0][:12], test_batch[1][:12]
    o = measure(run, x, y, attacks=[WEAK_PGD, AA], autoattack_size=5, device="cpu")
    states = sorted(run.glob("autoattack-*.pt"))
    assert len(states) == 1  # one resumable state file, in the run directory
    subset = seeded_subset(12, 5, seed=AUTOATTACK_SUBSET_SEED)
    assert subset is not None
    aa = o.robust[AA_LABEL]
    attacked = ~aa.isnan()
    assert int(attacked.sum()) == 5 and bool(attacked[subset].all())
    pgd = o.robust["pgd-l2_1"]
    assert pgd.dtype == torch.bool and pgd.shape == (12,)
    assert bool(pgd[subset].any())  # the weak PGD left something for AutoAttack
    assert not bool((aa[subset] > pgd[subset].float()).any())  # the cascade: never robust where PGD fooled it
    ensemble = robust_under(o, [WEAK_PGD, AA], Threat(norm="l2", eps=1.0))
    assert torch.equal(ensemble[subset], aa[subset]) and int(ensemble.isnan().sum()) == 7
    # a second measurement after the outcome cache is gone resumes from the state: the same per-image result
    for cache in run.glob("outcomes_*.safetensors"):
        cache.unlink()
    again = measure(run, x, y, attacks=[WEAK_PGD, AA], autoattack_size=5, device="cpu")
    assert torch.equal(again.robust[AA_LABEL].isnan(), aa.isnan())
    assert torch.equal(again.robust[AA_LABEL][subset], aa[subset])
    assert sorted(run.glob("autoattack-*.pt")) == states


def test_autoattack_attacks_only_what_the_threats_other_attacks_left(trained_model, test_batch, tmp_path, monkeypatch):
    """The cascade: AutoAttack sees exactly the images PGD of its threat left correctly classified; where PGD
    fooled the model its column is 0, as the threat's worst case is there."""
    import nrflab.measure.cascade as cascade

    seen: list[int] = []
    original = cascade.image_outcomes

    def spy(model, x, y, *, attacks, **kw):
        if any(label == AA_LABEL for label, _ in attacks):
            seen.append(int(y.shape[0]))
        return original(model, x, y, attacks=attacks, **kw)

    monkeypatch.setattr(cascade, "image_outcomes", spy)
    run = tmp_path / "run"
    save_model(trained_model, run)
    x, y = test_batch[0][:12], test_batch[1][:12]
    o = measure(run, x, y, attacks=[WEAK_PGD, AA], autoattack_size=None, device="cpu")
    assert seen == [int(o.robust["pgd-l2_1"].sum())]
    pgd = o.robust["pgd-l2_1"].float()
    assert torch.equal(o.robust[AA_LABEL].float()[pgd == 0], torch.zeros(int((pgd == 0).sum())))


def test_the_reports_note_names_the_threat_and_the_subset():
    note = strongest_note([PGD, AA], autoattack_size=200, n=500)
    assert "at L2 eps 1" in note and "subset of 200 of the 500 images" in note
    assert "subset" not in strongest_note([PGD, AA], autoattack_size=None, n=500)
    assert "cascade" in strongest_note([PGD, AA], autoattack_size=None, n=500)
    assert "subset" not in strongest_note([PGD], autoattack_size=200, n=500)  # no AutoAttack, no subset
    assert strongest_note(["none"], autoattack_size=None, n=5) == ""


def test_every_cpu_and_paper_preset_runs_autoattack_at_its_claims_threat():
    from nrflab.experiments import core, zoo
    from nrflab.experiments.evidence import claim_threat
    from nrflab.measure.ensemble import group_by_threat

    for preset, version in (
        (core.CPU, "custom"),
        (zoo.CPU, "custom"),
        (core.PAPER_SCALE, None),
        (zoo.PAPER_SCALE, None),
    ):
        attacks = core.final_attacks(preset) if isinstance(preset, core.CoreSettings) else zoo.final_attacks(preset)
        threat = claim_threat(attacks)
        kinds = [(s.kind, s.version) for s in group_by_threat(attacks)[threat]]
        assert kinds[0][0].startswith("pgd") and ("autoattack", version) in kinds
    assert core.CPU.autoattack_size == zoo.CPU.autoattack_size == 200
    assert all("autoattack" not in a for a in core.final_attacks(core.QUICK) + zoo.final_attacks(zoo.QUICK))


def test_features_adds_autoattack_at_the_robust_columns_threat():
    from nrflab.experiments import features
    from nrflab.experiments.engine import TrainTask

    first = "pgd-l2:eps=1.0,step=0.4,steps=5"
    task = TrainTask("run", {"eval_attacks": [first, "pgd-linf:eps=0.1"]})
    attacks = features.final_attack(features.CPU, task)
    assert attacks == [first, "autoattack:version=custom,attacks=apgd-ce+apgd-dlr,restarts=1,norm=l2,eps=1,seed=0"]
    assert features.final_attack(features.PAPER_SCALE, task)[1] == "autoattack:norm=l2,eps=1,seed=0"
    assert features.final_attack(features.QUICK, task) == [first]
    assert features.robust_titles(attacks) == ["robust acc (PGD-L2 eps 1)", "robust acc (ensemble, L2 eps 1)"]
    assert features.robust_titles([first]) == ["robust acc (PGD-L2 eps 1)"]


def test_a_comparison_over_a_subsets_ensemble_names_the_images_it_saw():
    from nrflab.experiments.evidence import compare

    nan = float("nan")
    a = [torch.tensor([1.0, 0.0, nan, nan]) for _ in range(3)]
    b = [torch.tensor([0.0, 0.0, nan, nan]) for _ in range(3)]
    c = compare(a, b, seeds=[0, 1, 2])
    assert c.difference == 0.5 and "over the same 2 test images" in c.method

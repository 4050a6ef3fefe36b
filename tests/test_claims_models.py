"""The claims of the core, adversarial, family and corruptions experiments judged from constructed
outcomes (no training): each sign, each guard failure, fewer than three seeds, and the mutation test
(swapping the BN and no-BN inputs flips every directional verdict or leaves it inconclusive)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest
import torch

from nrflab.experiments import adversarial, core, corruptions, family
from nrflab.experiments.claims import list_claims
from nrflab.experiments.evidence import Outcomes
from nrflab.experiments.guard import named
from nrflab.measure.health import Health

N = 200
ATTACK = "pgd-l2:eps=1.0,step=0.25,steps=10"
LABEL = "pgd-l2_1"  # its result key
SEEDS = [0, 1, 2, 3, 4]
#: Seed-to-seed jitter (mean zero): differences are never constant, so intervals have width.
JITTER = (0.0, 0.01, -0.01, 0.02, -0.02)
FLIP = {"agrees": "disagrees", "disagrees": "agrees", "inconclusive": "inconclusive"}


def outcome(acc: float, *, robust: float = 0.5, ligs: float = 0.8, corrupted: float | None = None) -> Outcomes:
    """One model on ``N`` images: the first ``acc * N`` predictions right, robust on the first ``robust * N``."""
    labels = torch.arange(N) % 10
    k = round(acc * N)
    predictions = torch.where(torch.arange(N) < k, labels, (labels + 1) % 10)
    rob = (torch.arange(N) < round(robust * N)).float()
    corr = None if corrupted is None else torch.full((N,), corrupted)
    return Outcomes("paper", labels, predictions, {LABEL: rob}, torch.full((N,), ligs), corr)


def seeds_of(n: int = 5, **values: float) -> list[Outcomes]:
    """``n`` seeds of one model, every value jittered per seed."""
    return [outcome(**{k: v + JITTER[i] for k, v in values.items()}) for i in range(n)]  # type: ignore[arg-type]


def healthy(name: str, n: int = 5, *, acc: float = 0.95, train: float | None = None, **changes: object) -> list[Health]:
    h = Health(name, 10, acc if train is None else train, acc, 0, 0.12, True)
    return named(name, [replace(h, **changes) for _ in range(n)])  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- core


def core_verdicts(
    bn: dict[str, float],
    none: dict[str, float],
    *,
    falls: tuple[float, float] = (0.3, 0.1),
    hb: list[Health] | None = None,
    hn: list[Health] | None = None,
    n: int = 5,
    swap: bool = False,
) -> dict[str, str]:
    s = core.CPU.model_copy(update={"seeds": SEEDS[:n]})
    groups = {"bn": seeds_of(n, **bn), "none": seeds_of(n, **none)}
    fall = {"bn": [falls[0] + JITTER[i] for i in range(n)], "none": [falls[1] - JITTER[i] / 2 for i in range(n)]}
    hb = hb if hb is not None else healthy("BN twin", n, acc=bn["acc"])
    hn = hn if hn is not None else healthy("no BN twin", n, acc=none["acc"])
    if swap:
        groups = {"bn": groups["none"], "none": groups["bn"]}
        fall = {"bn": fall["none"], "none": fall["bn"]}
        hb, hn = hn, hb
    verdicts = core.claims(s, groups, fall, hb, hn, [ATTACK])
    assert all(v.experiment == "core" and v.family and v.unit in ("points", "LIGS") for v in verdicts)
    return {v.claim_id: v for v in verdicts}  # type: ignore[return-value]


PAPER_LIKE = ({"acc": 0.97, "robust": 0.10, "ligs": 0.6}, {"acc": 0.93, "robust": 0.40, "ligs": 0.8})


def outcomes_of(verdicts: dict) -> dict[str, str]:
    return {k: v.outcome for k, v in verdicts.items()}


def test_core_claims_agree_with_the_paper_like_outcome():
    v = core_verdicts(*PAPER_LIKE)
    assert outcomes_of(v) == dict.fromkeys(("core.clean", "core.robustness", "core.ligs", "core.ligs_fall"), "agrees")
    assert v["core.robustness"].difference == pytest.approx(0.30) and v["core.robustness"].n_seeds == 5
    assert v["core.ligs"].unit == "LIGS" and v["core.ligs"].difference == pytest.approx(0.2)
    assert v["core.ligs_fall"].difference == pytest.approx(0.2) and v["core.clean"].p < 0.05
    assert v["core.robustness"].family == "claim 1: robustness" and len(v["core.robustness"].guard) == 10


def test_core_claims_disagree_with_the_opposite_outcome():
    bn, none = PAPER_LIKE
    assert set(outcomes_of(core_verdicts(none, bn, falls=(0.1, 0.3))).values()) == {"disagrees"}


def test_core_claims_inconclusive_without_a_difference():
    same = {"acc": 0.95, "robust": 0.3, "ligs": 0.7}
    s = core.CPU.model_copy(update={"seeds": SEEDS})
    a = seeds_of(**same)
    b = [outcome(acc=0.95 - JITTER[i], robust=0.3 - JITTER[i], ligs=0.7 - JITTER[i]) for i in range(5)]
    fall = {"bn": [0.2 + j for j in JITTER], "none": [0.2 - j for j in JITTER]}
    h = healthy("twin")
    verdicts = core.claims(s, {"bn": a, "none": b}, fall, h, h, [ATTACK])
    assert {v.outcome for v in verdicts} == {"inconclusive"}


AA = "autoattack:version=custom,attacks=apgd-ce+apgd-dlr,norm=l2,eps=1.0,seed=0"
LINF = "pgd-linf:eps=0.1,step=0.025,steps=10"


def with_stronger(o: Outcomes, *, aa: float, linf: float) -> Outcomes:
    """``o`` plus an AutoAttack at PGD's threat (robust on the first ``aa * N``) and an Linf attack."""
    first = {"autoattack-l2-apgd-ce+apgd-dlr_1": aa, "pgd-linf_0.1": linf}
    robust = {**o.robust, **{k: (torch.arange(N) < round(v * N)).float() for k, v in first.items()}}
    return replace(o, robust=robust)


def test_core_robustness_is_judged_on_the_ensemble_of_its_threat_only():
    s = core.CPU.model_copy(update={"seeds": SEEDS})
    bn, none = PAPER_LIKE
    groups = {  # PGD: 10 % vs 40 %; AutoAttack at the same threat: 5 % vs 30 %; Linf: 0 % for both
        "bn": [with_stronger(o, aa=0.05, linf=0.0) for o in seeds_of(**bn)],
        "none": [with_stronger(o, aa=0.30, linf=0.0) for o in seeds_of(**none)],
    }
    fall = {"bn": [0.3] * 5, "none": [0.1] * 5}
    h = healthy("twin", acc=0.95)
    v = {x.claim_id: x for x in core.claims(s, groups, fall, h, h, [ATTACK, LINF, AA])}["core.robustness"]
    # the per-image worst case of PGD and AutoAttack at L2 eps 1 (30 - 5 = 25 points, exactly: AutoAttack's
    # images are a subset of PGD's); the Linf attack (0 % for both) is never pooled into it
    assert v.difference == pytest.approx(0.25) and v.outcome == "agrees"
    assert v.claim == "Claim 1, BN lowers adversarial robustness (ensemble, L2 eps 1)"


def test_core_mutation_swapping_bn_and_no_bn_flips_every_verdict():
    before = outcomes_of(core_verdicts(*PAPER_LIKE))
    after = outcomes_of(core_verdicts(*PAPER_LIKE, swap=True))
    assert all(after[k] == FLIP[before[k]] for k in before) and set(after.values()) == {"disagrees"}


@pytest.mark.parametrize(
    ("which", "changes", "reason"),
    [
        ("bn", {"acc": 0.1, "train": 0.1}, "BN twin (run 1) did not train"),
        ("none", {"acc": 0.1, "train": 0.1}, "no BN twin (run 1) did not train"),
        ("bn", {"acc": 0.1, "train": 0.95}, "BN twin (run 1) at chance on clean test images"),
        ("none", {"finite": False}, "no BN twin (run 1) diverged"),
        ("bn", {"top_share": 0.95}, "BN twin (run 1) collapsed to one class"),
    ],
)
def test_core_guard_voids_every_claim_on_a_failed_model(which, changes, reason):
    acc = changes.pop("acc", 0.95)
    train = changes.pop("train", None)
    h = healthy(f"{'BN' if which == 'bn' else 'no BN'} twin", acc=acc, train=train, **changes)
    v = core_verdicts(*PAPER_LIKE, **{"hb" if which == "bn" else "hn": h})
    assert {x.outcome for x in v.values()} == {"void"}
    assert all(reason in x.reason for x in v.values()), [x.reason for x in v.values()]


def test_core_guard_unequal_usefulness_voids_only_the_robustness_claims():
    v = core_verdicts(*PAPER_LIKE, hb=healthy("BN twin", acc=0.95), hn=healthy("no BN twin", acc=0.70))
    assert outcomes_of(v) == {
        "core.clean": "agrees",
        "core.robustness": "void",
        "core.ligs": "void",
        "core.ligs_fall": "agrees",
    }
    assert "usefulness very unequal" in v["core.robustness"].reason


def test_core_fewer_than_three_seeds_is_not_tested():
    v = core_verdicts(*PAPER_LIKE, n=2)
    assert {x.outcome for x in v.values()} == {"not tested"} and all(x.n_seeds == 2 for x in v.values())


def test_core_ligs_fall_is_judged_between_fixed_epochs(tmp_path):
    from nrflab.runs.rundir import RunDir

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    # a noisy peak at epoch 3 must not count: the fall is from epoch 1 to the final epoch
    run.metrics_path.write_text("epoch,ligs\n0,0.6\n1,0.9\n2,0.8\n3,0.99\n4,0.7\n")
    assert core.ligs_fall(run.path, start=1) == pytest.approx(0.2)
    assert core.ligs_fall(run.path, start=4) != core.ligs_fall(run.path, start=4)  # NaN: no epochs to fall over


def test_core_presets_pre_specify_five_seeds_and_the_fall_epoch():
    assert len(core.CPU.seeds) >= 5 and core.CPU.ligs_fall_from == 1 < core.CPU.twins.epochs
    assert sorted(c.id for c in list_claims("core.*")) == sorted(
        ["core.clean", "core.robustness", "core.ligs", "core.ligs_fall", "core.frequency"]
    )


# -------------------------------------------------------------------------------------------------- the zoo


@dataclass
class StubZoo:
    """Per-seed outcomes and health per (kind, norm), as the zoo's claims read them."""

    results: dict[tuple[str, str], list[Outcomes]]
    healths: dict[tuple[str, str], list[Health]] = field(default_factory=dict)

    def outcomes(self, kind: str, norm: str) -> list[Outcomes]:
        return self.results[(kind, norm)]

    def corrupted(self, kind: str, norm: str) -> list[Outcomes]:
        return self.results[(kind, norm)]

    def health(self, kind: str, norm: str, name: str) -> list[Health]:
        found = self.healths.get((kind, norm))
        if found is None:
            acc = sum(o.accuracy() for o in self.results[(kind, norm)]) / len(self.results[(kind, norm)])
            return healthy(name, len(self.results[(kind, norm)]), acc=acc)
        return named(name, [replace(h, name=name) for h in found])

    def final_attacks(self) -> list[str]:
        return [ATTACK]


def zoo_settings(norms: Sequence[str], n: int = 5):
    from nrflab.experiments.zoo import CPU

    return CPU.model_copy(update={"seeds": SEEDS[:n], "norms": list(norms), "at_norms": ["bn", "none"]})


def paper_zoo(n: int = 5, *, swap: bool = False) -> StubZoo:
    """The paper's numbers: standard BN ~10 %, no BN ~40 % robust; AT BN ~79 %, AT no BN ~77 %; LIGS."""
    models = {
        ("std", "bn"): {"acc": 0.95, "robust": 0.10, "ligs": 0.59, "corrupted": 0.70},
        ("std", "none"): {"acc": 0.93, "robust": 0.40, "ligs": 0.79, "corrupted": 0.80},
        ("std", "gn"): {"acc": 0.94, "robust": 0.20, "ligs": 0.65, "corrupted": 0.75},
        ("at", "bn"): {"acc": 0.90, "robust": 0.79, "ligs": 0.98},
        ("at", "none"): {"acc": 0.89, "robust": 0.77, "ligs": 0.98},
    }
    if swap:
        for kind in ("std", "at"):
            models[(kind, "bn")], models[(kind, "none")] = models[(kind, "none")], models[(kind, "bn")]
    return StubZoo({k: seeds_of(n, **v) for k, v in models.items()})


def test_adversarial_claims_compare_at_with_standard_training():
    v = adversarial.claims(zoo_settings(["bn", "none"]), paper_zoo())
    assert [x.claim_id for x in v] == ["adversarial.ligs_gain"] * 2 + ["adversarial.bn_cost"]
    assert [x.outcome for x in v] == ["agrees", "agrees", "agrees"]
    assert v[0].difference == pytest.approx(0.39) and v[1].difference == pytest.approx(0.19)
    assert "BN" in v[0].claim and "no BN" in v[1].claim and all(x.experiment == "adversarial" for x in v)


def test_adversarial_ligs_gain_disagrees_when_at_lowers_ligs():
    zoo = paper_zoo()
    zoo.results[("at", "none")] = seeds_of(acc=0.89, robust=0.77, ligs=0.70)
    v = adversarial.claims(zoo_settings(["bn", "none"]), zoo)
    assert [x.outcome for x in v[:2]] == ["agrees", "disagrees"]


def test_adversarial_bn_cost_prints_the_raw_difference_and_the_margin():
    zoo = paper_zoo()
    zoo.results[("at", "bn")] = seeds_of(acc=0.90, robust=0.60, ligs=0.98)  # BN costs 17 points: not "little"
    cost = adversarial.claims(zoo_settings(["bn", "none"]), zoo)[-1]
    assert cost.outcome == "disagrees" and cost.difference == pytest.approx(-0.17 + 0.05)
    assert "Raw difference -17 points" in cost.evidence and "margin 5 points" in cost.evidence
    near = paper_zoo()
    near.results[("at", "bn")] = seeds_of(acc=0.90, robust=0.75, ligs=0.98)  # 2 points less: within the margin
    assert adversarial.claims(zoo_settings(["bn", "none"]), near)[-1].outcome == "agrees"


def test_adversarial_guard_voids_on_a_model_that_did_not_train():
    zoo = paper_zoo()
    zoo.healths[("at", "none")] = healthy("x", acc=0.1, train=0.1)
    v = adversarial.claims(zoo_settings(["bn", "none"]), zoo)
    assert [x.outcome for x in v] == ["agrees", "void", "void"] and "AT none (run 1) did not train" in v[1].reason


def test_adversarial_unequal_usefulness_voids_only_bns_cost():
    zoo = paper_zoo()
    zoo.healths[("at", "bn")] = healthy("x", acc=0.60)
    v = adversarial.claims(zoo_settings(["bn", "none"]), zoo)
    assert [x.outcome for x in v] == ["agrees", "agrees", "void"] and "usefulness very unequal" in v[2].reason


def test_family_claims_per_normalization_and_the_mutation():
    s = zoo_settings(["bn", "gn", "none"])
    v = family.claims(s, paper_zoo())
    assert [(x.claim_id, x.outcome) for x in v] == [("family.vulnerability", "agrees")] * 2
    assert v[0].difference == pytest.approx(0.30) and v[0].family == "claim 7: other normalizations"
    swapped = family.claims(s, paper_zoo(swap=True))
    # BN flips; GN (20 %) now beats the swapped-in "none" (10 %) too
    assert [x.outcome for x in swapped] == ["disagrees", "disagrees"]


@pytest.mark.parametrize(
    ("changes", "outcome", "reason"),
    [
        ({"acc": 0.1, "train": 0.1}, "void", "did not train"),
        ({"finite": False}, "void", "diverged"),
        ({"top_share": 0.95}, "void", "collapsed to one class"),
        ({"acc": 0.70}, "void", "usefulness very unequal"),
    ],
)
def test_family_and_corruptions_guard(changes, outcome, reason):
    acc = changes.pop("acc", 0.95)
    zoo = paper_zoo()
    zoo.healths[("std", "bn")] = healthy("x", acc=acc, train=changes.pop("train", None), **changes)
    s = zoo_settings(["bn", "gn", "none"])
    fam = family.claims(s, zoo)
    cor = corruptions.claims(s, zoo)
    assert fam[0].outcome == outcome and reason in fam[0].reason and fam[1].outcome == "agrees"
    assert cor[0].outcome == outcome and reason in cor[0].reason


def test_corruptions_drop_signs_the_mutation_and_few_seeds():
    s = zoo_settings(["bn", "none"])
    v = corruptions.claims(s, paper_zoo())
    assert [(x.claim_id, x.outcome) for x in v] == [("corruptions.drop", "agrees")]
    assert v[0].difference == pytest.approx((0.95 - 0.70) - (0.93 - 0.80)) and v[0].unit == "points"
    assert corruptions.claims(s, paper_zoo(swap=True))[0].outcome == "disagrees"
    few = corruptions.claims(zoo_settings(["bn", "none"], 2), paper_zoo(2))
    assert few[0].outcome == "not tested" and few[0].n_seeds == 2


def test_zoo_presets_use_five_seeds():
    from nrflab.experiments.zoo import CPU

    assert len(CPU.seeds) >= 5

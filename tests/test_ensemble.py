"""The per-threat ensemble: the per-image minimum within a threat model, never pooled across threats."""

from __future__ import annotations

import pytest
import torch

from nrflab.core.errors import NrflabError
from nrflab.measure.ensemble import Threat, ensemble_robust, group_by_threat, threat_of

PGD_L2 = "pgd-l2:eps=1.0,step=0.25,steps=10"
AA_L2 = "autoattack:version=custom,attacks=apgd-ce+apgd-dlr,norm=l2,eps=1.0,seed=0"
PGD_LINF = "pgd-linf:eps=0.1,step=0.025,steps=10"
AA_LINF = "autoattack:version=custom,attacks=apgd-ce+apgd-dlr,norm=linf,eps=0.1,seed=0"


def test_threats_are_norm_and_eps_and_name_their_columns() -> None:
    assert threat_of(PGD_L2) == threat_of(AA_L2) == Threat(norm="l2", eps=1.0)
    assert threat_of(PGD_LINF) == threat_of(AA_LINF) == threat_of("fgsm:eps=0.1") == Threat(norm="linf", eps=0.1)
    assert threat_of("pgd-l2:eps=0.5") != threat_of(PGD_L2)  # another radius, another threat
    assert threat_of("none") is None
    assert Threat(norm="l2", eps=1.0).key == "robust_acc[ensemble l2 eps=1]"
    assert Threat(norm="linf", eps=8 / 255).key == "robust_acc[ensemble linf eps=8/255]"
    assert Threat(norm="linf", eps=8 / 255).title == "ensemble, Linf eps 8/255"
    groups = group_by_threat([PGD_L2, PGD_LINF, "none", AA_L2, AA_LINF])
    assert [(t.norm, [s.kind for s in specs]) for t, specs in groups.items()] == [
        ("l2", ["pgd-l2", "autoattack"]),
        ("linf", ["pgd-linf", "autoattack"]),
    ]


def test_the_ensemble_is_the_per_image_minimum_within_a_threat() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = {t: parse(t) for t in (PGD_L2, AA_L2, PGD_LINF, AA_LINF)}
    robust = {lab: torch.rand(50, generator=gen) < 0.6 for lab in labels.values()}
    found = ensemble_robust(list(labels), robust)
    l2, linf = Threat(norm="l2", eps=1.0), Threat(norm="linf", eps=0.1)
    assert list(found) == [l2, linf]
    expected_l2 = torch.minimum(robust[labels[PGD_L2]].int(), robust[labels[AA_L2]].int()).float()
    assert torch.equal(found[l2], expected_l2)
    expected_linf = torch.minimum(robust[labels[PGD_LINF]].int(), robust[labels[AA_LINF]].int()).float()
    assert torch.equal(found[linf], expected_linf)
    # never above either attack's own accuracy, and (here) strictly below the weaker one's
    assert int(found[l2].sum()) <= min(int(robust[labels[PGD_L2]].sum()), int(robust[labels[AA_L2]].sum()))


def test_attacks_of_different_threats_are_never_pooled() -> None:
    robust = {parse(PGD_L2): torch.tensor([True, True, False]), parse(PGD_LINF): torch.tensor([False, True, True])}
    found = ensemble_robust([PGD_L2, PGD_LINF], robust)
    # each threat keeps its one attack's own result: the pooled minimum [F, T, F] appears nowhere
    assert torch.equal(found[Threat(norm="l2", eps=1.0)], torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(found[Threat(norm="linf", eps=0.1)], torch.tensor([0.0, 1.0, 1.0]))
    assert ensemble_robust([PGD_L2, PGD_LINF], robust, min_attacks=2) == {}


def test_an_attack_on_a_subset_leaves_the_other_images_out_of_its_threats_ensemble() -> None:
    nan = float("nan")
    robust = {parse(PGD_L2): torch.tensor([True, True, False, True]), parse(AA_L2): torch.tensor([0.0, 1.0, nan, nan])}
    found = ensemble_robust([PGD_L2, AA_L2], robust)[Threat(norm="l2", eps=1.0)]
    assert torch.equal(found.isnan(), torch.tensor([False, False, True, True]))
    assert found[:2].tolist() == [0.0, 1.0]  # the mean over the images both attacks saw: 1/2


def test_a_missing_result_is_refused_in_one_line() -> None:
    with pytest.raises(NrflabError, match="no result for the attack autoattack-l2-apgd-ce\\+apgd-dlr_1"):
        ensemble_robust([PGD_L2, AA_L2], {parse(PGD_L2): torch.tensor([True])})


def parse(text: str) -> str:
    """The result key of an attack text (its spec's label)."""
    from nrflab.attacks import parse_attack

    return parse_attack(text).label

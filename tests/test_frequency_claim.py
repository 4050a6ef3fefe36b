"""The high-frequency claim (nrflab.experiments.frequency): the share, its band split, the verdict paired over
seeds behind the guard, and one measurement task per model."""

from __future__ import annotations

import pytest
import torch

from nrflab.experiments.claims import CLAIMS
from nrflab.experiments.core import CPU, QUICK
from nrflab.experiments.evidence import Outcomes
from nrflab.experiments.frequency import CORE_CLAIM, FrequencyLens, Measured, heat_map_tasks, judge, share
from nrflab.measure.fourier import fourier_basis, fourier_heat_map
from nrflab.measure.health import Health

SEEDS = [0, 1, 2, 3, 4]


def _reader(k: tuple[int, int]) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A linear model that reads one frequency of 16x16 images, and images it classifies right."""
    pattern = fourier_basis(16, 16, [k])[0].float()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    with torch.no_grad():
        model[1].weight.copy_(20 * torch.stack([-pattern.flatten(), pattern.flatten()]))
        model[1].bias.copy_(-model[1].weight.sum(dim=1) * 0.5)  # reads the projection of x - 0.5
    a = torch.tensor([0.2, -0.2, 0.3, -0.3] * 4)
    x = 0.5 + a[:, None, None, None] * pattern[None, None]
    return model, x, (a > 0).long()


@pytest.mark.parametrize(("k", "expected"), [((0, 6), 1.0), ((2, 1), 0.0), ((4, 4), 1.0)])
def test_the_share_counts_error_above_half_nyquist(k, expected):
    lens = FrequencyLens(eps=1.0, stride=1)
    assert lens.band_split(16) == 4.0 and FrequencyLens(high_from=0.25).band_split(28) == 3.5
    model, x, y = _reader(k)
    heat = fourier_heat_map(model, x, y, eps=1.0)
    found = Measured(heat, Outcomes("paper", y, y))
    assert share(found, lens) == expected


def _healths(name: str, acc: float, train_acc: float = 0.95) -> list[Health]:
    return [Health(f"{name} {i}", 10, train_acc, acc, 0, 0.12, True) for i in range(5)]


def test_the_verdict_pairs_the_shares_by_seed_behind_the_guard():
    shares = {"bn": [0.80, 0.82, 0.79, 0.81, 0.84], "none": [0.60, 0.55, 0.62, 0.58, 0.61]}
    healths = {"bn": _healths("bn", 0.97), "none": _healths("none", 0.96)}
    v = judge(CORE_CLAIM, norm="bn", baseline="none", shares=shares, healths=healths, seeds=SEEDS)
    assert v.outcome == "agrees" and v.claim_id == "core.frequency" and v.unit == "share"
    assert v.difference == pytest.approx(0.22, rel=1e-9)
    flipped = {"bn": shares["none"], "none": shares["bn"]}
    assert judge(CORE_CLAIM, norm="bn", baseline="none", shares=flipped, healths=healths, seeds=SEEDS).outcome == (
        "disagrees"
    )
    at_chance = {"bn": _healths("bn", 0.1, train_acc=0.1), "none": healths["none"]}
    assert judge(CORE_CLAIM, norm="bn", baseline="none", shares=shares, healths=at_chance, seeds=SEEDS).outcome == (
        "void"
    )


def test_one_heat_map_task_per_model_after_its_run_and_none_when_off(tmp_path):
    keys = [str(tmp_path / "runs" / f"r{i}") for i in range(3)]
    found = heat_map_tasks(keys, CPU)
    assert [t.after for t in found] == [(k,) for k in keys] and len({t.key for t in found}) == 3
    assert found[0].kwargs["lens"] == CPU.frequency.model_dump()
    assert heat_map_tasks(keys, QUICK.model_copy(update={"frequency": FrequencyLens(enabled=False)})) == []
    assert {"core.frequency", "family.frequency"} <= set(CLAIMS.names())

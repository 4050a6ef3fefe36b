"""Tests for the one home of "model + images -> numbers": the protocols of ``measure.predict`` against the five
batch loops they replaced, the framework's per-image outcomes, the one transfer-success rule on a hand-built
example, the health thresholds on constructed predictions, and ``core.seeds.seeded_subset`` against the
draws it replaced."""

from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
from torch import nn

from nrflab.attacks import PGD, frozen_model
from nrflab.core.errors import NrflabError
from nrflab.core.seeds import seeded_subset
from nrflab.data import limit_dataset
from nrflab.experiments.guard import void_reason
from nrflab.measure.framework import FrameworkRow, image_outcomes
from nrflab.measure.health import THRESHOLDS, Health, capable, comparable, learned, top_class
from nrflab.measure.metrics import accuracy, robust_accuracy
from nrflab.measure.predict import BATCH_STATS, BATCH_STATS_IN_ORDER, predict
from nrflab.measure.transfer_rate import eligible, success, transfer_rate

from conftest import assert_same_state, state_snapshot


def bn_net(seed: int = 0) -> nn.Module:
    """A small BN convnet with non-trivial running statistics (so the protocols differ)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)
    )
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def images(n: int = 70, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


# ---------------------------------------------------------------------------------------------
# The batch loops predict replaced, as they were


def old_eval_loop(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """metrics.predict, bn_surgery._predict and transfer.matrix.predict: eval mode, consecutive batches."""
    out = []
    with torch.no_grad(), frozen_model(model, "eval"):
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i : i + batch_size]).argmax(1).cpu())
    return torch.cat(out)


def old_reliance_predictions(
    model: nn.Module, x: torch.Tensor, batch_size: int, statistics: Literal["running", "batch"]
) -> torch.Tensor:
    """reliance.predictions: running or batch statistics over consecutive batches."""
    out = []
    with torch.no_grad(), frozen_model(model, "eval" if statistics == "running" else "train", keep_buffers=True):
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i : i + batch_size]).argmax(1).cpu())
    return torch.cat(out)


def old_batch_stats(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """protocols.predict under batch-stats: batches of 250 in a seeded random order."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    preds = torch.empty(x.shape[0], dtype=torch.long)
    with torch.no_grad(), frozen_model(model, "train", keep_buffers=True):
        for start in range(0, x.shape[0], 250):
            idx = order[start : start + 250]
            preds[idx] = model(x[idx]).argmax(1).cpu()
    return preds


def test_predict_protocols_agree_with_the_loops_they_replaced() -> None:
    model = bn_net()
    x, _ = images(600)
    before = state_snapshot(model)
    for bs in (7, 64, 256):
        assert torch.equal(predict(model, x, batch_size=bs), old_eval_loop(model, x, bs))
        assert torch.equal(predict(model, x, batch_size=bs), old_reliance_predictions(model, x, bs, "running"))
        in_order = predict(model, x, batch_size=bs, protocol=BATCH_STATS_IN_ORDER)
        assert torch.equal(in_order, old_reliance_predictions(model, x, bs, "batch"))
    for seed in (0, 3):
        assert torch.equal(predict(model, x, protocol=BATCH_STATS, seed=seed), old_batch_stats(model, x, seed))
    # the protocols do differ on this model (running statistics that do not fit the images)
    assert not torch.equal(predict(model, x), predict(model, x, protocol=BATCH_STATS))
    assert_same_state(model, before)
    assert not model.training


def test_predict_without_batch_norm_is_the_paper_protocol_and_keeps_the_device() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    x, _ = images(90)
    paper = predict(model, x, batch_size=16)
    assert torch.equal(predict(model, x, protocol=BATCH_STATS, batch_size=16), paper)
    assert torch.equal(predict(model, x, protocol=BATCH_STATS_IN_ORDER, batch_size=16), paper)
    assert paper.device == x.device and paper.dtype == torch.long
    assert predict(model, x[:0]).shape == (0,)
    with pytest.raises(NrflabError, match="batch size"):
        predict(model, x, batch_size=0)


# ---------------------------------------------------------------------------------------------
# The framework's outcomes


def test_image_outcomes_summarize_to_the_streamed_accuracies_whatever_the_batch() -> None:
    model = bn_net(2)
    x, y = images(50)
    attack = PGD(model, norm="l2", eps=0.5, step_size=0.2, steps=3, seed=4)
    rows = [
        image_outcomes(model, x, y, attacks=[("pgd", attack)], ligs_sigma=0.01, seed=1, batch_size=bs).summary()
        for bs in (8, 50)
    ]
    assert rows[0] == rows[1]
    row = rows[0]
    assert row.clean_acc == accuracy(model, (x, y), 13)
    assert row.robust_acc["pgd"] == robust_accuracy(model, (x, y), attack, 13)
    assert row.num_samples == 50 and row.ligs is not None
    assert FrameworkRow.from_row(row.row(), num_samples=50) == row


def test_image_outcomes_keep_the_adversarial_examples_inside_the_ball() -> None:
    model = bn_net(2)
    x, y = images(20)
    attack = PGD(model, norm="l2", eps=0.5, step_size=0.2, steps=2)
    seen = image_outcomes(model, x, y, attacks=[("pgd", attack)], batch_size=6, keep_adversarial=True)
    adv = seen.adversarial["pgd"]
    assert adv.shape == x.shape and float((adv - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    assert torch.equal(seen.robust["pgd"], predict(model, adv) == y)
    assert seen.ligs is None and seen.summary().ligs is None


# ---------------------------------------------------------------------------------------------
# Transfer success: one definition


def test_transfer_success_on_a_hand_built_example() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    source_clean = torch.tensor([0, 1, 2, 3, 4, 9, 1, 2])  # image 5: source wrong when clean
    source_adv = torch.tensor([9, 9, 9, 9, 4, 9, 9, 2])  # images 4, 7: the attack did not fool the source
    target_clean = torch.tensor([0, 1, 2, 9, 4, 0, 1, 2])  # image 3: target wrong when clean
    target_adv = torch.tensor([9, 1, 9, 9, 9, 9, 9, 9])  # image 1: the target resists
    mask = eligible(source_clean=source_clean, source_adv=source_adv, target_clean=target_clean, labels=labels)
    assert mask.tolist() == [True, True, True, False, False, False, True, False]
    hits = success(eligible_mask=mask, target_adv=target_adv, labels=labels)
    assert hits.tolist() == [True, False, True, False, False, False, True, False]
    rate = transfer_rate(
        source_clean=source_clean,
        source_adv=source_adv,
        target_clean=target_clean,
        target_adv=target_adv,
        labels=labels,
    )
    assert (rate.eligible, rate.successes, rate.rate) == (4, 3, 0.75)
    lo, hi = rate.ci
    assert lo < 0.75 < hi
    # the retired planted rule (eligible = target right when clean) counted 7 images and 6 hits
    old_ok = target_clean == labels
    assert (int(old_ok.sum()), int(((target_adv != labels) & old_ok).sum())) == (7, 6)


def test_targeted_transfer_and_no_eligible_example() -> None:
    labels = torch.tensor([0, 1, 2])
    targets = torch.tensor([1, 2, 0])
    rate = transfer_rate(
        source_clean=labels,
        source_adv=torch.tensor([1, 0, 0]),  # the source reaches the target class on images 0 and 2
        target_clean=labels,
        target_adv=torch.tensor([1, 2, 1]),  # the target reaches it on image 0 only (image 1 is not eligible)
        labels=labels,
        targets=targets,
    )
    assert (rate.eligible, rate.successes) == (2, 1)
    none = transfer_rate(source_clean=labels, source_adv=labels, target_clean=labels, target_adv=labels, labels=labels)
    assert none.eligible == 0 and math.isnan(none.rate) and all(math.isnan(v) for v in none.ci)


# ---------------------------------------------------------------------------------------------
# Health: every threshold once


def health_of(predictions: torch.Tensor, labels: torch.Tensor, *, train_acc: float, name: str = "m") -> Health:
    k, share = top_class(predictions)
    return Health(name, 10, train_acc, float((predictions == labels).float().mean()), k, share, True)


def test_health_thresholds_on_constructed_predictions() -> None:
    labels = torch.arange(100) % 10
    others = torch.tensor([0, 1, 2, 4, 5, 6, 7, 8, 9, 0, 1])  # never class 3
    collapsed = torch.cat([torch.full((90,), 3), others[:10]])  # class 3 takes 90 %
    almost = torch.cat([torch.full((89,), 3), others])  # 89 %
    assert top_class(collapsed) == (3, 0.9)
    assert health_of(collapsed, labels, train_acc=0.9).collapsed()
    assert not health_of(almost, labels, train_acc=0.9).collapsed()
    # learned: chance (1/10) + 0.10
    assert learned(0.2, 10) and not learned(0.19, 10) and not learned(math.nan, 10)
    assert health_of(labels, labels, train_acc=0.2).learned()
    assert not health_of(labels, labels, train_acc=0.15).learned()
    # comparable usefulness: at most 0.10 apart, either way
    assert comparable(0.9, 0.8) and not comparable(0.9, 0.79) and not comparable(0.5, 0.75)
    assert comparable(math.nan, 0.1)
    # capable: the median seed reaches 0.90
    assert capable([0.95, 0.2, 0.91]) and not capable([0.95, 0.2, 0.3]) and not capable([math.nan])
    assert (THRESHOLDS.chance_margin, THRESHOLDS.collapse_share, THRESHOLDS.usefulness_gap) == (0.1, 0.9, 0.1)


def test_the_guard_words_the_health_checks() -> None:
    labels = torch.arange(100) % 10
    good = health_of(labels, labels, train_acc=0.95, name="a")
    stuck = health_of((labels + 1) % 10, labels, train_acc=0.12, name="b")  # wrong on the view, untrained
    memorized = health_of((labels + 1) % 10, labels, train_acc=0.99, name="e")  # trained, at chance on the view
    collapsed = health_of(torch.full((100,), 3), labels, train_acc=0.95, name="c")
    worse = health_of(torch.where(torch.arange(100) < 20, (labels + 1) % 10, labels), labels, train_acc=0.9, name="d")
    assert void_reason(learners=[good]) is None
    assert "b did not train" in (void_reason(learners=[stuck]) or "")
    assert "e at chance on clean test images" in (void_reason(learners=[memorized]) or "")  # never training acc alone
    assert void_reason(others=[stuck]) is None
    assert "c collapsed to one class" in (void_reason(learners=[collapsed]) or "")
    assert "usefulness very unequal" in (void_reason(comparable=[([good], [worse])]) or "")


# ---------------------------------------------------------------------------------------------
# The seeded subset


@pytest.mark.parametrize(("n", "limit", "seed"), [(10_000, 500, 0), (1_797, 300, 3), (50, 49, 7), (360, 1, 1337)])
def test_seeded_subset_draws_the_indices_of_the_copies_it_replaced(n: int, limit: int, seed: int) -> None:
    old = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    new = seeded_subset(n, limit, seed=seed)
    assert new is not None and torch.equal(new, old)


def test_limit_dataset_takes_the_seeded_subset(mnist5k) -> None:
    limited = limit_dataset(mnist5k.test, 40, 3)
    idx = seeded_subset(len(mnist5k.test), 40, seed=3)
    assert idx is not None and torch.equal(limited.labels, mnist5k.test.labels[idx])
    assert limit_dataset(mnist5k.test, None, 3) is mnist5k.test


def test_seeded_subset_all_and_bad_limits() -> None:
    assert seeded_subset(10, None, seed=0) is None and seeded_subset(10, 10, seed=0) is None
    with pytest.raises(NrflabError, match="limit"):
        seeded_subset(10, 0, seed=0)

"""Property tests for the invariants behind the numbers nrflab reports: confidence intervals, the verdict rule,
the learning-rate schedule, attack specs, run names, dataset splits, image quantization and augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from nrflab.attacks import AttackSpec, parse_attack
from nrflab.core.columns import attack_of, attack_title, robust_key
from nrflab.core.stats import judge, mean_ci, paired_ci, wilson
from nrflab.data.base import class_balanced_split
from nrflab.features import quantize
from nrflab.training import make_config
from nrflab.training.augment import augment_batch, augment_batch_reference
from nrflab.training.schedule import lr_at
from nrflab.training.sweep import run_name

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


# -- intervals ------------------------------------------------------------------------------------


@given(n=st.integers(1, 5000), data=st.data())
def test_wilson_interval_contains_the_estimate_and_stays_in_unit_range(n: int, data) -> None:
    k = data.draw(st.integers(0, n))
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert hi - lo > 0
    if 0 < k < n:
        # Wider with fewer trials at the same proportion.
        lo2, hi2 = wilson(2 * k, 2 * n)
        assert hi2 - lo2 < hi - lo


def test_wilson_matches_scipy() -> None:
    for k, n in [(0, 10), (3, 10), (50, 100), (999, 1000)]:
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        np.testing.assert_allclose(wilson(k, n), (ci.low, ci.high), atol=1e-9)


@given(values=st.lists(st.floats(0, 1), min_size=2, max_size=40))
def test_mean_ci_is_the_t_interval(values: list[float]) -> None:
    m, lo, hi = mean_ci(values, proportion=False)
    assert m == pytest.approx(float(np.mean(values)), abs=1e-12)
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    if sem > 1e-12:
        ref = scipy_stats.t.interval(0.95, len(values) - 1, loc=m, scale=sem)
        assert (lo, hi) == pytest.approx(ref, abs=1e-9)
    clipped = mean_ci(values, proportion=True)
    assert 0.0 <= clipped[1] <= clipped[0] <= clipped[2] <= 1.0


@given(a=st.lists(finite, min_size=2, max_size=20), shift=finite)
def test_paired_ci_of_a_constant_shift_is_exact(a: list[float], shift: float) -> None:
    b = [x - shift for x in a]
    m, lo, hi = paired_ci(a, b)
    assert m == pytest.approx(shift, rel=1e-6, abs=1e-6)
    assert hi - lo == pytest.approx(0.0, abs=1e-5 * (1 + abs(shift)))


@given(diff=finite, half=st.floats(0, 1e3, allow_nan=False))
def test_verdict_rule_agrees_only_when_the_interval_excludes_zero(diff: float, half: float) -> None:
    v = judge("claim", diff, diff - half, diff + half, "evidence")
    if diff - half > 0:
        assert v.outcome == "agrees"
    elif diff + half < 0:
        assert v.outcome == "disagrees"
    else:
        assert v.outcome == "inconclusive"
    assert judge("claim", diff, diff - half, diff + half, "e", void_reason="did not learn").outcome == "void"
    assert judge("claim", diff, math.nan, math.nan, "e").outcome == "inconclusive"


# -- learning-rate schedule -------------------------------------------------------------------------


@given(
    schedule=st.sampled_from(["multistep", "onecycle", "cosine", "constant"]),
    lr=st.floats(1e-4, 1.0),
    epochs=st.integers(1, 30),
    spe=st.integers(1, 40),
    warmup=st.sampled_from([0.0, 0.5, 2.0]),
)
@settings(max_examples=60, deadline=None)
def test_lr_schedule_is_positive_bounded_and_piecewise_sane(schedule, lr, epochs, spe, warmup) -> None:
    cfg = make_config(
        dataset="digits",
        schedule=schedule,
        lr=lr,
        epochs=epochs,
        milestones=[max(1, epochs // 2)],
        warmup_epochs=warmup,
    )
    values = [lr_at(cfg, e, s, spe) for e in range(epochs) for s in range(spe)]
    assert all(0 < v <= lr * (1 + 1e-9) for v in values)
    if schedule == "multistep" and warmup == 0:
        assert values[0] == pytest.approx(lr)
        assert all(a >= b - 1e-15 for a, b in zip(values, values[1:]))  # never rises
    if schedule == "cosine" and warmup == 0:
        assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))
    if schedule == "onecycle":
        peak = values.index(max(values))
        assert all(a <= b + 1e-12 for a, b in zip(values[:peak], values[1 : peak + 1]))
        assert all(a >= b - 1e-12 for a, b in zip(values[peak:], values[peak + 1 :]))
    if warmup > 0 and schedule != "onecycle":
        assert values[0] < lr or warmup * spe <= 1  # a warm-up of one step or less is no warm-up


# -- attack specs -------------------------------------------------------------------------------------


specs = st.builds(
    AttackSpec,
    kind=st.sampled_from(["pgd-linf", "pgd-l2", "fgsm", "fgm-l2"]),
    eps=st.floats(1e-6, 1e3, allow_nan=False, allow_infinity=False),
    step_size=st.none() | st.floats(1e-6, 10, allow_nan=False, allow_infinity=False),
    steps=st.integers(1, 500),
    random_start=st.booleans(),
    restarts=st.integers(1, 10),
    targeted=st.booleans(),
)


@given(spec=specs)
def test_attack_spec_text_round_trips_exactly(spec: AttackSpec) -> None:
    assert parse_attack(spec.to_string()) == spec


@given(text=st.text(max_size=40))
def test_attack_spec_parser_accepts_or_refuses_in_one_line(text: str) -> None:
    from nrflab.core.errors import NrflabError

    try:
        spec = parse_attack(text)
    except NrflabError as exc:
        assert "\n" not in str(exc)
    else:
        assert parse_attack(spec.to_string()) == spec


# -- run names ---------------------------------------------------------------------------------------


grid_values = st.dictionaries(
    st.sampled_from(["norm", "seed", "lr", "width", "dataset", "data_root", "eval_attacks"]),
    st.integers(0, 10**6) | st.floats(1e-4, 10, allow_nan=False) | st.text(min_size=1, max_size=30) | st.booleans(),
    min_size=1,
    max_size=4,
)


@given(values=grid_values)
def test_run_names_are_safe_directory_names(values) -> None:
    name = run_name(values)
    assert 0 < len(name) <= 120
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert run_name(dict(values)) == name  # deterministic


@given(a=grid_values, b=grid_values)
def test_distinct_grid_points_get_distinct_long_names(a, b) -> None:
    assume(a != b)
    from nrflab.training.sweep import format_value

    raw = lambda v: ",".join(f"{k}={format_value(x)}" for k, x in v.items())  # noqa: E731
    assume(raw(a) != raw(b))
    na, nb = run_name(a), run_name(b)
    if len(na) == 120 and len(nb) == 120:
        assert na != nb  # overlong names keep a hash of the full text


# -- dataset splits -------------------------------------------------------------------------------------


@given(
    counts=st.lists(st.integers(3, 40), min_size=2, max_size=6), per_class=st.integers(1, 3), seed=st.integers(0, 99)
)
def test_class_balanced_split_partitions_with_exact_test_counts(counts, per_class, seed) -> None:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    train, test = class_balanced_split(labels, test_per_class=per_class, seed=seed)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(labels.size))
    assert all((labels[test] == c).sum() == per_class for c in range(len(counts)))
    again = class_balanced_split(labels, test_per_class=per_class, seed=seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


@given(
    counts=st.lists(st.integers(2, 50), min_size=2, max_size=6), fraction=st.floats(0.05, 0.5), seed=st.integers(0, 99)
)
def test_fraction_split_keeps_every_class_on_both_sides(counts, fraction, seed) -> None:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    train, test = class_balanced_split(labels, fraction, seed, sort=True)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(labels.size))
    for c in range(len(counts)):
        assert (labels[test] == c).sum() >= 1 and (labels[train] == c).sum() >= 1


# -- quantization and augmentation ------------------------------------------------------------------------


@given(seed=st.integers(0, 10**6))
def test_uint8_quantization_is_within_half_a_level_and_idempotent(seed: int) -> None:
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.1
    q = quantize(x, "uint8")
    assert q.dtype == torch.uint8
    back = q.float() / 255
    assert float((back - x.clamp(0, 1)).abs().max()) <= 0.5 / 255 + 1e-7
    assert torch.equal(quantize(back, "uint8"), q)
    assert quantize(x, "float32").dtype == torch.float32 and float(quantize(x, "float16").max()) <= 1.0


@given(
    seed=st.integers(0, 10**6), pad=st.integers(0, 4), flip=st.booleans(), size=st.sampled_from([(1, 8, 8), (3, 7, 9)])
)
@settings(max_examples=40, deadline=None)
def test_batched_augmentation_equals_the_per_sample_reference(seed: int, pad: int, flip: bool, size) -> None:
    x = torch.rand(6, *size, generator=torch.Generator().manual_seed(seed))
    a = augment_batch(x, torch.Generator().manual_seed(seed), pad=pad, flip=flip)
    b = augment_batch_reference(x, torch.Generator().manual_seed(seed), pad=pad, flip=flip)
    assert torch.equal(a, b)
    if pad == 0 and not flip:
        assert torch.equal(a, x)


@pytest.mark.parametrize(
    ("label", "title"),
    [
        ("pgd-l2_1", "PGD-L2 eps 1"),
        ("pgd-linf_0.1", "PGD-Linf eps 0.1"),
        ("fgsm_0.1_t", "FGSM eps 0.1, targeted"),
        ("autoattack-l2-apgd-ce+apgd-dlr_1", "AutoAttack L2 (APGD-CE+APGD-DLR) eps 1"),
        ("autoattack-linf_0.0313725", "AutoAttack Linf eps 8/255"),
        ("none", "none"),
    ],
)
def test_attack_titles_name_the_attack_for_readers(label: str, title: str) -> None:
    assert attack_title(label) == title
    if label != "none":
        assert attack_of(robust_key(label)) == label  # the column round trip the title is read from

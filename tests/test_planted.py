"""The planted-feature generator: exact templates, agreement rates, determinism, clipping, view statistics,
one-line errors and speed."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nrflab.core.errors import NrflabError
from nrflab.data import load_dataset
from nrflab.data.planted import assign_classes, dct_images, generate, make_templates
from nrflab.data.planted_spec import VARIANTS as PRESETS
from nrflab.data.planted_spec import PlantedSpec, band_mask, dataset_name, spec_from_params

SMALL = {"size": "16", "train": "500", "test": "300"}


def spec(**params: str) -> PlantedSpec:
    return spec_from_params({**SMALL, **params})


@pytest.mark.parametrize("size", [16, 32])
def test_templates_are_orthonormal_and_in_their_bands(size: int) -> None:
    s = spec(size=str(size))
    t = make_templates(s)
    k = s.classes
    nrf = t.nrf.reshape(k, -1)
    np.testing.assert_allclose(nrf @ nrf.T, np.eye(k), atol=1e-10)
    outside = dct_images(t.nrf)[:, :, ~band_mask("high", size)]
    assert np.abs(outside).max() < 1e-10
    canvas = t.rf_canvas.reshape(k, -1)
    np.testing.assert_allclose(canvas @ canvas.T, np.eye(k), atol=1e-10)
    norms = np.sqrt((t.rf_crops**2).sum(axis=(-3, -2, -1)))
    np.testing.assert_allclose(norms, 1.0, atol=1e-10)
    assert t.rf_crops.shape[1:3] == (2 * s.max_shift + 1, 2 * s.max_shift + 1)


def test_feature_norms_are_exact_in_generated_images() -> None:
    # No background, noise or jitter: an image is 0.5 + a_r * (unit RF crop) + a_n * V_n, exactly.
    s = spec(bg_std="0", color="0", jitter="0", a_r="2", a_n="0.7")
    sample = generate(s, "train")
    x = sample.images.astype(np.float64) - 0.5
    t = make_templates(s)
    nrf_part = np.einsum("nchw,kchw->nk", x, t.nrf)
    # The shifted RF crop leaks a little energy into the high band (cropping is not band-limited): < 1e-3.
    np.testing.assert_allclose(nrf_part[np.arange(len(x)), sample.nrf_class], 0.7, atol=1e-3)
    rf_part = x - 0.7 * t.nrf[sample.nrf_class]
    np.testing.assert_allclose(np.sqrt((rf_part**2).sum(axis=(1, 2, 3))), 2.0, atol=1e-4)
    assert sample.clip_fraction == 0.0


@pytest.mark.parametrize("p_r,p_n", [(0.8, 1.0), (1.0, 0.8), (0.1, 0.5)])
def test_agreement_rates_within_binomial_bounds(p_r: float, p_n: float) -> None:
    s = spec(p_r=str(p_r), p_n=str(p_n), train="4000")
    sample = generate(s, "train")
    n = len(sample.labels)
    for p, classes in ((p_r, sample.rf_class), (p_n, sample.nrf_class)):
        rate = float((classes == sample.labels).mean())
        assert abs(rate - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9
    assert set(np.unique(sample.labels)) == set(range(10))


def test_drand_rf_class_is_independent_of_the_label() -> None:
    sample = generate(spec(preset="drand", train="5000"), "train")
    table = np.zeros((10, 10))
    np.add.at(table, (sample.labels, sample.rf_class), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    assert chi2 < 150  # 81 degrees of freedom: the 0.9999 quantile is ~135
    assert (sample.nrf_class == sample.labels).all()


def test_conflicting_set_plants_the_previous_class_as_rf() -> None:
    sample = generate(spec(preset="conflicting"), "train")
    assert (sample.rf_class == (sample.labels - 1) % 10).all()
    assert (sample.nrf_class == sample.labels).all()


@given(p=st.floats(0, 1), k=st.integers(2, 12), shift=st.integers(-3, 3), seed=st.integers(0, 1000))
def test_assign_classes_agree_or_other(p: float, k: int, shift: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 200)
    c = assign_classes(rng, y, p=p, classes=k, shift=shift)
    assert ((c >= 0) & (c < k)).all()
    other = c != y
    if shift % k:
        assert (c[other] == (y[other] + shift) % k).all()
    if p == 1.0:
        assert not other.any()
    if p == 0.0:
        assert other.all()


def test_determinism_from_seeds() -> None:
    a, b = generate(spec(), "train"), generate(spec(), "train")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    other_samples = generate(spec(sample_seed="1"), "train")
    assert not np.array_equal(a.images, other_samples.images)
    assert np.array_equal(make_templates(spec(sample_seed="1")).nrf, make_templates(spec()).nrf)
    assert not np.array_equal(make_templates(spec(seed="1")).nrf, make_templates(spec()).nrf)
    assert not np.array_equal(generate(spec(), "agree").images, a.images[:300])


@pytest.mark.parametrize("params", [{}, {"size": "32"}, {"preset": "control-large"}, {"noise": "0.05", "a_n": "2"}])
def test_clipping_touches_few_pixels(params: dict) -> None:
    sample = generate(spec(**params), "train")
    assert sample.clip_fraction < 0.005
    assert sample.images.min() >= 0 and sample.images.max() <= 1


@pytest.mark.parametrize("preset", ["redundant", "drand", "conflicting", "nrf-predictive"])
def test_views_keep_the_training_statistics(preset: str) -> None:
    s = spec(preset=preset, train="3000", test="1000", a_n="2")
    train = generate(s, "train").images
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    for view in ("agree", "rf", "nrf", "swap"):
        x = generate(s, view).images
        np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), mean, atol=0.01)
        np.testing.assert_allclose(x.std(axis=(0, 2, 3)), std, rtol=0.05)


def test_view_classes() -> None:
    s = spec()
    agree, rf, nrf, swap = (generate(s, v) for v in ("agree", "rf", "nrf", "swap"))
    assert (agree.rf_class == agree.labels).all() and (agree.nrf_class == agree.labels).all()
    assert (rf.rf_class == rf.labels).all() and (nrf.nrf_class == nrf.labels).all()
    assert (swap.rf_class != swap.nrf_class).all()


def test_bundle_records_every_parameter_and_has_probes() -> None:
    bundle = load_dataset("planted:preset=drand,a_n=0.2,size=16,train=300,test=200")
    info = bundle.info
    assert info["family"] == "planted"
    assert set(info["params"]) == {f.name for f in dataclasses.fields(PlantedSpec)}
    assert info["params"]["a_n"] == 0.2 and info["params"]["p_r"] == pytest.approx(0.1)
    assert bundle.input_shape == (3, 16, 16) and len(bundle.train) == 300 and len(bundle.test) == 200
    assert bundle.reliance_views is not None and not bundle.probes
    assert load_dataset(bundle.name).name == bundle.name  # the canonical name regenerates the same set
    x, _ = bundle.test.tensors()
    agree = generate(spec(preset="drand", a_n="0.2", train="300", test="200"), "agree")
    assert torch.equal(x, torch.from_numpy(agree.images))  # the test split is the agree view


def test_mnist_variant_keeps_the_nrf_inside_the_pixel_range() -> None:
    bundle = load_dataset("planted:rf=mnist,preset=drand,a_n=2,train=300,test=200")
    assert bundle.input_shape == (1, 28, 28)
    assert bundle.info["params"]["margin"] == pytest.approx(4 * 2 / 28)
    assert bundle.info["clip_fraction"]["train"] < 1e-3
    x, _ = bundle.train.tensors()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert 0.03 < bundle.info["train_agreement"]["rf"] < 0.2  # digit class independent of the label
    small = load_dataset("planted:rf=mnist,size=16,train=100,test=100")
    assert small.input_shape == (1, 16, 16)


@pytest.mark.parametrize(
    "name,message",
    [
        ("planted:variant=nope", "unknown planted variant 'nope'; choose one of redundant, "),
        ("planted:colour=1", "unknown planted parameter 'colour'; choose from variant, "),
        ("planted:a_n=big", r"planted parameter a_n must be a number in \[0, 100\], got 'big'"),
        ("planted:p_r=1.5", r"planted parameter p_r must be a number in \[0, 1\], got '1.5'"),
        ("planted:size=24", "planted parameter size must be one of 16, 28, 32, got 24"),
        ("planted:train=0", r"planted parameter train must be an integer in \[1, 200000\], got '0'"),
        ("planted:rf=cifar", "planted parameter rf must be one of synthetic, mnist, got 'cifar'"),
        (
            "planted:classes=20,size=16,channels=1",
            "the low band of a 16x16 image holds 14 DCT directions, fewer than classes=20",
        ),
        ("planted:margin=0.2", "planted parameter margin applies to rf=mnist only"),
        ("planted:rf=mnist,channels=3", "planted rf=mnist has 10 classes and 1 channel"),
        ("planted:rf=mnist,train=5000", "planted rf=mnist has at most 4000 training and 1000 test digits"),
        ("planted:nrf_band=low", "rf_band and nrf_band are both 'low'"),
        ("planted:a_n=1,a_n=2", "dataset parameter 'a_n' is given twice"),
    ],
)
def test_bad_parameters_give_one_line_errors(name: str, message: str) -> None:
    with pytest.raises(NrflabError, match=message) as info:
        load_dataset(name)
    assert "\n" not in str(info.value)


def test_every_preset_loads() -> None:
    for preset in PRESETS:
        s = spec(preset=preset)
        assert s.preset == preset
        assert spec_from_params({"preset": preset}).preset == preset
        assert dataset_name(s).startswith(f"planted:variant={preset}")


def test_generation_of_ten_thousand_images_is_fast() -> None:
    s = spec_from_params({"size": "32", "train": "10000", "seed": "7"})
    start = time.process_time()  # CPU time: robust to other processes sharing the machine
    sample = generate(s, "train")
    assert time.process_time() - start < 5.0
    assert sample.images.shape == (10000, 3, 32, 32) and sample.images.dtype == np.float32

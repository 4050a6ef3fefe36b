"""Tests for nrflab.measure.metrics: LIGS (against a direct computation, linear models, zero gradients, batching),
accuracy and robust accuracy on every kind of data source, and the framework row of image_outcomes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from nrflab.attacks import PGD, NoAttack, per_sample_noise
from nrflab.core.errors import NrflabError
from nrflab.core.stats import finite_mean
from nrflab.measure.framework import image_outcomes
from nrflab.measure.ligs import ligs, ligs_per_sample
from nrflab.measure.metrics import accuracy, dataset_tensors, robust_accuracy

from conftest import assert_same_state, state_snapshot

LIGS_SALT = 777  # the salt metrics.ligs_per_sample keys its noise with


def softmax_regression(seed: int = 0, scale: float = 1.0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(64, 10)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(10, 64, generator=g) * scale / 8)
        linear.bias.copy_(torch.randn(10, generator=g) * scale)
    return nn.Sequential(nn.Flatten(), linear)


def direct_ligs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """LIGS written out one image at a time: cos(grad CE(x), grad CE(x + sigma * noise))."""
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1], y[i : i + 1]
        noisy = xi + sigma * per_sample_noise(xi, seed, "normal", salt=LIGS_SALT)
        grads = []
        for z in (xi, noisy):
            z = z.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(z), yi), z)
            grads.append(g.flatten().double())
        out.append(float(grads[0] @ grads[1] / (grads[0].norm() * grads[1].norm())))
    return torch.tensor(out)


@given(seed=st.integers(0, 1000), scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_ligs_of_a_linear_model_is_one(seed: int, scale: float) -> None:
    """Softmax regression: grad_x CE = W^T (softmax(Wx + b) - onehot(y)); only the probabilities move with x,
    and sigma = 0.01 barely moves them, so the gradient direction is (nearly) the same."""
    model = softmax_regression(seed, scale)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    assert ligs(model, x, y, sigma=0.01, seed=seed) > 0.999
    assert ligs(model, x, y, sigma=0.0) == pytest.approx(1.0, abs=1e-6)


def test_ligs_matches_a_direct_computation(trained_model, test_batch) -> None:
    # In float64 batched and one-image convolutions agree to ~1e-12; in float32 they may differ by ~1e-4.
    x, y = test_batch[0][:24].double(), test_batch[1][:24]
    model = trained_model.double()
    res = ligs_per_sample(model, x, y, sigma=0.05, seed=5)
    expected = direct_ligs(model.eval(), x, y, sigma=0.05, seed=5)
    torch.testing.assert_close(res.gradient_similarity, expected, atol=1e-5, rtol=0)
    assert res.ligs == pytest.approx(float(expected.mean()), abs=1e-5)
    # A trained network is not linear: at this sigma its gradients really do turn.
    assert float(expected.min()) < 0.99


def test_ligs_is_independent_of_batch_size_and_keyed_on_seed(trained_model, test_batch) -> None:
    x, y = test_batch[0][:40], test_batch[1][:40]
    whole = ligs_per_sample(trained_model, x, y, sigma=0.05, seed=1, batch_size=256)
    chunked = ligs_per_sample(trained_model, x, y, sigma=0.05, seed=1, batch_size=7)
    torch.testing.assert_close(chunked.gradient_similarity, whole.gradient_similarity, atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked.logit_similarity, whole.logit_similarity, atol=1e-6, rtol=0)
    other = ligs_per_sample(trained_model, x, y, sigma=0.05, seed=2)
    assert not torch.allclose(other.gradient_similarity, whole.gradient_similarity)


def test_logit_similarity_is_a_cosine(trained_model, test_batch) -> None:
    x, y = test_batch[0][:64], test_batch[1][:64]
    for sigma in (0.01, 0.3, 3.0):
        res = ligs_per_sample(trained_model, x, y, sigma=sigma)
        for values in (res.logit_similarity, res.gradient_similarity):
            finite = values[torch.isfinite(values)]
            assert finite.numel() > 0 and float(finite.min()) >= -1 - 1e-6 and float(finite.max()) <= 1 + 1e-6
    small = ligs_per_sample(trained_model, x, y, sigma=0.001)
    assert small.logit_sim > 0.999


class GatedLinear(nn.Module):
    """Logits from relu(x - 0.5): inputs below 0.5 everywhere have a zero input gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(10, 64, generator=torch.Generator().manual_seed(0)) / 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.relu(x - 0.5).flatten(1))


def test_zero_gradients_are_dropped() -> None:
    model = GatedLinear()
    g = torch.Generator().manual_seed(0)
    dead = torch.rand(5, 1, 8, 8, generator=g) * 0.3  # sigma = 0.01 noise cannot reach 0.5
    alive = 0.6 + 0.4 * torch.rand(7, 1, 8, 8, generator=g)
    x = torch.cat([dead, alive])
    y = torch.randint(0, 10, (12,), generator=g)
    res = ligs_per_sample(model, x, y, sigma=0.01)
    assert torch.isnan(res.gradient_similarity[:5]).all()
    assert torch.isfinite(res.gradient_similarity[5:]).all()
    assert res.ligs == pytest.approx(float(res.gradient_similarity[5:].mean()))
    assert math.isfinite(ligs(model, x, y)) and ligs(model, x, y) > 0.99
    assert math.isnan(ligs(model, dead, y[:5]))
    assert finite_mean(torch.tensor([1.0, math.nan, math.inf, 0.0])) == 0.5


def test_ligs_restores_model_mode_and_buffers(trained_model, test_batch) -> None:
    x, y = test_batch[0][:32], test_batch[1][:32]
    in_eval = ligs(trained_model, x, y)
    trained_model.train()
    before = state_snapshot(trained_model)
    in_train = ligs(trained_model, x, y)
    assert trained_model.training
    assert_same_state(trained_model, before)
    assert in_train == in_eval  # computed in eval mode regardless
    assert all(p.grad is None for p in trained_model.parameters())


def test_negative_sigma_raises(trained_model, test_batch) -> None:
    with pytest.raises(NrflabError, match=r"sigma must be >= 0, got -0\.1"):
        ligs(trained_model, test_batch[0][:4], test_batch[1][:4], sigma=-0.1)


# -------------------------------------------------------------------------------------------------
# Accuracy on every data source


@pytest.fixture()
def sources(mnist5k):
    subset = mnist5k.test.subset(range(96))
    x, y = subset.tensors()
    return {
        "pair": (x, y),
        "image-dataset": subset,
        "tensor-dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=20, shuffle=False),
        "batches": [(x[:50], y[:50]), (x[50:], y[50:])],
    }


def test_accuracy_is_the_same_on_every_source(trained_model, sources) -> None:
    x, y = sources["pair"]
    with torch.no_grad():
        correct = int((trained_model(x).argmax(1) == y).sum())
    n = int(y.shape[0])
    assert 0.8 * n < correct < n
    for name, data in sources.items():  # counts compare exactly; the float mean only within a relative tolerance
        for acc in (accuracy(trained_model, data), accuracy(trained_model, data, batch_size=13)):
            assert round(acc * n) == correct and acc == pytest.approx(correct / n, rel=1e-6), name


def test_robust_accuracy_is_the_same_on_every_source(trained_model, sources) -> None:
    attack = PGD(trained_model, norm="linf", eps=0.08, steps=3)
    results = {name: robust_accuracy(trained_model, data, attack, batch_size=32) for name, data in sources.items()}
    assert len(set(results.values())) == 1, results
    assert results["pair"] < accuracy(trained_model, sources["pair"])


def test_accuracy_restores_mode_and_rejects_empty_data(trained_model, sources) -> None:
    trained_model.train()
    before = state_snapshot(trained_model)
    accuracy(trained_model, sources["pair"])
    robust_accuracy(trained_model, sources["pair"], PGD(trained_model, norm="l2", eps=0.5, steps=1))
    assert trained_model.training
    assert_same_state(trained_model, before)
    empty = (torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
    with pytest.raises(NrflabError, match="no samples to evaluate"):
        accuracy(trained_model, empty)
    with pytest.raises(NrflabError, match="no samples to evaluate"):
        robust_accuracy(trained_model, empty, PGD(trained_model, eps=0.1))


def test_dataset_tensors(mnist5k) -> None:
    x, y = dataset_tensors(mnist5k.test, limit=70)
    assert x.shape == (70, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (70,)
    full_x, full_y = mnist5k.test.tensors()
    assert torch.equal(x, full_x[:70]) and torch.equal(y, full_y[:70])
    assert dataset_tensors(mnist5k.test)[0].shape[0] == 1000


def test_framework_row(trained_model, test_batch) -> None:
    x, y = test_batch[0][:48], test_batch[1][:48]
    attacks = [("pgd-l2", PGD(trained_model, norm="l2", eps=1.0, steps=3)), ("none", NoAttack(trained_model))]
    row = image_outcomes(trained_model, x, y, attacks=attacks, ligs_sigma=0.01, seed=3, batch_size=16).summary().row()
    assert set(row) == {"clean_acc", "robust_acc[pgd-l2]", "robust_acc[none]", "ligs", "logit_sim"}
    assert row["clean_acc"] == accuracy(trained_model, (x, y))
    assert row["robust_acc[none]"] == row["clean_acc"]
    assert row["robust_acc[pgd-l2]"] == robust_accuracy(trained_model, (x, y), attacks[0][1])
    assert row["robust_acc[pgd-l2]"] < row["clean_acc"]
    assert row["ligs"] == pytest.approx(ligs(trained_model, x, y, sigma=0.01, seed=3), abs=1e-6)
    assert set(image_outcomes(trained_model, x, y, attacks=[], ligs_sigma=None).summary().row()) == {"clean_acc"}

"""Reliance metrics against hand-built models whose feature use is known, the probe's no-side-effect
guarantee, and the band decomposition of known perturbations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nrflab.core.columns import RELIANCE
from nrflab.core.errors import NrflabError
from nrflab.data.planted import idct_images, make_templates, make_views
from nrflab.data.planted_spec import band_mask, spec_from_params
from nrflab.measure.reliance import RelianceProbe, RelianceViews, reliance
from nrflab.measure.spectrum import band_energy
from nrflab.models import create_model

from conftest import assert_same_state, state_snapshot

SPEC = spec_from_params({"size": "16", "test": "400", "a_n": "1", "bg_std": "0.02", "jitter": "0"})


@pytest.fixture(scope="module")
def views() -> RelianceViews:
    return RelianceViews.from_samples(make_views(SPEC))


class NrfReader(nn.Module):
    """Reads the NRF only: logits = projections of the image on the NRF templates."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("templates", torch.tensor(make_templates(SPEC).nrf, dtype=torch.float32).flatten(1))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x - 0.5).flatten(1) @ self.templates.T


class RfReader(nn.Module):
    """Reads the RF only: logits = the best match of the image with any shifted RF template of each class."""

    def __init__(self) -> None:
        super().__init__()
        crops = torch.tensor(make_templates(SPEC).rf_crops, dtype=torch.float32)  # K x dy x dx x C x H x W
        self.register_buffer("crops", crops.flatten(3))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("nd,kabd->nkab", (x - 0.5).flatten(1), self.crops)
        return self.scale * scores.flatten(2).max(dim=2).values


def test_a_model_reading_only_the_nrf_has_rho_plus_one(views: RelianceViews) -> None:
    r = reliance(NrfReader(), views)
    assert (r.agree_acc, r.nrf_suff_acc, r.f_n, r.f_r, r.rho) == (1.0, 1.0, 1.0, 0.0, 1.0)
    # On the RF-sufficiency view the NRF is random: right exactly where the random NRF hits the label.
    assert r.rf_suff_acc == pytest.approx(
        float((views.rf_y == torch.from_numpy(make_views(SPEC).rf.nrf_class)).float().mean())
    )
    assert 0.03 < r.rf_suff_acc < 0.2


def test_a_model_reading_only_the_rf_has_rho_minus_one(views: RelianceViews) -> None:
    r = reliance(RfReader(), views)
    assert (r.agree_acc, r.rf_suff_acc, r.f_r, r.f_n, r.rho) == (1.0, 1.0, 1.0, 0.0, -1.0)
    expected = float((views.nrf_y == torch.from_numpy(make_views(SPEC).nrf.rf_class)).float().mean())
    assert r.nrf_suff_acc == pytest.approx(expected)


def test_a_model_mixing_by_image_gives_intermediate_rho(views: RelianceViews) -> None:
    class Half(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rf, self.nrf = RfReader(), NrfReader()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first = torch.arange(x.shape[0]) % 2 == 0  # alternate images within each batch
            return torch.where(first[:, None], self.rf(x), self.nrf(x))

    r = reliance(Half(), views, batch_size=100)
    assert r.f_r == pytest.approx(0.5) and r.f_n == pytest.approx(0.5) and r.rho == pytest.approx(0.0)


@pytest.mark.parametrize("statistics", ["running", "batch"])
def test_probe_does_not_change_the_model(views: RelianceViews, statistics: str) -> None:
    model = create_model("smallcnn", "bn", 10, 3, width=0.25, seed=0)
    model.train()
    before = state_snapshot(model)
    probe = RelianceProbe(views)
    row = probe(model) if statistics == "running" else reliance(model, views, statistics="batch").as_row()
    assert list(row) == probe.columns() == list(RELIANCE)
    assert all(0.0 <= row[k] <= 1.0 for k in RELIANCE if k != "rho") and -1.0 <= row["rho"] <= 1.0
    assert_same_state(model, before)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_views_reject_a_swap_without_a_swap(views: RelianceViews) -> None:
    with pytest.raises(NrflabError, match="view swap: the RF and NRF classes must differ in every image"):
        RelianceViews(
            views.agree_x,
            views.agree_y,
            views.rf_x,
            views.rf_y,
            views.nrf_x,
            views.nrf_y,
            views.swap_x,
            views.swap_rf,
            views.swap_rf,
        )


# ---------------------------------------------------------------------------------------------
# Band energy

S = 16
RF_MASK, NRF_MASK = band_mask("low", S), band_mask("high", S)


def unit(u: int, v: int, channel: int = 0) -> np.ndarray:
    """A 1 x 3 x S x S perturbation that is one orthonormal DCT basis image."""
    c = np.zeros((1, 3, S, S))
    c[0, channel, u, v] = 1.0
    return idct_images(c)


def test_band_energy_of_known_perturbations() -> None:
    e = band_energy(unit(1, 2), rf_mask=RF_MASK, nrf_mask=NRF_MASK)
    assert (e.rf_band, e.nrf_band, e.rest) == pytest.approx((1.0, 0.0, 0.0))
    e = band_energy(unit(15, 14, channel=2), rf_mask=RF_MASK, nrf_mask=NRF_MASK)
    assert (e.rf_band, e.nrf_band, e.rest) == pytest.approx((0.0, 1.0, 0.0))
    mix = 3 * unit(0, 3) + 2 * unit(15, 15, 1) + 1 * unit(0, 0)  # energies 9, 4, 1
    e = band_energy(torch.from_numpy(mix), rf_mask=RF_MASK, nrf_mask=NRF_MASK)
    assert (e.rf_band, e.nrf_band, e.rest) == pytest.approx((9 / 14, 4 / 14, 1 / 14))
    assert e.norm == pytest.approx(np.sqrt(14)) and e.n == 1


def test_band_energy_along_the_nrf_templates() -> None:
    nrf = make_templates(SPEC).nrf
    delta = 0.5 * nrf[3:4] + 0.5 * unit(14, 15)  # a template plus a high-band direction
    e = band_energy(delta, rf_mask=RF_MASK, nrf_mask=NRF_MASK, nrf_templates=nrf)
    assert e.nrf_band == pytest.approx(1.0)
    proj = float(((delta.reshape(-1) @ nrf.reshape(10, -1).T) ** 2).sum() / (delta**2).sum())
    assert e.nrf_templates == pytest.approx(proj) and 0.5 <= e.nrf_templates <= 1.0


def test_zero_perturbations_are_left_out() -> None:
    delta = np.concatenate([np.zeros((1, 3, S, S)), unit(2, 2)])
    e = band_energy(delta, rf_mask=RF_MASK, nrf_mask=NRF_MASK)
    assert e.n == 1 and e.rf_band == pytest.approx(1.0)


@given(seed=st.integers(0, 10_000))
def test_band_fractions_sum_to_one(seed: int) -> None:
    delta = np.random.default_rng(seed).standard_normal((4, 3, S, S))
    e = band_energy(delta, rf_mask=RF_MASK, nrf_mask=NRF_MASK, nrf_templates=make_templates(SPEC).nrf)
    assert e.rf_band + e.nrf_band + e.rest == pytest.approx(1.0)
    assert 0 <= e.nrf_templates <= e.nrf_band + 1e-12


def test_band_energy_errors() -> None:
    with pytest.raises(NrflabError, match="the RF and NRF bands overlap"):
        band_energy(unit(1, 1), rf_mask=RF_MASK, nrf_mask=RF_MASK)
    with pytest.raises(NrflabError, match=r"band masks of shape \(8, 8\) do not fit \(16, 16\) images"):
        band_energy(unit(1, 1), rf_mask=band_mask("low", 8), nrf_mask=band_mask("high", 8))
    with pytest.raises(NrflabError, match=r"perturbations must have shape \(N, C, H, W\)"):
        band_energy(np.zeros((3, S, S)), rf_mask=RF_MASK, nrf_mask=NRF_MASK)

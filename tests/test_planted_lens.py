"""The Fourier lens against ground truth (nrflab.experiments.planted.lens): the DCT band read on the Fourier
grid, and a model that reads one planted-band pattern has all its excess error in that band."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.fft import idctn

from nrflab.data.planted import band_mask
from nrflab.experiments.planted.lens import band_share, fourier_band, lens_eps
from nrflab.measure.fourier import fourier_heat_map

S = 16


def _dct_reader(u: int, v: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A linear two-class model reading the projection of x - 0.5 on the DCT basis image (u, v), and images
    it classifies right."""
    one = np.zeros((S, S))
    one[u, v] = 1.0
    pattern = torch.from_numpy(idctn(one, norm="ortho")).float()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(S * S, 2))
    with torch.no_grad():
        model[1].weight.copy_(20 * torch.stack([-pattern.flatten(), pattern.flatten()]))
        model[1].bias.copy_(-model[1].weight.sum(dim=1) * 0.5)
    a = torch.tensor([0.2, -0.2, 0.3, -0.3] * 4)
    return model, 0.5 + a[:, None, None, None] * pattern[None, None], (a > 0).long()


def test_the_fourier_band_is_the_dct_band_at_half_the_index():
    high = fourier_band("high", S)
    k = torch.arange(S) - S // 2
    assert bool(high[k.tolist().index(7), k.tolist().index(7)]) and bool(high[0, 0])  # (7,7) and Nyquist (-8,-8)
    assert not bool(high[k.tolist().index(0), k.tolist().index(7)])  # DCT (0, 14): u+v = 14 < 23
    assert int(high.sum()) == sum(
        bool(band_mask("high", S)[min(2 * abs(a), S - 1), min(2 * abs(b), S - 1)]) for a in k for b in k
    )
    assert lens_eps(type("Spec", (), {"channels": 3})(), 2.0) == pytest.approx(2 * math.sqrt(2) / math.sqrt(3))


@pytest.mark.parametrize(("u", "v", "expected"), [(14, 14, 1.0), (2, 2, 0.0)])
def test_a_model_reading_one_band_pattern_has_its_excess_error_there(u, v, expected):
    model, x, y = _dct_reader(u, v)
    heat = fourier_heat_map(model, x, y, eps=1.0)
    share, area = band_share(heat, fourier_band("high", S))
    assert heat.clean_error == 0.0 and heat.high_frequency_share(0.0) == 1.0  # some frequency raises the error
    assert share == expected
    in_band = fourier_band("high", S)
    assert area == pytest.approx(
        sum(bool(in_band[ky + S // 2, kx + S // 2]) for ky, kx, *_ in heat.rows()) / len(heat.rows())
    )
    assert 0.1 < area < 0.3


def test_the_check_reads_as_a_sentence_with_its_numbers(monkeypatch):
    """With no learned seed the check still says what it measured, with no unfilled placeholder."""
    from nrflab.experiments.planted import lens

    class NoneLearned:
        def learned_seeds(self, *args: object) -> list[int]:
            return []

    spec = type("Spec", (), {"channels": 3, "nrf_band": "high", "size": S})()
    settings = type("Settings", (), {"a_n": 2.0, "norms": ["bn", "none"], "learned_min": 0.9})()
    views = type("Views", (), {"agree_x": torch.zeros(1), "agree_y": torch.zeros(1)})()
    monkeypatch.setattr(lens, "full_views", lambda _: views)
    text = lens.lens_markdown(NoneLearned(), settings, "op", spec)
    assert "eps 1.63 per channel" in text and "none learned" in text and "{" not in text
    assert "The lens finds the planted NRF band" in text

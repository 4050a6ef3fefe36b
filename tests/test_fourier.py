"""Tests for the frequency lens: Fourier basis and heat maps (nrflab.measure.fourier), perturbation spectra
(nrflab.measure.spectrum) and ``nrflab fourier``."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.measure.fourier import fourier_basis, fourier_heat_map, half_spectrum
from nrflab.measure.spectrum import centred_frequencies, frequency_radius, perturbation_spectrum
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model

SIZES = [(8, 8), (7, 7), (8, 7), (7, 9), (1, 4)]


def wrap(k: int, n: int) -> int:
    return (k + n // 2) % n - n // 2


def self_conjugate(h: int, w: int) -> int:
    """How many frequencies are their own negative: (0, 0) and the Nyquist ones of even axes."""
    return (2 if h % 2 == 0 else 1) * (2 if w % 2 == 0 else 1)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_symmetric_half_is_indexed_right(h, w):
    assert centred_frequencies(h).tolist() == list(range(-(h // 2), (h - 1) // 2 + 1))
    half = half_spectrum(h, w)
    negatives = {(wrap(-ky, h), wrap(-kx, w)) for ky, kx in half}
    full = {(ky, kx) for ky in centred_frequencies(h).tolist() for kx in centred_frequencies(w).tolist()}
    assert len(half) == len(set(half)) == (h * w + self_conjugate(h, w)) // 2
    assert set(half) | negatives == full
    assert len(set(half) & negatives) == self_conjugate(h, w)
    assert all(-(h // 2) <= ky <= (h - 1) // 2 and -(w // 2) <= kx <= (w - 1) // 2 for ky, kx in half)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_basis_images_are_real_orthonormal_and_one_frequency_each(h, w):
    half = half_spectrum(h, w)
    basis = fourier_basis(h, w)
    assert basis.dtype == torch.float64 and not basis.is_complex() and basis.shape == (len(half), h, w)
    gram = basis.flatten(1) @ basis.flatten(1).T
    assert torch.allclose(gram, torch.eye(len(half), dtype=torch.float64), atol=1e-12)
    spectra = torch.fft.fftshift(torch.fft.fft2(basis), dim=(-2, -1)).abs()
    for (ky, kx), spectrum in zip(half, spectra):
        support = {(ky + h // 2, kx + w // 2), (wrap(-ky, h) + h // 2, wrap(-kx, w) + w // 2)}
        nonzero = {tuple(idx) for idx in (spectrum > 1e-9).nonzero().tolist()}
        assert nonzero == support


class OneFrequency(nn.Module):
    """A linear two-class model whose logit difference is the images' projection onto one basis image."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.register_buffer("pattern", pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = ((x - 0.5) * self.pattern).sum(dim=(1, 2, 3))
        return 20 * torch.stack([-p, p], dim=1)


def one_frequency_case(h: int, w: int, k: tuple[int, int], c: int = 3, n: int = 64):
    pattern = fourier_basis(h, w, [k])[0].float()
    gen = torch.Generator().manual_seed(0)
    a = (0.1 + 0.4 * torch.rand(n, generator=gen)) * (torch.randint(0, 2, (n,), generator=gen) * 2 - 1)
    x = 0.5 + a[:, None, None, None] * pattern.expand(c, h, w)[None]
    return OneFrequency(pattern), x, (a > 0).long()


@pytest.mark.parametrize(("h", "w", "k"), [(8, 8, (2, -3)), (8, 8, (-4, 0)), (7, 9, (-1, 4)), (7, 9, (3, 0))])
def test_a_model_reading_one_frequency_is_sensitive_there_only(h, w, k):
    model, x, y = one_frequency_case(h, w, k)
    heat = fourier_heat_map(model, x, y, eps=1.0, batch_size=100, name="one")
    error = torch.tensor(heat.error)
    loss = torch.tensor(heat.loss_increase)
    peak = {(k[0] + h // 2, k[1] + w // 2), (wrap(-k[0], h) + h // 2, wrap(-k[1], w) + w // 2)}
    assert heat.clean_error == 0.0 and heat.freqs_y == tuple(centred_frequencies(h).tolist())
    assert {tuple(i) for i in (error > 0).nonzero().tolist()} == peak
    assert all(0.2 < float(error[i]) < 0.8 and float(loss[i]) > 1.0 for i in peak)
    elsewhere = torch.ones(h, w, dtype=torch.bool)
    for i in peak:
        elsewhere[i] = False
    assert float(loss[elsewhere].abs().max()) < 1e-4
    radius = math.hypot(*k)
    assert heat.high_frequency_share(radius - 0.01) == 1.0 and heat.high_frequency_share(radius + 0.01) == 0.0
    assert len(heat.rows()) == len(half_spectrum(h, w))


def test_heat_map_is_seeded_and_leaves_the_model_alone():
    model = create_model("smallcnn", "bn", 10, 1, width=0.25, seed=0)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 10
    a = fourier_heat_map(model, x, y, eps=2.0, seed=3, batch_size=17)
    b = fourier_heat_map(model, x, y, eps=2.0, seed=3, batch_size=64, per_channel=True)
    assert a == dataclasses.replace(b, per_channel=False)  # one channel: the per-channel sign is the shared one
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    fast = fourier_heat_map(model, x, y, eps=2.0, seed=3, precision="bfloat16")
    assert len(fast.error) == 8
    for bad in (dict(eps=0.0), dict(eps=-1.0), dict(eps=1.0, batch_size=0), dict(eps=1.0, precision="half")):
        with pytest.raises(NrflabError):
            fourier_heat_map(model, x, y, **bad)


@pytest.mark.parametrize(("h", "w", "k"), [(16, 16, (3, -4)), (15, 12, (-7, 6)), (16, 16, (-8, -8))])
def test_spectrum_of_one_basis_image(h, w, k):
    eps = 2.5
    delta = (eps * fourier_basis(h, w, [k])[0]).expand(2, 3, h, w)
    spectrum = perturbation_spectrum(delta)
    ring = round(math.hypot(*k))
    counts = torch.bincount(frequency_radius(h, w).round().long().flatten())
    for radius, power, energy in zip(spectrum.radii, spectrum.power, spectrum.energy):
        expected = 1.0 if radius == ring else 0.0
        assert energy == pytest.approx(expected, abs=1e-12)
        assert power * counts[int(radius)] == pytest.approx(eps**2 * expected, abs=1e-9)
    assert spectrum.band_shares(low=ring, high=ring + 1) == pytest.approx((0.0, 1.0, 0.0), abs=1e-12)
    assert spectrum.band_shares(low=0, high=ring) == pytest.approx((0.0, 0.0, 1.0), abs=1e-12)


def test_spectrum_of_white_noise_is_flat():
    sigma = 0.1
    delta = sigma * torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    spectrum = perturbation_spectrum(delta)
    assert all(p == pytest.approx(sigma**2, rel=0.25) for p in spectrum.power)
    radius = frequency_radius(32, 32).round().flatten()
    expected = ((radius < 6).double().mean(), ((radius >= 6) & (radius < 12)).double().mean())
    low, mid, high = spectrum.band_shares(low=6, high=12)
    assert low == pytest.approx(float(expected[0]), abs=0.02) and mid == pytest.approx(float(expected[1]), abs=0.02)
    assert low + mid + high == pytest.approx(1.0)
    with pytest.raises(NrflabError, match="low <= high"):
        spectrum.band_shares(low=3, high=2)
    with pytest.raises(NrflabError, match=r"\(N, C, H, W\)"):
        perturbation_spectrum(torch.zeros(3, 8, 8))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("fourier_models")
    return [
        str(save_model(create_model("smallcnn", norm, 10, 1, width=0.25, seed=0), root / f"{norm}.safetensors"))
        for norm in ("bn", "none")
    ]


def test_cli_writes_maps_csv_and_json(tiny_models, tmp_path, capsys):
    out = tmp_path / "maps"
    code = main(["fourier", *tiny_models, "-d", "digits", "--eps", "2", "--limit", "12", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    names = sorted(p.name for p in out.iterdir())
    for stem in ("fourier_1-bn", "fourier_2-none"):
        assert {f"{stem}.{ext}" for ext in ("png", "svg", "csv", "json")} <= set(names), names
    assert {"fourier_models.png", "fourier_models.svg"} <= set(names)
    record = json.loads((out / "fourier_1-bn.json").read_text())
    assert record["eps"] == 2.0 and record["n_images"] == 12 and len(record["error"]) == 8
    assert (out / "fourier_2-none.csv").read_text().splitlines()[0] == "ky,kx,radius,error,loss_increase"
    assert "fourier" in captured.err


@pytest.mark.parametrize(("flag", "value", "match"), [("--eps", "0", "--eps must be > 0"), ("--limit", "0", "--limit")])
def test_cli_refuses_bad_input_in_one_line(tiny_models, tmp_path, capsys, flag, value, match):
    argv = ["fourier", tiny_models[0], "-d", "digits", "--eps", "1", "--out", str(tmp_path / "x"), flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_file_as_out_before_measuring(tiny_models, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep")
    assert main(["fourier", tiny_models[0], "-d", "digits", "--eps", "1", "--limit", "4", "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {taken} exists and is not a directory"]  # no map was measured first
    assert taken.read_text() == "keep"


@pytest.mark.parametrize("freeze", [False, True])
def test_a_coarse_grid_evaluates_its_frequencies_only_and_finds_the_same_peak(freeze):
    model, x, y = one_frequency_case(8, 8, (2, -2), c=1)
    heat = fourier_heat_map(model, x, y, eps=1.0, batch_size=100, stride=2, freeze=freeze)
    error = torch.tensor(heat.error)
    on_grid = torch.tensor([[ky % 2 == 0 and kx % 2 == 0 for kx in heat.freqs_x] for ky in heat.freqs_y])
    assert bool(error[on_grid].isfinite().all()) and bool(error[~on_grid].isnan().all())
    assert {tuple(i) for i in (error.nan_to_num(0) > 0).nonzero().tolist()} == {(6, 2), (2, 6)}
    assert len(heat.rows()) == len([f for f in half_spectrum(8, 8) if f[0] % 2 == 0 and f[1] % 2 == 0])
    assert heat.high_frequency_share(2.8) == 1.0 and heat.high_frequency_share(2.9) == 0.0
    with pytest.raises(NrflabError, match="stride"):
        fourier_heat_map(model, x, y, eps=1.0, stride=0)


def test_a_frozen_graph_predicts_as_the_model():
    model = create_model("smallcnn", "bn", 10, 1, width=0.25, seed=0)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 10
    a = fourier_heat_map(model, x, y, eps=2.0, seed=3)
    b = fourier_heat_map(model, x, y, eps=2.0, seed=3, freeze=True)
    assert a.error == b.error and a.clean_error == b.clean_error
    assert max(abs(p - q) for r, s in zip(a.loss_increase, b.loss_increase) for p, q in zip(r, s)) < 1e-4


def test_cli_stride_and_freeze_reach_the_heat_map(tiny_models, tmp_path, capsys):
    out = tmp_path / "coarse"
    argv = ["fourier", tiny_models[0], "-d", "digits", "--eps", "2", "--limit", "8", "--out", str(out)]
    assert main([*argv, "--stride", "2", "--freeze"]) == 0, capsys.readouterr().err
    rows = (out / "fourier_bn.csv").read_text().splitlines()[1:]
    expected = [f for f in half_spectrum(8, 8) if f[0] % 2 == 0 and f[1] % 2 == 0]
    assert len(rows) == len(expected)


def test_thirds_put_a_single_frequency_in_its_band():
    """A perturbation along one basis image has all its energy at that frequency's radius: 28x28 has
    Nyquist 14, so radius 2 is low (< 4.67), 7 mid, 12 high."""
    for (ky, kx), band in (((2, 0), 0), ((0, 7), 1), ((12, 0), 2)):
        delta = fourier_basis(28, 28, [(ky, kx)])[0][None, None]
        shares = perturbation_spectrum(delta).thirds()
        assert shares[band] == pytest.approx(1.0) and sum(shares) == pytest.approx(1.0)

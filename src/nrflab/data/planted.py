"""Planted features: images whose robust and non-robust features are known by construction.

Every image carries a **robust feature** (RF: a class template in a low-frequency DCT band, large L2
norm, shifted at random by a few pixels) and a **non-robust feature** (NRF: a class template in a
high-frequency DCT band, small L2 norm, fixed position) on a natural-image-like background (mid-grey plus a
per-image colour offset plus 1/f noise, no exact zeros). **Swap cost** (one convention, used by the planted
experiment and its docs): the smallest L2 perturbation that moves a feature from its class template to the
midpoint with another class's (orthonormal templates of norm ``a``), ``a / sqrt(2)``; replacing the template
outright costs ``a * sqrt(2)``. The RF's swap cost ``a_r / sqrt(2)`` is far beyond any evaluation eps; the
NRF's ``a_n / sqrt(2)`` is inside a PGD-L2 eps of 0.5 at the defaults: robust and non-robust by construction.

Per image with label ``y`` the RF class is ``y`` with probability ``p_r`` and the NRF class is ``y`` with
probability ``p_n``, independently; otherwise another class (uniform, or ``y + rf_shift`` for the RF when
``rf_shift`` is set). So one family gives the redundant set (both predictive), sets where one feature is more
predictive, a planted D_rand (RF class random, NRF = label) and a planted conflicting set (RF of class
``y - 1``, NRF and label ``y``). Test views share the training images' statistics (see
``nrflab.measure.reliance``): agree (r = n = y, the bundle's ``test``), RF-sufficiency (r = y, n random),
NRF-sufficiency (n = y, r random) and swap (r = a, n = b != a).

Names: ``planted``, ``planted:variant=drand,a_n=0.2,size=16``, ``planted:rf=mnist,variant=drand`` (the
mnist5k digit, rescaled to [m, 1 - m] with m >= 0.1 chosen so the NRF survives clipping, is the RF). Every parameter is recorded in ``bundle.info``.

Defaults and why (measured with ``generate``; see the planted experiment's docstring for training
calibration): background pixel std 0.08 and a_r = 6 at 32 x 32 (3 at 16 x 16) keep clipping near 0.1 % of
pixels; a_n = 0.35 makes the NRF's swap cost ~0.25 in L2 (a full template replacement ~0.5).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.fft import dctn, idctn

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, channel_stats, register_dataset
from nrflab.data.planted_spec import PlantedSpec, band_mask, dataset_name, spec_from_params
from nrflab.data.views import RelianceViews

GENERATOR_VERSION = 1

# ---------------------------------------------------------------------------------------------
# DCT bands and templates


def dct_images(x: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT over the last two axes (L2 norms are preserved)."""
    out: np.ndarray = dctn(x, axes=(-2, -1), norm="ortho")
    return out


def idct_images(c: np.ndarray) -> np.ndarray:
    out: np.ndarray = idctn(c, axes=(-2, -1), norm="ortho")
    return out


def orthonormal_templates(rng: np.random.Generator, *, classes: int, channels: int, mask: np.ndarray) -> np.ndarray:
    """``classes`` pixel-space templates (K x C x H x W), orthonormal and supported on ``mask`` in DCT."""
    dims = int(mask.sum()) * channels
    basis, _ = np.linalg.qr(rng.standard_normal((dims, classes)))
    coeffs = np.zeros((classes, channels, *mask.shape))
    coeffs[:, :, mask] = basis.T.reshape(classes, channels, -1)
    return idct_images(coeffs)


def _scaled_band_mask(canvas: int, size: int, band: str) -> np.ndarray:
    """The band of a ``canvas``-sized image holding the same frequencies (cycles per pixel) as ``band`` of
    a ``size``-sized one."""
    base = band_mask(band, size)
    s = np.add.outer(np.arange(size), np.arange(size))[base]
    lo, hi = s.min() * canvas / size, s.max() * canvas / size
    t = np.add.outer(np.arange(canvas), np.arange(canvas))
    mask: np.ndarray = (t >= max(1, math.floor(lo))) & (t <= math.floor(hi))
    return mask


@dataclass(frozen=True)
class PlantedTemplates:
    """The class templates of one template seed.

    ``rf_crops[k, dy, dx]`` is RF template ``k`` cropped at offset (dy, dx) from its canvas, rescaled to unit
    L2 norm; ``rf_canvas`` the orthonormal canvas templates; ``nrf`` the orthonormal NRF templates.
    """

    rf_canvas: np.ndarray
    rf_crops: np.ndarray
    nrf: np.ndarray

    @functools.cached_property
    def rf_crops32(self) -> np.ndarray:
        return self.rf_crops.astype(np.float32)

    @functools.cached_property
    def nrf32(self) -> np.ndarray:
        return self.nrf.astype(np.float32)


def make_templates(spec: PlantedSpec) -> PlantedTemplates:
    """Templates from ``spec.seed`` (stream 0: RF, stream 1: NRF); independent of the sample seed."""
    return _templates(
        spec.seed, spec.size, spec.channels, spec.classes, spec.rf, spec.rf_band, spec.nrf_band, spec.max_shift
    )


@functools.lru_cache(maxsize=16)
def _templates(
    seed: int, size: int, channels: int, classes: int, rf_source: str, rf_band: str, nrf_band: str, m: int
) -> PlantedTemplates:
    canvas = size + 2 * m
    if rf_source == "synthetic":
        rf = orthonormal_templates(
            np.random.default_rng([seed, 0]),
            classes=classes,
            channels=channels,
            mask=_scaled_band_mask(canvas, size, rf_band),
        )
        crops = np.stack(
            [
                np.stack([rf[:, :, dy : dy + size, dx : dx + size] for dx in range(2 * m + 1)], 1)
                for dy in range(2 * m + 1)
            ],
            1,
        )  # K x (2m+1) x (2m+1) x C x S x S
        norms = np.sqrt((crops**2).sum(axis=(-3, -2, -1), keepdims=True))
        crops = crops / np.maximum(norms, 1e-12)
    else:
        rf = np.zeros((0,))
        crops = np.zeros((0,))
    nrf = orthonormal_templates(
        np.random.default_rng([seed, 1]), classes=classes, channels=channels, mask=band_mask(nrf_band, size)
    )
    for arr in (rf, crops, nrf):
        arr.setflags(write=False)
    return PlantedTemplates(rf, crops, nrf)


# ---------------------------------------------------------------------------------------------
# Sampling


SPLIT_STREAMS = {"train": 0, "agree": 1, "rf": 2, "nrf": 3, "swap": 4}


def assign_classes(rng: np.random.Generator, y: np.ndarray, *, p: float, classes: int, shift: int = 0) -> np.ndarray:
    """Feature classes for labels ``y``: ``y`` with probability ``p``, else ``y + shift`` (``shift != 0``)
    or a uniformly drawn *other* class (so ``p = 1 / classes`` makes the class independent of ``y``)."""
    agree = rng.random(y.shape[0]) < p
    if shift % classes:
        other = (y + shift) % classes
    else:
        other = (y + rng.integers(1, classes, y.shape[0])) % classes
    return np.where(agree, y, other)


@dataclass(frozen=True)
class PlantedSample:
    """Images (N x C x S x S float32 in [0,1]) with their label and feature classes, and how much clipping
    touched (fraction of pixel values outside [0,1] before clipping)."""

    images: np.ndarray
    labels: np.ndarray
    rf_class: np.ndarray
    nrf_class: np.ndarray
    clip_fraction: float


def background(rng: np.random.Generator, *, n: int, spec: PlantedSpec) -> np.ndarray:
    """0.5 + a per-image, per-channel colour offset + 1/f noise of pixel std ``bg_std`` (expected)."""
    s, c = spec.size, spec.channels
    u, v = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    f = np.hypot(u, v)
    weight = np.where(f > 0, 1.0 / np.maximum(f, 1e-12), 0.0)
    weight *= spec.bg_std * s / math.sqrt(float((weight**2).sum()))  # expected pixel variance = bg_std^2
    coeffs = rng.standard_normal((n, c, s, s), dtype=np.float32)
    coeffs *= weight.astype(np.float32)
    x = idct_images(coeffs)
    x += (0.5 + rng.uniform(-spec.color, spec.color, (n, c, 1, 1))).astype(np.float32)
    return x


def compose(
    spec: PlantedSpec,
    rng: np.random.Generator,
    *,
    labels: np.ndarray,
    rf_class: np.ndarray,
    nrf_class: np.ndarray,
    base: np.ndarray | None = None,
) -> PlantedSample:
    """Images with the given label and feature classes. ``base`` replaces background + RF (the MNIST
    variant passes the rescaled digits there)."""
    t = make_templates(spec)
    n = labels.shape[0]
    if base is None:
        x = background(rng, n=n, spec=spec)
        m = spec.max_shift
        dy, dx = rng.integers(0, 2 * m + 1, n), rng.integers(0, 2 * m + 1, n)
        jitter = np.asarray(rng.uniform(1 - spec.jitter, 1 + spec.jitter, size=n), dtype=np.float64)
        amp = (spec.rf_amplitude * jitter).astype(np.float32)
        if spec.rf_amplitude > 0:
            x += amp[:, None, None, None] * t.rf_crops32[rf_class, dy, dx]
    else:
        x = base.astype(np.float32, copy=True)
    if spec.a_n > 0:
        x += np.float32(spec.a_n) * t.nrf32[nrf_class]
    if spec.noise > 0:
        x += np.float32(spec.noise) * rng.standard_normal(x.shape, dtype=np.float32)
    outside = float(np.count_nonzero((x < 0) | (x > 1))) / x.size
    images = np.clip(x, 0.0, 1.0, out=x)
    return PlantedSample(
        images, labels.astype(np.int64), rf_class.astype(np.int64), nrf_class.astype(np.int64), outside
    )


def _view_classes(view: str, rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, RF class, NRF class) of a test view; the swap view's label is its RF class."""
    y = rng.integers(0, k, n)
    if view == "agree":
        return y, y.copy(), y.copy()
    if view == "rf":
        return y, y.copy(), rng.integers(0, k, n)
    if view == "nrf":
        return y, rng.integers(0, k, n), y.copy()
    if view == "swap":
        return y, y.copy(), (y + rng.integers(1, k, n)) % k
    raise NrflabError(f"unknown view {view!r}")


def generate(spec: PlantedSpec, split: str) -> PlantedSample:
    """One split: ``train`` (the spec's agreement probabilities) or a test view (agree, rf, nrf, swap)."""
    if split not in SPLIT_STREAMS:
        raise NrflabError(f"unknown planted split {split!r}; choose one of {', '.join(SPLIT_STREAMS)}")
    rng = np.random.default_rng([spec.sample_seed, SPLIT_STREAMS[split], GENERATOR_VERSION])
    k = spec.classes
    if spec.rf == "mnist":
        return _generate_mnist(spec, split, rng)
    if split == "train":
        y = rng.integers(0, k, spec.train)
        r = assign_classes(rng, y, p=spec.p_r, classes=k, shift=spec.rf_shift)
        nc = assign_classes(rng, y, p=spec.p_n, classes=k)
    else:
        y, r, nc = _view_classes(split, rng, spec.test, k)
    return compose(spec, rng, labels=y, rf_class=r, nrf_class=nc)


# ---------------------------------------------------------------------------------------------
# The MNIST variant: the digit is the RF


@functools.lru_cache(maxsize=4)
def _mnist_digits(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mnist5k train/test digits in [0,1] at ``size`` x ``size`` (antialiased resize), with labels."""
    from nrflab.data.embedded import load_mnist5k

    bundle = load_mnist5k()
    out = []
    for part in (bundle.train, bundle.test):
        assert isinstance(part, ImageTensorDataset)
        x, y = part.tensors()
        if size != x.shape[-1]:
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            ).clamp(0, 1)
        out += [x.numpy().astype(np.float64), y.numpy()]
    for arr in out:
        arr.setflags(write=False)
    return out[0], out[1], out[2], out[3]


def _generate_mnist(spec: PlantedSpec, split: str, rng: np.random.Generator) -> PlantedSample:
    """Each digit is used once (in a seeded order); its class is the RF class and the label follows from it:
    P(y = r) = p_r, else ``r - rf_shift`` or a uniform other class (the same joint law as the synthetic
    family). Digits are rescaled to [margin, 1 - margin] (``PlantedSpec.digit_margin``: at least 0.1) so an
    NRF of either sign survives clipping."""
    xtr, ytr, xte, yte = _mnist_digits(spec.size)
    k = spec.classes
    if split == "train":
        idx = rng.permutation(ytr.shape[0])[: spec.train]
        r = ytr[idx]
        y = assign_classes(rng, r, p=spec.p_r, classes=k, shift=-spec.rf_shift)
        nc = assign_classes(rng, y, p=spec.p_n, classes=k)
        digits = xtr[idx]
    else:
        idx = rng.permutation(yte.shape[0])[: spec.test]
        r = yte[idx]
        digits = xte[idx]
        if split == "agree":
            y, nc = r.copy(), r.copy()
        elif split == "rf":
            y, nc = r.copy(), np.asarray(rng.integers(0, k, size=r.shape[0]))
        elif split == "nrf":
            y = np.asarray(rng.integers(0, k, size=r.shape[0]))
            nc = y.copy()
        else:  # swap
            y, nc = r.copy(), (r + rng.integers(1, k, r.shape[0])) % k
    m = spec.digit_margin
    return compose(spec, rng, labels=y, rf_class=r, nrf_class=nc, base=m + (1 - 2 * m) * digits)


# ---------------------------------------------------------------------------------------------
# The registered dataset


@dataclass(frozen=True)
class PlantedViews:
    """The four test views of a planted dataset (tensors on CPU) and their feature classes."""

    agree: PlantedSample
    rf: PlantedSample
    nrf: PlantedSample
    swap: PlantedSample


def make_views(spec: PlantedSpec) -> PlantedViews:
    return PlantedViews(*(generate(spec, v) for v in ("agree", "rf", "nrf", "swap")))


def build_bundle(spec: PlantedSpec, *, probe_size: int | None = None) -> DatasetBundle:
    """The bundle of a spec: train (the spec's law), test = the agree view, and a reliance probe on the
    agree, RF-sufficiency, NRF-sufficiency and swap views (``probe_size`` images each; default all)."""
    train = generate(spec, "train")
    views = make_views(spec)
    mean, std = channel_stats(torch.from_numpy(train.images))
    rel_views = RelianceViews.from_samples(views, limit=probe_size)
    agreement = {
        "rf": float((train.rf_class == train.labels).mean()),
        "nrf": float((train.nrf_class == train.labels).mean()),
    }
    info = {
        "family": "planted",
        "generator_version": GENERATOR_VERSION,
        "params": spec.resolved(),
        "bands": {"rf": None if spec.rf == "mnist" else spec.rf_band, "nrf": spec.nrf_band},
        "train_agreement": agreement,
        "clip_fraction": {
            "train": train.clip_fraction,
            **{v: getattr(views, v).clip_fraction for v in ("agree", "rf", "nrf", "swap")},
        },
        "views": {
            "test": "agree (RF = NRF = label)",
            "probes": "agree, rf-sufficiency, nrf-sufficiency, swap",
            "size": rel_views.size,
        },
    }
    return DatasetBundle(
        name=dataset_name(spec),
        train=ImageTensorDataset(torch.from_numpy(train.images), torch.from_numpy(train.labels)),
        test=ImageTensorDataset(torch.from_numpy(views.agree.images), torch.from_numpy(views.agree.labels)),
        num_classes=spec.classes,
        input_shape=(spec.channels if spec.rf == "synthetic" else 1, spec.size, spec.size),
        mean=mean,
        std=std,
        classes=[str(i) for i in range(spec.classes)],
        info=info,
        reliance_views=rel_views,
    )


@register_dataset("planted", params=True)
def load_planted(root: object = None, download: bool = False, params: dict[str, str] | None = None) -> DatasetBundle:
    """Planted robust and non-robust features, generated from seeds (no files). See the module docstring."""
    return build_bundle(spec_from_params(dict(params or {})))


__all__ = [
    "PlantedSpec",
    "band_mask",
    "build_bundle",
    "dataset_name",
    "make_templates",
    "make_views",
    "spec_from_params",
]
